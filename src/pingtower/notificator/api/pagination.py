"""Opaque keyset cursors: base64 of (timestamp, id) of the last item of the previous page."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_

from pingtower.common.http.problems import Problem


def encode_cursor(at: datetime, item_id: uuid.UUID) -> str:
    raw = json.dumps([at.isoformat(), str(item_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, item_id = json.loads(base64.urlsafe_b64decode(padded))
        return datetime.fromisoformat(at), uuid.UUID(item_id)
    except (ValueError, TypeError) as exc:
        raise Problem(400, "Bad Request", "cursor is not valid") from exc


def after_cursor(at_column: Any, id_column: Any, cursor: str | None, *, descending: bool) -> Any:
    """The WHERE clause that continues after `cursor` in (at, id) order."""
    if cursor is None:
        return and_(True)
    at, item_id = decode_cursor(cursor)
    if descending:
        return or_(at_column < at, and_(at_column == at, id_column < item_id))
    return or_(at_column > at, and_(at_column == at, id_column > item_id))
