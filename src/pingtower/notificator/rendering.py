"""Message text from sandboxed Jinja2 templates.

User-written templates (a webhook body) run in Jinja2's sandbox: no attribute access to Python
internals, no imports, so a template cannot read the process's memory or run code.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template
from jinja2.exceptions import TemplateError
from jinja2.sandbox import SandboxedEnvironment

from pingtower.notificator.channels.base import ChannelError, Message
from pingtower.notificator.domain.grouping import summarise

GROUP_DETAIL_LINES = 10


def humanize_seconds(seconds: float) -> str:
    """Compact duration for people: 45s, 3m 20s, 2h 5m, 3d 4h."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def _format_time(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S} UTC"
    return str(value)


def _days(value: float) -> str:
    days = abs(float(value))
    if days < 1:
        return humanize_seconds(days * 86_400)
    return f"{days:.0f} day" if round(days) == 1 else f"{days:.0f} days"


def _environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    env.filters["duration"] = humanize_seconds
    env.filters["time"] = _format_time
    env.filters["days"] = _days
    return env


_ENV = _environment()
# Templates for the default text, from the delivery's context (see store.deliveries.context).
# A heartbeat monitor whose job went silent is "late" (older queued contexts lack the flag).
_LATE = "heartbeat_late is defined and heartbeat_late"
_INCIDENT = (
    "{% if incident_id is defined and incident_id %}\nIncident: {{ incident_id }}{% endif %}"
)
_TITLES = {
    "down": "{% if " + _LATE + " %}LATE: heartbeat {{ monitor.name }}"
    "{% else %}DOWN: {{ monitor.name }}{% endif %}",
    "reminder": "{% if " + _LATE + " %}Still LATE: heartbeat {{ monitor.name }}"
    "{% else %}Still DOWN: {{ monitor.name }}{% endif %}",
    "degraded": "DEGRADED: {{ monitor.name }}",
    "recovered": "RECOVERED: {{ monitor.name }}",
    "flapping": "FLAPPING: {{ monitor.name }}",
    "escalation": "ESCALATED: {{ monitor.name }} is DOWN and unacknowledged",
    "test": "PingTower test message",
    "latency": "SLOW: {{ monitor.name }} above {{ threshold_ms | round | int }} ms",
    "latency_ok": "LATENCY OK: {{ monitor.name }}",
    "cert_expiring": "CERTIFICATE EXPIRING: {{ monitor.name }} in {{ days_left | days }}",
    "slo": "SLO BURNING: {{ slo_subject }}",
}
_TEXTS = {
    "down": (
        "{% if " + _LATE + " %}The heartbeat of {{ monitor.name }} is LATE since "
        "{{ since | time }}: the job did not check in on time."
        "{% else %}{{ monitor.name }} ({{ monitor.target }}) is DOWN since {{ since | time }}."
        "{% endif %}"
        "{% if error %}\nError: {{ error }}{% endif %}"
        + _INCIDENT
        + "{% if link %}\n{{ link }}{% endif %}"
    ),
    "reminder": (
        "{{ monitor.name }} ({{ monitor.target }}) is still DOWN, since {{ since | time }} "
        "(reminder {{ sequence }})."
        "{% if error %}\nError: {{ error }}{% endif %}"
        "{% if link %}\n{{ link }}{% endif %}"
    ),
    "degraded": (
        "{{ monitor.name }} ({{ monitor.target }}) is DEGRADED since {{ since | time }}."
        "{% if error %}\nReason: {{ error }}{% endif %}"
        "{% if link %}\n{{ link }}{% endif %}"
    ),
    "recovered": (
        "{{ monitor.name }} ({{ monitor.target }}) is UP again at {{ changed_at | time }}"
        "{% if down_for_seconds is not none %}, after {{ down_for_seconds | duration }} of "
        "trouble{% endif %}."
        "{% if link %}\n{{ link }}{% endif %}"
    ),
    "flapping": (
        "{{ monitor.name }} ({{ monitor.target }}) keeps changing state (now {{ status }}). "
        "Further changes are held back until it is stable again."
        "{% if link %}\n{{ link }}{% endif %}"
    ),
    "escalation": (
        "{{ monitor.name }} ({{ monitor.target }}) is DOWN since {{ since | time }} and nobody "
        "has acknowledged the alert."
        "{% if error %}\nError: {{ error }}{% endif %}"
        "{% if link %}\n{{ link }}{% endif %}"
    ),
    "test": "This is a test message from PingTower; the channel works.",
    "latency": (
        "{{ monitor.name }} ({{ monitor.target }}) answered in {{ latency_ms | round | int }} ms, "
        "above {{ threshold_ms | round | int }} ms for {{ checks }} checks in a row "
        "(since {{ since | time }})."
        "{% if link %}\n{{ link }}{% endif %}"
    ),
    "latency_ok": (
        "{{ monitor.name }} ({{ monitor.target }}) answers in {{ latency_ms | round | int }} ms "
        "again, below {{ threshold_ms | round | int }} ms."
        "{% if link %}\n{{ link }}{% endif %}"
    ),
    "cert_expiring": (
        "The TLS certificate of {{ monitor.name }} ({{ monitor.target }}) "
        "{% if days_left <= 0 %}expired{% else %}expires{% endif %} at {{ expires_at | time }} "
        "({{ days_left | days }}{% if days_left > 0 %} left{% else %} ago{% endif %}; "
        "warning at {{ threshold_days }} days)."
        "{% if link %}\n{{ link }}{% endif %}"
    ),
    "slo": (
        "The SLO of {{ slo_subject }} ({{ (slo.objective * 100) | round(3) }}%) burns its error "
        "budget {{ slo.burn_rate_long | round(1) }}x too fast over "
        "{{ slo.long_window_seconds | duration }} ({{ slo.burn_rate_short | round(1) }}x over "
        "{{ slo.short_window_seconds | duration }}; alert at {{ slo.threshold }}x)."
        "{% if link %}\n{{ link }}{% endif %}"
    ),
}


