"""HTTP API of the Statistics service, under /api/v1/stats."""
