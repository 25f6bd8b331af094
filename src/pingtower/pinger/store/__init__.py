"""The Pinger's database: tables and queries."""
