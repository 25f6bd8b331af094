"""Check types, one module each, registered by name."""
