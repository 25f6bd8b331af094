"""The HTTP app factory every service uses: health, readiness, metrics, problem+json, OpenAPI."""
