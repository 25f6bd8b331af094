"""Alembic environment of the Pinger's database."""

from pingtower.common.db import run_alembic_env
from pingtower.pinger.store.tables import metadata

run_alembic_env(metadata)
