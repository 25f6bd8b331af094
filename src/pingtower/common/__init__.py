"""What every PingTower service shares, and nothing service-specific."""
