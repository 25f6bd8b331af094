"""The delivery worker: claims due rows of the delivery queue, sends them, records the result."""
