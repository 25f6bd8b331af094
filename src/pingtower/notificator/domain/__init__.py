"""Pure notification logic: rule matching, what a status change decides, retry timing, signing.

Nothing here does I/O or imports a framework, a driver or a broker."""
