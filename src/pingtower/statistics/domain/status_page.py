"""The public status page's figures and its logo: pure rules, no I/O.

Days are UTC days. The page shows the last `DAYS` of them, today (up to now) last; each day's
uptime is the same time-weighted figure as the uptime endpoint (`domain/uptime.py`) over that
day. A logo is a small PNG, JPEG or SVG image the page shows from PingTower itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from pingtower.statistics.domain.rollups import Resolution, floor_to
from pingtower.statistics.domain.uptime import StatusInterval, UptimeFigures, uptime

DAYS = 90
DAY = Resolution.DAY.length
DEFAULT_GROUP = "Services"
MAX_LOGO_BYTES = 64 * 1024
LOGO_TYPES = ("image/png", "image/jpeg", "image/svg+xml")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"


def day_windows(now: datetime, days: int = DAYS) -> list[tuple[datetime, datetime]]:
    """[start, end) of each of the last `days` UTC days, oldest first; today's ends at now."""
    today = floor_to(now, DAY)
    starts = [today - (days - 1 - i) * DAY for i in range(days)]
    return [(start, min(start + DAY, now)) for start in starts]


def daily_uptime(
    intervals: Iterable[StatusInterval], windows: list[tuple[datetime, datetime]]
) -> list[UptimeFigures]:
    """Each window's time-weighted uptime figures from one monitor's status timeline; the
    windows in time order, as `day_windows` gives them.

    Each window's figures are `uptime` over the intervals that can overlap it, found by walking
    the timeline once beside the windows: 90 days of a monitor that changed status often would
    otherwise cost 90 passes over its whole timeline."""
    timeline = sorted(intervals, key=lambda interval: interval.start)
    figures = []
    first = 0
    for start, end in windows:
        # An interval over before this window is over before every later one too.
        while first < len(timeline) and (timeline[first].end or end) <= start:
            first += 1
        overlapping = []
        for interval in timeline[first:]:
            if interval.start >= end:
                break
            overlapping.append(interval)
        figures.append(uptime(overlapping, start, end))
    return figures


def group_of(tags: Iterable[str]) -> str:
    """The first tag in alphabetical order names the monitor's group on the page."""
    ordered = sorted(tags)
    return ordered[0] if ordered else DEFAULT_GROUP


@dataclass(frozen=True)
class LogoRefused(ValueError):
    """Why an image is not accepted as a logo; `status` is the HTTP answer it deserves."""

    status: int
    reason: str

    def __str__(self) -> str:
        return self.reason


def media_type(content_type: str) -> str:
    """`image/PNG; charset=x` -> `image/png`."""
    return content_type.split(";", 1)[0].strip().lower()


def check_logo(content_type: str, data: bytes) -> str:
    """The logo's media type when `data` is an acceptable logo of that type; else LogoRefused.

    The bytes must be what the type says (a PNG or JPEG signature, an SVG document), so a file
    renamed to pass for an image is refused rather than served under a wrong type. An SVG may
    hold no document type declaration (defusedxml): entities are how XML bombs expand."""
    kind = media_type(content_type)
    if kind not in LOGO_TYPES:
        raise LogoRefused(415, f"a logo is one of {', '.join(LOGO_TYPES)}, not {kind or 'empty'}")
    if not data:
        raise LogoRefused(422, "the image is empty")
    if len(data) > MAX_LOGO_BYTES:
        raise LogoRefused(
            413, f"the image has {len(data)} bytes; a logo may have at most {MAX_LOGO_BYTES}"
        )
    if kind == "image/png" and not data.startswith(PNG_SIGNATURE):
        raise LogoRefused(422, "the image is not a PNG file")
    if kind == "image/jpeg" and not data.startswith(JPEG_SIGNATURE):
        raise LogoRefused(422, "the image is not a JPEG file")
    if kind == "image/svg+xml":
        check_svg(data)
    return kind


def check_svg(data: bytes) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise LogoRefused(422, "the SVG is not UTF-8 text") from None
    try:
        root = fromstring(text, forbid_dtd=True)
    except DefusedXmlException:
        raise LogoRefused(422, "the SVG may not hold a document type declaration") from None
    except ParseError as error:
        raise LogoRefused(422, f"the SVG is not well-formed XML: {error}") from None
    if root.tag not in ("svg", "{http://www.w3.org/2000/svg}svg"):
        raise LogoRefused(422, "the SVG document's root element is not <svg>")


def clean_title(title: str | None) -> str | None:
    """Surrounding blanks dropped; an empty title is no title (the page names the workspace)."""
    if title is None:
        return None
    stripped = " ".join(title.split())
    return stripped or None
