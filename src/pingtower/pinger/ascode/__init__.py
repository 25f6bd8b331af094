"""Monitors as code: `pingtower apply` and `pingtower export`."""
