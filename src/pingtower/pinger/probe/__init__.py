"""The probe role: runs check jobs and publishes their results; needs no database."""
