"""Plan limits, per billing plan (subscriptions.plan)."""
from __future__ import annotations

PLAN_LIMITS: dict[str, dict[str, int]] = {
    "free": {"messages_sent": 1_000, "ai_calls": 100, "seats": 3, "agents": 1},
    "pro": {"messages_sent": 20_000, "ai_calls": 5_000, "seats": 10, "agents": 5},
    "team": {"messages_sent": 100_000, "ai_calls": 25_000, "seats": 50, "agents": 20},
    "enterprise": {"messages_sent": 10_000_000, "ai_calls": 1_000_000, "seats": 10_000,
                   "agents": 1_000},
}
DEFAULT_PLAN = "free"
