"""Values in the form SQLAlchemy stores them on SQLite, for the writers that skip its bind
processing (the evaluator's results, statistics' ingest).

A check result is stored by two consumers of the embedded process, the Pinger's evaluator and
statistics, each as SQLAlchemy would store it: its ids as 32 hex digits, its times as naive UTC
text with microseconds, its phases as `json.dumps` text. Those conversions (a JSON dump of a few
floats and three formatted times) were a fifth of each consumer's CPU per result
(bench/README.md, performance round 6), so they are made once per result, for whichever
consumer comes first, and kept for the other in a small memo keyed by the result's identity. In
the embedded mode both consumers get the very same `CheckCompleted` from the in-process bus; a
result that comes any other way (RabbitMQ, a test) is converted as if it were new. Contracts are
frozen, so a kept text cannot go stale; the memo holds the result itself, so its identity
cannot be reused while its entry lives.

Making the texts costs less too (performance round 7): a time's text is its second's, kept,
with its microseconds written after it; the phases' text fills a template kept per set of
phase names. Tests compare both with the general formatters.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import NamedTuple

from pingtower.common.events import CheckCompleted

# Enough for the results between the evaluator's and statistics' batches (a few hundred at
# most, when one consumer lags); a full memo is emptied at once, the simplest bound.
_MEMO_LIMIT = 2048
_times: dict[int, tuple[datetime, str]] = {}


def utc_text(value: datetime) -> str:
    """`value` as SQLAlchemy stores a `UtcDateTime` on SQLite: naive UTC, microseconds always
    ("2026-11-29 14:30:00.000000"; tests compare it with SQLAlchemy's). Kept per time object
    like a result's texts (a datetime is immutable): the evaluator writes a result's scheduled
    time twice, in the result's row and in its monitor's state row."""
    kept = _times.get(id(value))
    if kept is not None and kept[0] is value:
        return kept[1]
    text = _utc_text(value)
    if len(_times) >= _MEMO_LIMIT:
        _times.clear()
    _times[id(value)] = (value, text)
    return text


# "YYYY-MM-DD HH:MM:SS" per second since the epoch: the times of a batch of results fall in a
# few seconds, and formatting a whole time was most of a result's texts.
_seconds: dict[int, str] = {}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc_text(value: datetime) -> str:
    if value.tzinfo is UTC:
        # Its microseconds are UTC's (another zone's offset may hold microseconds of its own)
        since = value - _EPOCH  # exact, in whole days, seconds and microseconds
        second = since.days * 86400 + since.seconds
        text = _seconds.get(second)
        if text is None:
            text = _formatted(value)[:19]
            if len(_seconds) >= _MEMO_LIMIT:
                _seconds.clear()
            _seconds[second] = text
        return f"{text}.{value.microsecond:06d}"
    return _formatted(value)


def _formatted(value: datetime) -> str:
    """`isoformat` without a `timespec` is the fastest formatter CPython has; it leaves out a
    zero microsecond."""
    if value.tzinfo is not UTC:
        offset = value.utcoffset()
        if offset is None:
            raise ValueError("naive datetime given to a UTC column")
        if offset:
            value = value.astimezone(UTC)
    text = value.isoformat(" ")
    return text[:26] if value.microsecond else text[:19] + ".000000"


# Per tuple of phase names, in order: a `%` template of the JSON text, or None for names that
# `json.dumps` would escape (there are a handful of sets of names: HTTP's, TCP's, DNS's...).
_phase_templates: dict[tuple[str, ...], str | None] = {}


def phases_text(phases: dict[str, float]) -> str:
    """`json.dumps(phases)`, as SQLAlchemy's JSON type stores it (a test compares the two).

    The encoder was a third of a result's texts (bench/README.md, performance round 7): here a
    template per set of names is filled with the values' `repr`, which is how `json` writes a
    float. Anything else it writes its own way (NaN, infinities, a value not a float, a name it
    escapes) goes to `json.dumps`."""
    values = tuple(phases.values())
    for value in values:
        # `value - value` is NaN for NaN and the infinities, 0.0 for every other float
        if type(value) is not float or value - value != 0.0:
            return json.dumps(phases)
    names = tuple(phases)
    template = _phase_templates.get(names, "")
    if template == "":
        template = _phases_template(names)
        if len(_phase_templates) >= _MEMO_LIMIT:
            _phase_templates.clear()
        _phase_templates[names] = template
    return json.dumps(phases) if template is None else template % values


def _phases_template(names: tuple[str, ...]) -> str | None:
    for name in names:
        # `json.dumps` writes a printable ASCII name as it is, unless it holds a quote or a
        # backslash; `%` would be taken for a placeholder.
        if not (name.isascii() and name.isprintable()) or any(c in name for c in '"\\%'):
            return None
    return "{" + ", ".join(f'"{name}": %r' for name in names) + "}"


class ResultTexts(NamedTuple):
    """A check result's values that need converting, as stored on SQLite."""

    check_id: str
    monitor_id: str
    scheduled_at: str
    started_at: str
    finished_at: str
    phases_ms: str  # `json.dumps`, as SQLAlchemy's JSON type stores it


_memo: dict[int, tuple[CheckCompleted, ResultTexts]] = {}


def result_texts(result: CheckCompleted) -> ResultTexts:
    """The stored forms of `result`'s converted values, made once per result object."""
    kept = _memo.get(id(result))
    if kept is not None and kept[0] is result:
        return kept[1]
    texts = ResultTexts(
        result.check_id.hex,
        result.monitor_id.hex,
        utc_text(result.scheduled_at),
        utc_text(result.started_at),
        utc_text(result.finished_at),
        phases_text(result.phases_ms),
    )
    if len(_memo) >= _MEMO_LIMIT:
        _memo.clear()
    _memo[id(result)] = (result, texts)
    return texts
