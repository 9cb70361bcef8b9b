"""An agent's guardrails (`ai_agents.guardrails`), parsed once and enforced
in code: the prompt may mention them, but nothing relies on the model
obeying.

`parse(data)` checks every field and raises `Invalid` naming the first bad
one (unknown keys too: a misspelt limit would otherwise silently be the
default). The checks are small pure functions the tool loop and the agent
actor call: `output_block(text)` (blocked patterns and topics on anything
the agent would say), `in_business_hours(at)`, `may_message(sent_today)`,
`within_run_tokens(used)`, `within_org_tokens(used_today)`.

Blocked patterns are operator-written regular expressions run on model
output, so a pathological one must not hang a run: patterns are capped in
length and count, compiled with the `regex` module, and every match runs
with a time limit (and all of them within a budget per text); a check that
times out counts as a block (fail closed)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from time import monotonic
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import regex

from core.errors import Invalid

Mode = Literal["draft", "autopilot"]
FIELD = "guardrails"
MAX_PATTERN = 200  # characters of one blocked pattern
MAX_PATTERNS = 50
MAX_TOPICS = 200
MAX_TOPIC = 100
MATCH_TIMEOUT = 0.05  # seconds one pattern may spend on one text
CHECK_BUDGET = 0.25  # seconds all patterns together may spend on one text
MAX_TOOL_STEPS = 20
KEYS = frozenset({"mode", "max_messages_per_contact_per_day", "business_hours",
                  "blocked_patterns", "blocked_topics", "max_tool_steps", "max_tokens_per_run",
                  "max_tokens_per_org_per_day", "max_concurrent_runs"})


@dataclass(frozen=True)
class BusinessHours:
    """When the agent may send: `days` (0 = Monday) from `start` to `end`,
    local time in `timezone`. An `end` before `start` is an overnight shift
    belonging to the day it starts."""

    timezone: ZoneInfo
    days: frozenset[int]
    start: time
    end: time

    def contains(self, at: datetime) -> bool:
        if at.tzinfo is None:
            raise ValueError("business hours need an aware datetime")
        local = at.astimezone(self.timezone)
        now = local.time().replace(tzinfo=None)
        if self.start < self.end:
            return local.weekday() in self.days and self.start <= now < self.end
        if now >= self.start:  # the evening part of an overnight shift
            return local.weekday() in self.days
        return now < self.end and (local.weekday() - 1) % 7 in self.days


@dataclass(frozen=True)
class Guardrails:
    mode: Mode = "draft"
    max_messages_per_contact_per_day: int = 20
    business_hours: BusinessHours | None = None
    blocked_patterns: tuple[regex.Pattern[str], ...] = ()
    blocked_topics: tuple[str, ...] = ()
    max_tool_steps: int = 5
    max_tokens_per_run: int = 4000
    max_tokens_per_org_per_day: int = 200_000
    max_concurrent_runs: int = 4
    _topics: tuple[regex.Pattern[str], ...] = field(default=(), repr=False, compare=False)

    @property
    def autopilot(self) -> bool:
        return self.mode == "autopilot"

    def output_block(self, text: str) -> str | None:
        """Why `text` must not go out (a blocked pattern or topic), or None."""
        deadline = monotonic() + CHECK_BUDGET
        for pattern in self.blocked_patterns:
            if monotonic() > deadline:
                return "the blocked patterns took too long (treated as a match)"
            try:
                hit = pattern.search(text, timeout=MATCH_TIMEOUT)
            except TimeoutError:
                return f"blocked pattern {pattern.pattern!r} took too long (treated as a match)"
            if hit is not None:
                return f"blocked pattern {pattern.pattern!r}"
        for topic, compiled in zip(self.blocked_topics, self._topics, strict=True):
            if compiled.search(text) is not None:
                return f"blocked topic {topic!r}"
        return None

    def in_business_hours(self, at: datetime) -> bool:
        """True when no business hours are set."""
        return self.business_hours is None or self.business_hours.contains(at)

    def may_message(self, sent_today: int) -> bool:
        """Whether one more message to a contact who got `sent_today` today is allowed."""
        return sent_today < self.max_messages_per_contact_per_day

    def within_run_tokens(self, used: int) -> bool:
        return used <= self.max_tokens_per_run

    def within_org_tokens(self, used_today: int) -> bool:
        return used_today < self.max_tokens_per_org_per_day


def parse(data: Mapping[str, Any] | None) -> Guardrails:
    """Guardrails from the agent's JSON; `Invalid` (field `guardrails.<key>`)
    for the first bad value. None or {} are the defaults."""
    if data is None:
        return Guardrails()
    if not isinstance(data, Mapping):
        raise Invalid("guardrails must be an object", field=FIELD)
    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise Invalid(f"unknown guardrail {unknown[0]!r}", field=f"{FIELD}.{unknown[0]}")
    mode = data.get("mode", "draft")
    if mode not in ("draft", "autopilot"):
        raise Invalid("mode is draft or autopilot", field=f"{FIELD}.mode")
    patterns = _patterns(data.get("blocked_patterns", []))
    topics = _topics(data.get("blocked_topics", []))
    return Guardrails(
        mode=mode,
        max_messages_per_contact_per_day=_int(data, "max_messages_per_contact_per_day", 20,
                                              0, 10_000),
        business_hours=_hours(data.get("business_hours")),
        blocked_patterns=patterns,
        blocked_topics=topics,
        max_tool_steps=_int(data, "max_tool_steps", 5, 0, MAX_TOOL_STEPS),
        max_tokens_per_run=_int(data, "max_tokens_per_run", 4000, 1, 1_000_000),
        max_tokens_per_org_per_day=_int(data, "max_tokens_per_org_per_day", 200_000, 1,
                                        1_000_000_000),
        max_concurrent_runs=_int(data, "max_concurrent_runs", 4, 1, 100),
        _topics=tuple(_topic_pattern(t) for t in topics),
    )


def _int(data: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = data.get(key, default)
    # bool is an int in Python; `true` is no limit anyone meant
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise Invalid(f"{key} is a whole number from {low} to {high}", field=f"{FIELD}.{key}")
    return value


def _strings(value: Any, key: str, most: int, longest: int) -> list[str]:
    where = f"{FIELD}.{key}"
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise Invalid(f"{key} is a list of non-empty strings", field=where)
    if len(value) > most:
        raise Invalid(f"{key} has at most {most} entries", field=where)
    for v in value:
        if len(v) > longest:
            raise Invalid(f"an entry of {key} is longer than {longest} characters", field=where)
    return value


def _patterns(value: Any) -> tuple[regex.Pattern[str], ...]:
    compiled = []
    for source in _strings(value, "blocked_patterns", MAX_PATTERNS, MAX_PATTERN):
        try:
            compiled.append(regex.compile(source, regex.IGNORECASE | regex.V0))
        except (regex.error, ValueError, OverflowError) as exc:
            raise Invalid(f"blocked pattern {source!r} does not compile: {exc}",
                          field=f"{FIELD}.blocked_patterns") from exc
    return tuple(compiled)


def _topics(value: Any) -> tuple[str, ...]:
    return tuple(t.strip() for t in _strings(value, "blocked_topics", MAX_TOPICS, MAX_TOPIC))


def _topic_pattern(topic: str) -> regex.Pattern[str]:
    """The phrase as whole words, any run of spaces between them, any case."""
    words = r"\s+".join(regex.escape(w) for w in topic.split())
    return regex.compile(rf"(?<!\w){words}(?!\w)", regex.IGNORECASE)


def _hours(value: Any) -> BusinessHours | None:
    if value is None:
        return None
    where = f"{FIELD}.business_hours"
    if not isinstance(value, Mapping):
        raise Invalid("business_hours is an object", field=where)
    unknown = sorted(set(value) - {"timezone", "days", "start", "end"})
    if unknown:
        raise Invalid(f"unknown business_hours key {unknown[0]!r}", field=f"{where}.{unknown[0]}")
    name = value.get("timezone", "UTC")
    try:
        zone = ZoneInfo(name) if isinstance(name, str) and name else None
    except (ZoneInfoNotFoundError, ValueError, OSError):
        zone = None
    if zone is None:
        raise Invalid(f"unknown time zone {name!r}", field=f"{where}.timezone")
    days = value.get("days", [0, 1, 2, 3, 4])
    if (not isinstance(days, list) or not days
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 6
                       for d in days)):
        raise Invalid("days is a non-empty list of 0 (Monday) to 6", field=f"{where}.days")
    start = _clock(value.get("start", "09:00"), f"{where}.start")
    end = _clock(value.get("end", "18:00"), f"{where}.end")
    if start == end:
        raise Invalid("business hours cannot start and end at the same time", field=f"{where}.end")
    return BusinessHours(zone, frozenset(days), start, end)


def _clock(value: Any, where: str) -> time:
    if isinstance(value, str) and len(value) == 5 and value[2] == ":":
        try:
            return time.fromisoformat(value)
        except ValueError:
            pass
    raise Invalid("a time of day is HH:MM", field=where)
