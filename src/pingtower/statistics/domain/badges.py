"""SVG badges (label on the left, value on the right), like the ones READMEs show."""

from __future__ import annotations

from xml.sax.saxutils import escape

from pingtower.common.events import Status

GREEN, YELLOW, ORANGE, RED, GREY = "#4c1", "#dfb317", "#fe7d37", "#e05d44", "#9f9f9f"

STATUS_COLORS = {
    Status.UP: GREEN,
    Status.DEGRADED: YELLOW,
    Status.PENDING: ORANGE,
    Status.DOWN: RED,
    Status.MAINTENANCE: GREY,
    Status.PAUSED: GREY,
    Status.UNKNOWN: GREY,
}


def uptime_color(ratio: float | None) -> str:
    if ratio is None:
        return GREY
    if ratio >= 0.999:
        return GREEN
    if ratio >= 0.99:
        return YELLOW
    if ratio >= 0.95:
        return ORANGE
    return RED


def latency_color(ms: float | None) -> str:
    if ms is None:
        return GREY
    if ms < 300:
        return GREEN
    if ms < 1000:
        return YELLOW
    return RED


def format_uptime(ratio: float | None) -> str:
    if ratio is None:
        return "no data"
    percent = ratio * 100
    # never round 99.995% up to a misleading 100%
    return "100%" if ratio == 1.0 else f"{min(percent, 99.99):.2f}%"


def format_latency(ms: float | None) -> str:
    return "no data" if ms is None else f"{ms:.0f} ms"


def _width(text: str) -> int:
    # Verdana 11px averages ~7 px a character; 10 px padding on each side.
    return 7 * len(text) + 10


def render(label: str, value: str, color: str) -> str:
    left, right = _width(label), _width(value)
    total = left + right
    label_text, value_text = escape(label), escape(value)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" '
        f'aria-label="{escape(label, {chr(34): "&quot;"})}: '
        f'{escape(value, {chr(34): "&quot;"})}">'
        f"<title>{label_text}: {value_text}</title>"
        f'<rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{color}"/>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,sans-serif" '
        'font-size="11">'
        f'<text x="{left / 2}" y="14">{label_text}</text>'
        f'<text x="{left + right / 2}" y="14">{value_text}</text>'
        "</g></svg>"
    )
