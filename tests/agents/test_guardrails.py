"""Guardrails parsed from an agent's JSON: defaults, each bad value named by
its field, business hours across time zones (and overnight, and around a
daylight-saving change), blocked patterns and topics on output."""
from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from agents.guardrails import CHECK_BUDGET, MATCH_TIMEOUT, Guardrails, parse
from core.errors import Invalid


def test_the_defaults() -> None:
    for data in (None, {}):
        g = parse(data)
        assert g == Guardrails()
        assert (g.mode, g.max_messages_per_contact_per_day, g.max_tool_steps,
                g.max_tokens_per_run, g.max_tokens_per_org_per_day) == (
            "draft", 20, 5, 4000, 200_000)
        assert not g.autopilot and g.business_hours is None
        assert g.in_business_hours(datetime(2026, 1, 4, 3, 0, tzinfo=UTC))  # no hours: always
        assert g.output_block("anything at all") is None


def test_values_are_read() -> None:
    g = parse({"mode": "autopilot", "max_messages_per_contact_per_day": 3, "max_tool_steps": 20,
               "max_tokens_per_run": 900, "max_tokens_per_org_per_day": 10_000,
               "max_concurrent_runs": 2})
    assert g.autopilot and g.max_tool_steps == 20 and g.max_concurrent_runs == 2
    assert g.may_message(2) and not g.may_message(3)
    assert g.within_run_tokens(900) and not g.within_run_tokens(901)
    assert g.within_org_tokens(9_999) and not g.within_org_tokens(10_000)


@pytest.mark.parametrize(("data", "field"), [
    ([], "guardrails"),
    ({"mode": "yolo"}, "guardrails.mode"),
    ({"max_tool_steps": 21}, "guardrails.max_tool_steps"),
    ({"max_tool_steps": -1}, "guardrails.max_tool_steps"),
    ({"max_tool_steps": True}, "guardrails.max_tool_steps"),
    ({"max_tool_steps": "5"}, "guardrails.max_tool_steps"),
    ({"max_tokens_per_run": 0}, "guardrails.max_tokens_per_run"),
    ({"max_tokens_per_org_per_day": 1.5}, "guardrails.max_tokens_per_org_per_day"),
    ({"max_messages_per_contact_per_day": None}, "guardrails.max_messages_per_contact_per_day"),
    ({"max_tool_step": 3}, "guardrails.max_tool_step"),
    ({"blocked_patterns": "x"}, "guardrails.blocked_patterns"),
    ({"blocked_patterns": ["(unclosed"]}, "guardrails.blocked_patterns"),
    ({"blocked_patterns": ["a" * 201]}, "guardrails.blocked_patterns"),
    ({"blocked_patterns": ["x"] * 51}, "guardrails.blocked_patterns"),
    ({"blocked_patterns": [""]}, "guardrails.blocked_patterns"),
    ({"blocked_topics": [3]}, "guardrails.blocked_topics"),
    ({"business_hours": "9-5"}, "guardrails.business_hours"),
    ({"business_hours": {"timezone": "Mars/Olympus"}}, "guardrails.business_hours.timezone"),
    ({"business_hours": {"timezone": "../../etc/passwd"}}, "guardrails.business_hours.timezone"),
    ({"business_hours": {"days": [7]}}, "guardrails.business_hours.days"),
    ({"business_hours": {"days": []}}, "guardrails.business_hours.days"),
    ({"business_hours": {"start": "9am"}}, "guardrails.business_hours.start"),
    ({"business_hours": {"end": "24:00"}}, "guardrails.business_hours.end"),
    ({"business_hours": {"start": "10:00", "end": "10:00"}}, "guardrails.business_hours.end"),
    ({"business_hours": {"tz": "UTC"}}, "guardrails.business_hours.tz"),
])
def test_a_bad_value_is_invalid_naming_its_field(data: Any, field: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse(data)
    assert caught.value.field == field


def _hours(**hours: Any) -> Guardrails:
    return parse({"business_hours": hours})


def test_business_hours_in_the_agents_time_zone() -> None:
    tokyo = _hours(timezone="Asia/Tokyo", days=[0, 1, 2, 3, 4], start="09:00", end="18:00")
    # Monday 2026-03-02 00:30 UTC is 09:30 in Tokyo: open there, night in UTC
    assert tokyo.in_business_hours(datetime(2026, 3, 2, 0, 30, tzinfo=UTC))
    assert not tokyo.in_business_hours(datetime(2026, 3, 1, 23, 59, tzinfo=UTC))  # 08:59
    assert not tokyo.in_business_hours(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))  # 18:00 closes
    # Friday 17:00 in Tokyo is open; Saturday 10:00 in Tokyo (Saturday 01:00 UTC) is not
    assert tokyo.in_business_hours(datetime(2026, 3, 6, 8, 0, tzinfo=UTC))
    assert not tokyo.in_business_hours(datetime(2026, 3, 7, 1, 0, tzinfo=UTC))