@lru_cache(maxsize=256)
def _template(source: str) -> Template:
    """A compiled template, once per source: compiling cost about 25 ms, rendering well under
    one, and every message used to compile its title and text again."""
    return _ENV.from_string(source)


def _with_subject(context: dict[str, Any]) -> dict[str, Any]:
    """What an SLO message names: its monitor, or its tag."""
    slo = context.get("slo")
    if not isinstance(slo, dict):
        return context
    monitor = context.get("monitor")
    subject = monitor["name"] if isinstance(monitor, dict) else f"tag {slo.get('tag')}"
    return {**context, "slo_subject": subject}


def render_message(kind: str, context: dict[str, Any]) -> Message:
    """The default title and text of a message of `kind` about `context`."""
    context = _with_subject(context)
    title = _template(_TITLES[kind]).render(context)
    text = _template(_TEXTS[kind]).render(context)
    return Message(kind=kind, title=title, text=text, data=context)


def render_body(template: str, message: Message) -> str:
    """A user's body template, with the message's context plus `title`, `text`, `kind`.

    Values are inserted as written; use the `tojson` filter to embed them as JSON strings.
    """
    try:
        return _template(template).render(
            {**message.data, "title": message.title, "text": message.text, "kind": message.kind}
        )
    except TemplateError as exc:
        raise ChannelError(f"body template failed: {exc}", permanent=True) from exc


def check_template(template: str) -> str | None:
    """A syntax error message, or None when the template parses."""
    try:
        _ENV.parse(template)
    except TemplateError as exc:
        return str(exc)
    return None


_GROUP_TITLES = {
    "down": "DOWN: {{ count }} monitors",
    "degraded": "DEGRADED: {{ count }} monitors",
    "recovered": "RECOVERED: {{ count }} monitors",
}


def render_group(kind: str, contexts: list[dict[str, Any]]) -> Message:
    """One message about several monitors that changed together (grouping)."""
    names = [str(c["monitor"]["name"]) for c in contexts]
    title = _template(_GROUP_TITLES.get(kind, "{{ count }} monitors")).render(count=len(contexts))
    lines = [f"{summarise(names)}."]
    for context in contexts[:GROUP_DETAIL_LINES]:
        lines.append(f"- {render_message(kind, context).text.splitlines()[0]}")
    if len(contexts) > GROUP_DETAIL_LINES:
        lines.append(f"... and {len(contexts) - GROUP_DETAIL_LINES} more")
    return Message(
        kind=kind,
        title=title,
        text="\n".join(lines),
        data={"group": True, "count": len(contexts), "items": contexts},
    )
