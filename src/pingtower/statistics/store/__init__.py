"""Statistics storage: tables, the ingest effect and the read queries."""
