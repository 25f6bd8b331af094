"""Silences: for a while, matching monitors notify nobody.

A silence selects monitors like a rule does (ids or tags; neither means the whole workspace) and
holds from `starts_at` (inclusive) to `ends_at` (exclusive).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from pingtower.notificator.domain.rules import MonitorView


@dataclass(frozen=True)
class Silence:
    silence_id: uuid.UUID
    tenant: str
    starts_at: datetime
    ends_at: datetime
    monitor_ids: frozenset[uuid.UUID] = field(default_factory=frozenset)
    tags: frozenset[str] = field(default_factory=frozenset)

    def active(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at

    def matches(self, monitor: MonitorView, at: datetime) -> bool:
        if monitor.tenant != self.tenant or not self.active(at):
            return False
        if not self.monitor_ids and not self.tags:
            return True
        return monitor.monitor_id in self.monitor_ids or bool(self.tags.intersection(monitor.tags))


def is_silenced(silences: Iterable[Silence], monitor: MonitorView, at: datetime) -> bool:
    return any(silence.matches(monitor, at) for silence in silences)
