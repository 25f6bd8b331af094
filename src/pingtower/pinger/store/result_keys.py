"""Which of a batch's check results are stored already: a result's key (finished_at,
check_id) is unique in check_results and a redelivered result carries it unchanged, so the
evaluator drops a result whose key it finds (migration 0007), where it claimed every message
id in an inbox kept for 7 days."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Uuid, text
from sqlalchemy.ext.asyncio import AsyncSession

from pingtower.common.events import CheckCompleted
from pingtower.common.sqlite_values import result_texts

# SQLite: the keys in their stored forms, as a JSON array of [finished_at, check_id] pairs;
# each is one probe of the key's index (json_each drives the join).
_SQLITE = (
    "SELECT r.check_id FROM json_each({keys}) AS k JOIN check_results AS r "
    "ON r.finished_at = json_extract(k.value, '$[0]') "
    "AND r.check_id = json_extract(k.value, '$[1]')"
)
_PLAIN_SQLITE = _SQLITE.format(keys="?")
_SQLITE_STATEMENT = text(_SQLITE.format(keys=":keys")).columns(check_id=Uuid)
# One array per key column, so the statement is the same whatever the batch size
_POSTGRESQL_STATEMENT = text(
    "SELECT r.check_id FROM unnest(CAST(:finished_at AS timestamptz[]), "
    "CAST(:check_id AS uuid[])) AS k(finished_at, check_id) JOIN check_results AS r "
    "ON r.finished_at = k.finished_at AND r.check_id = k.check_id"
).columns(check_id=Uuid)


def _sqlite_keys(results: Iterable[CheckCompleted]) -> str:
    keys = []
    for result in results:
        texts = result_texts(result)  # made once per result: its row is written from them
        keys.append((texts.finished_at, texts.check_id))
    return json.dumps(keys)


def plain_stored_lookup(results: Iterable[CheckCompleted]) -> tuple[str, tuple[str]]:
    """On SQLite's driver connection: the statement and its parameters whose rows are the
    results stored already (`plain_stored_ids` reads them)."""
    return _PLAIN_SQLITE, (_sqlite_keys(results),)


def plain_stored_ids(rows: Iterable[Sequence[Any]]) -> set[uuid.UUID]:
    return {uuid.UUID(hex=row[0]) for row in rows}


async def stored_check_ids(
    session: AsyncSession, results: Sequence[CheckCompleted]
) -> set[uuid.UUID]:
    """The check ids of `results` whose key is stored already."""
    if not results:
        return set()
    if session.get_bind().dialect.name == "postgresql":
        found = await session.scalars(
            _POSTGRESQL_STATEMENT,
            {
                "finished_at": [result.finished_at for result in results],
                "check_id": [result.check_id for result in results],
            },
        )
    else:
        found = await session.scalars(_SQLITE_STATEMENT, {"keys": _sqlite_keys(results)})
    return set(found)
