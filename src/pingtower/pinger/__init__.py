"""Pinger: monitors, their schedule, the probes that check them and the status they earn."""
