"""Shared request parameters, cursors and the 422 for a bad window."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Query
from pydantic import AwareDatetime

from pingtower.common.http.problems import Problem
from pingtower.common.security import Principal, require
from pingtower.statistics.domain.windows import WindowError

Viewer = Annotated[Principal, Depends(require("viewer"))]
Editor = Annotated[Principal, Depends(require("editor"))]
From = Annotated[AwareDatetime | None, Query(alias="from", description="Start (inclusive).")]
To = Annotated[AwareDatetime | None, Query(alias="to", description="End (exclusive); default now.")]
Cursor = Annotated[str | None, Query(max_length=200, description="next_cursor of a page")]


def invalid(error: WindowError) -> Problem:
    return Problem(
        422,
        "Validation failed",
        f"{error.field}: {error}",
        errors=[{"field": error.field, "message": str(error), "type": "value_error"}],
    )


def encode_cursor(at: datetime, key: uuid.UUID) -> str:
    """An opaque cursor for keyset pagination on (time, id)."""
    raw = json.dumps([at.isoformat(), str(key)]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        at, key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        parsed = datetime.fromisoformat(at)
        if parsed.tzinfo is None:
            raise ValueError("naive time in cursor")
        return parsed, uuid.UUID(key)
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise invalid(WindowError("cursor", "not a cursor from this API")) from None
