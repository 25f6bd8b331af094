"""Pure statistics: uptime maths, incident figures, latency histograms and rollup cells.

Nothing here does I/O or imports a framework; the store and the API call these functions.
"""
