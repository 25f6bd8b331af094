from pingtower.common.db import run_alembic_env
from pingtower.identity.store.tables import metadata

run_alembic_env(metadata)
