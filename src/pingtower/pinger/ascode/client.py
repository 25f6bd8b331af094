"""A small synchronous client of /api/v1/monitors for the `apply` and `export` commands.

It talks to the running system's public API (the embedded process, or the gateway of the
distributed mode), so the commands work the same in both. Standard library only: a command-line
tool needs no event loop.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

MAX_PAGES = 10_000  # a bound on pagination, far above any workspace


class ApiError(Exception):
    """The API refused a request; `errors` are the problem's per-field errors, if any."""

    def __init__(self, status: int, title: str, detail: str, errors: list[dict[str, Any]]):
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors

    def lines(self) -> list[str]:
        """One line per field in error, or the problem's detail."""
        if self.errors:
            return [f"{e.get('field', '?')}: {e.get('message', '')}" for e in self.errors]
        return [f"{self.status} {self.title}: {self.detail}".rstrip(": ")]


class MonitorsApi:
    def __init__(self, base_url: str, token: str | None, timeout: float = 30.0) -> None:
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"--url must be an http:// or https:// URL, not {base_url!r}")
        self.base = base_url.rstrip("/") + "/api/v1/monitors"
        self.token = token
        self.timeout = timeout

    def _call(self, method: str, path: str = "", body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        # The scheme is checked in __init__: http or https only.
        request = urllib.request.Request(self.base + path, data=data, method=method)  # noqa: S310
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - checked
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise _api_error(exc.code, exc.read()) from None
        return json.loads(raw) if raw else None

    def list_all(self) -> list[dict[str, Any]]:
        monitors: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            query = {"limit": "500", **({"cursor": cursor} if cursor else {})}
            page = self._call("GET", "?" + urllib.parse.urlencode(query))
            monitors.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return monitors

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", "", body))

    def update(self, monitor_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("PATCH", f"/{monitor_id}", body))

    def set_paused(self, monitor_id: str, paused: bool) -> None:
        self._call("POST", f"/{monitor_id}/{'pause' if paused else 'resume'}")

    def delete(self, monitor_id: str) -> None:
        self._call("DELETE", f"/{monitor_id}")


def _api_error(status: int, raw: bytes) -> ApiError:
    try:
        problem = json.loads(raw)
    except ValueError:
        return ApiError(status, "Error", raw.decode(errors="replace")[:300], [])
    if not isinstance(problem, dict):
        return ApiError(status, "Error", str(problem)[:300], [])
    errors = problem.get("errors")
    return ApiError(
        status,
        str(problem.get("title", "Error")),
        str(problem.get("detail", "")),
        errors if isinstance(errors, list) else [],
    )


def find_token(token: str | None, data_dir: Path | None) -> str | None:
    """--token, else PINGTOWER_TOKEN, else the embedded mode's admin token file (read only: a
    client must not create one)."""
    if token:
        return token
    if os.environ.get("PINGTOWER_TOKEN"):
        return os.environ["PINGTOWER_TOKEN"]
    directory = data_dir or Path(os.environ.get("PINGTOWER_DATA_DIR") or _default_data_dir())
    path = directory / "admin-token"
    return path.read_text().strip() if path.is_file() else None


def _default_data_dir() -> Path:
    from pingtower.common.settings import Settings

    default = Settings.model_fields["data_dir"].default
    return Path(default) if default is not None else Path("data")
