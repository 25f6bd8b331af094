"""Benchmarks of the probe and of the embedded system (see README.md)."""