def test_business_hours_follow_daylight_saving() -> None:
    york = _hours(timezone="America/New_York", start="09:00", end="17:00")
    # 14:00 UTC is 09:00 EDT after the change (2026-03-08), 09:00 EST is 14:00 UTC before
    assert york.in_business_hours(datetime(2026, 3, 9, 13, 0, tzinfo=UTC))  # 09:00 EDT
    assert not york.in_business_hours(datetime(2026, 3, 6, 13, 0, tzinfo=UTC))  # 08:00 EST


def test_overnight_hours_belong_to_the_day_they_start() -> None:
    night = _hours(timezone="Europe/Berlin", days=[4], start="22:00", end="06:00")  # Friday
    assert night.in_business_hours(datetime(2026, 3, 6, 21, 30, tzinfo=UTC))  # Fri 22:30
    assert night.in_business_hours(datetime(2026, 3, 7, 4, 0, tzinfo=UTC))  # Sat 05:00
    assert not night.in_business_hours(datetime(2026, 3, 7, 21, 30, tzinfo=UTC))  # Sat 22:30
    assert not night.in_business_hours(datetime(2026, 3, 6, 4, 0, tzinfo=UTC))  # Fri 05:00


def test_business_hours_need_an_aware_time() -> None:
    with pytest.raises(ValueError):
        _hours().in_business_hours(datetime(2026, 3, 2, 10, 0))


def test_blocked_patterns_and_topics() -> None:
    g = parse({"blocked_patterns": [r"\b\d{4}[- ]?\d{4}[- ]?\d{4}[- ]?\d{4}\b", "guarantee"],
               "blocked_topics": ["wire transfer", "crypto"]})
    assert g.output_block("Card 4111 1111 1111 1111 please") is not None
    assert "guarantee" in (g.output_block("We GUARANTEE results") or "")
    assert g.output_block("Pay by Wire\n  Transfer today") == "blocked topic 'wire transfer'"
    assert g.output_block("CRYPTO is risky") == "blocked topic 'crypto'"
    # whole words only: a topic inside another word is not that topic
    assert g.output_block("cryptography and wire transfers are different") is None
    assert g.output_block("Let us meet on Monday") is None


def test_a_catastrophic_pattern_cannot_hang_a_check() -> None:
    g = parse({"blocked_patterns": [r"(a|aa)+b"] * 50})  # exponential backtracking
    started = time.perf_counter()
    reason = g.output_block("a" * 60)
    # one pattern's time limit, then the per-text budget stops the rest
    assert time.perf_counter() - started < CHECK_BUDGET + MATCH_TIMEOUT * 10
    # a time-out counts as a block: output that cannot be checked does not go out
    assert reason is not None and "too long" in reason
    assert parse({"blocked_patterns": [r"(a|aa)+b"]}).output_block("aab") is not None
