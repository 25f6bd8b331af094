from pingtower.common.db import run_alembic_env
from pingtower.notificator.store.tables import metadata

run_alembic_env(metadata)
