"""The Notificator's HTTP API (mounted under /api/v1)."""
