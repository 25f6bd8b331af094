"""What a service's start says while it migrates its database: the steps ahead, and each one
done with its time.

A start migrates before it serves; an upgrade that copies a large table (statistics' 0007 on
SQLite: about half an hour for a week of minute cells at 50,000 monitors) would otherwise be a
process that says nothing for that long. Alembic logs its steps only at INFO through the
standard library, which `configure_logging` keeps at WARNING for libraries, and only as each
step starts, without its time.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import structlog
from alembic.runtime.migration import MigrationContext, MigrationInfo
from alembic.script import Script, ScriptDirectory

log = structlog.get_logger("pingtower.migrations")


def steps_up(script: ScriptDirectory, current: Sequence[str], target: str) -> list[Script]:
    """The revisions an upgrade from `current` to `target` applies, oldest first; none when
    `target` is not above `current` (a downgrade, or nothing to do). Our trees are linear."""
    ahead: list[Script] = []
    for revision in script.iterate_revisions(target, ()):  # from target down to the first
        if revision.revision in current:
            return ahead[::-1]
        ahead.append(revision)
    return [] if current else ahead[::-1]


def _title(revision: Script) -> str:
    return " ".join((revision.doc or "").split())


class MigrationLog:
    """Logs a migration of `database`: the steps ahead of an upgrade before the first, each
    step done (Alembic's `on_version_apply`), and the end. A new database, made by every step
    in a row in moments, gets the end's line alone."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.new = False
        self.heads: Sequence[str] = ()
        self.steps = 0
        self.started = self.last = time.monotonic()

    def start(
        self, script: ScriptDirectory, current: Sequence[str], target: str | Sequence[str] | None
    ) -> None:
        """Before the first step: `target` as Alembic's revision argument (None is the base,
        several heads a tuple)."""
        self.new = not current
        self.started = self.last = time.monotonic()
        ahead = steps_up(script, current, target) if isinstance(target, str) else []
        if ahead and not self.new:
            log.info(
                "database upgrade started",
                database=self.database,
                revision=",".join(current),
                steps=[f"{step.revision}: {_title(step)}" for step in ahead],
            )

    def on_version_apply(
        self,
        ctx: MigrationContext,
        step: MigrationInfo,
        heads: Collection[str],
        run_args: Mapping[str, Any],
    ) -> None:
        now = time.monotonic()
        self.steps += 1
        self.heads = sorted(heads)
        if not self.new:
            log.info(
                f"database migration step {'done' if step.is_upgrade else 'undone'}",
                database=self.database,
                revision=step.up_revision_id,
                seconds=round(now - self.last, 3),
            )
        self.last = now

    def finished(self) -> None:
        if self.steps:
            log.info(
                "database created" if self.new else "database migrated",
                database=self.database,
                revision=",".join(self.heads) or None,
                steps=self.steps,
                seconds=round(time.monotonic() - self.started, 3),
            )
