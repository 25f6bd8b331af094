"""The hand-written migration creates exactly the tables the code declares."""

from __future__ import annotations

from pingtower.identity.service import MIGRATIONS
from pingtower.identity.store.tables import metadata
from tests.integration.migrations import differences_after_migrating


async def test_migration_matches_the_models(database_url: str) -> None:
    assert await differences_after_migrating(database_url, MIGRATIONS, metadata) == []
