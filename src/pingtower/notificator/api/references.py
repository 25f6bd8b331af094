"""Checks that ids named in a request belong to the caller's workspace."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from pingtower.common.http.problems import Problem
from pingtower.notificator.store.tables import monitors


async def check_monitors(
    session: Any, tenant: str, monitor_ids: list[uuid.UUID], field: str = "monitor_ids"
) -> None:
    """Refuse monitor ids that the projection knows to belong to another workspace.

    An id the projection does not know yet is accepted: the monitor may have been created a
    moment ago and its `monitor.created` not consumed yet. It can only ever match a monitor of
    this workspace, since matching is scoped by workspace.
    """
    if not monitor_ids:
        return
    foreign = (
        await session.scalars(
            select(monitors.c.monitor_id).where(
                monitors.c.monitor_id.in_(monitor_ids), monitors.c.tenant != tenant
            )
        )
    ).all()
    if foreign:
        listed = ", ".join(sorted(str(m) for m in foreign))
        message = f"no such monitor in this workspace: {listed}"
        raise Problem(
            422,
            "Validation failed",
            f"{field}: {message}",
            errors=[{"field": field, "message": message}],
        )
