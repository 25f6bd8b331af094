"""The hand-written migration creates exactly the tables the code declares."""

from __future__ import annotations

from pingtower.pinger.store.database import MIGRATIONS
from pingtower.pinger.store.tables import metadata
from tests.integration.migrations import differences_after_migrating
from tests.integration.pinger.conftest import MakeUrl


async def test_migration_matches_the_models(make_db_url: MakeUrl) -> None:
    url = await make_db_url()
    assert await differences_after_migrating(url, MIGRATIONS, metadata) == []
