"""The hand-written migrations create exactly the tables the code declares."""

from __future__ import annotations

from pingtower.notificator.service import MIGRATIONS
from pingtower.notificator.store.tables import metadata
from tests.integration.migrations import differences_after_migrating


async def test_the_migrations_match_the_models(database_url: str) -> None:
    assert await differences_after_migrating(database_url, MIGRATIONS, metadata) == []
