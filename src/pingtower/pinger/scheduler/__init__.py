"""The scheduler role: publishes check jobs on time, one leader at a time."""
