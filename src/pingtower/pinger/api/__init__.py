"""The Pinger's HTTP API: monitors and their results."""
