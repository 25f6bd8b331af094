"""Monitor value objects and the validation rules that do not depend on a check type."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit


class InvalidSettingError(ValueError):
    """A monitor setting is wrong; `field` names it the way the API user wrote it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


_CODE_RANGE = re.compile(r"^\s*(\d{3})\s*(?:-\s*(\d{3})\s*)?$")


@dataclass(frozen=True)
class StatusCodes:
    """A set of HTTP status codes written as codes and ranges: ["200-299", "301"]."""

    ranges: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, specs: list[str], field: str = "expected_status") -> StatusCodes:
        if not specs:
            raise InvalidSettingError(field, "give at least one status code or range")
        ranges = []
        for spec in specs:
            match = _CODE_RANGE.match(spec)
            if match is None:
                raise InvalidSettingError(field, f"{spec!r} is not a code or a range like 200-299")
            low = int(match.group(1))
            high = int(match.group(2) or low)
            if not 100 <= low <= high <= 599:
                raise InvalidSettingError(field, f"{spec!r} is not within 100-599, low to high")
            ranges.append((low, high))
        return cls(tuple(ranges))

    def __contains__(self, code: object) -> bool:
        return isinstance(code, int) and any(low <= code <= high for low, high in self.ranges)


def validate_http_url(url: str, field: str = "target") -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InvalidSettingError(field, "must be an http:// or https:// URL")
    if not parts.hostname:
        raise InvalidSettingError(field, "has no host")
    return url


def parse_host_port(target: str, field: str = "target") -> tuple[str, int]:
    """ "host:port" or "[v6]:port" into its parts."""
    host, sep, port_text = target.rpartition(":")
    if not sep or not host:
        raise InvalidSettingError(field, "must be host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise InvalidSettingError(field, "port must be 1-65535")
    return host, int(port_text)


def validate_timing(
    *, interval: int, timeout: float, retry_interval: int, min_interval: int
) -> None:
    if interval < min_interval:
        raise InvalidSettingError("interval_seconds", f"must be at least {min_interval}")
    if retry_interval < min(min_interval, interval) or retry_interval > interval:
        raise InvalidSettingError(
            "retry_interval_seconds", f"must be between {min_interval} and the interval"
        )
    if not 0 < timeout <= interval:
        raise InvalidSettingError("timeout_seconds", "must be positive and at most the interval")


# The fields of a monitor that its owner sets, in the order an export writes them: the one list
# that the API's updates (`pinger/api/routes.py`) and monitors as code (`pinger/ascode/plan.py`)
# both derive theirs from, each with its differences spelt out there.
EDITABLE_FIELDS = (
    "name",
    "type",
    "target",
    "settings",
    "tags",
    "interval_seconds",
    "cron",
    "timezone",
    "timeout_seconds",
    "regions",
    "failures_before_down",
    "successes_before_up",
    "retry_interval_seconds",
    "failure_quorum",
    "parent_id",
    "paused",
    "public",
    "slo",
)
