"""OrgActor: an organization's settings, plan limits and usage counters.
Usage is counted in memory and flushed to `usage_logs` through the group
committer every `FLUSH_INTERVAL` seconds and on deactivation. It also holds
the day's count of the tokens its agents used (read from the day's runs on
first use), against which each run checks the org's daily quota."""
from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

import msgspec

from actors.messages import GetState, Ping
from actors.runtime.actor import VirtualActor, on
from core.errors import Invalid, NotFound
from core.plans import DEFAULT_PLAN, PLAN_LIMITS
from storage import agents
from storage.committer import Write

FLUSH_INTERVAL = 5.0
USAGE_INSERT = ("INSERT INTO usage_logs (organization_id, metric_type, quantity)"
                " VALUES ($1::uuid, $2, $3)")


class RecordUsage(msgspec.Struct, frozen=True):
    metric: str
    quantity: int = 1


class FlushUsage(msgspec.Struct, frozen=True):
    pass


class AiTokensToday(msgspec.Struct, frozen=True):
    """The tokens the org's agents used today (UTC): its daily quota's count."""


class AiTokensSpent(msgspec.Struct, frozen=True):
    tokens: int


class OrgActor(VirtualActor):
    kind = "org"
    __slots__ = ("name", "settings", "plan", "limits", "used", "unflushed", "flush_handle",
                 "touches", "ai_day", "ai_tokens")

    async def on_activate(self) -> None:
        async with self.ctx.db.tenant_tx(self.org_id) as conn:
            org = await conn.fetchrow("SELECT name, settings FROM organizations WHERE id = $1",
                                      self.org_id)
            if org is None:
                raise NotFound(f"organization {self.org_id} not found")
            plan = await conn.fetchval(
                "SELECT plan FROM subscriptions WHERE status IN ('active', 'past_due')"
                " ORDER BY created_at DESC LIMIT 1")
            usage = await conn.fetch(
                "SELECT metric_type, sum(quantity)::bigint AS total FROM usage_logs"
                " WHERE created_at >= date_trunc('month', now()) GROUP BY metric_type")
        self.name = org["name"]
        self.settings = org["settings"] or {}
        self.plan = plan if plan in PLAN_LIMITS else DEFAULT_PLAN
        self.limits = PLAN_LIMITS[self.plan]
        self.used: Counter[str] = Counter({r["metric_type"]: r["total"] for r in usage})
        self.unflushed: Counter[str] = Counter()
        self.flush_handle: asyncio.TimerHandle | None = None
        self.touches = 0
        self.ai_day: date | None = None  # the day `ai_tokens` counts (read on first use)
        self.ai_tokens = 0

    async def on_deactivate(self) -> None:
        await self._flush()

    @on(GetState)
    def state(self, _: GetState) -> dict[str, Any]:
        return {"organization_id": self.org_id, "name": self.name, "settings": self.settings,
                "plan": self.plan, "limits": self.limits, "usage": dict(self.used),
                "unflushed": dict(self.unflushed)}

    @on(RecordUsage)
    def record(self, message: RecordUsage) -> int:
        if message.quantity <= 0:
            raise Invalid("usage quantity must be positive", field="quantity")
        self.used[message.metric] += message.quantity
        self.unflushed[message.metric] += message.quantity
        if self.flush_handle is None:
            self.flush_handle = asyncio.get_running_loop().call_later(
                FLUSH_INTERVAL, self.tell_self, FlushUsage())
        return self.used[message.metric]

    @on(FlushUsage)
    async def flush(self, _: FlushUsage) -> int:
        return await self._flush()

    async def _flush(self) -> int:
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None
        if not self.unflushed:
            return 0
        pending, self.unflushed = self.unflushed, Counter()
        try:
            await self.ctx.committer.commit(self.org_id, [
                Write(USAGE_INSERT, (self.org_id, metric, quantity))
                for metric, quantity in pending.items()])
        except Exception:
            self.unflushed.update(pending)  # keep them for the next flush
            raise
        return sum(pending.values())

    async def _ai_today(self) -> int:
        today = datetime.now(UTC).date()
        if self.ai_day != today:
            async with self.ctx.db.tenant_tx(self.org_id) as conn:
                self.ai_tokens = await agents.tokens_today(conn)
            self.ai_day = today
        return self.ai_tokens

    @on(AiTokensToday)
    async def ai_tokens_today(self, _: AiTokensToday) -> int:
        return await self._ai_today()

    @on(AiTokensSpent)
    async def ai_tokens_spent(self, message: AiTokensSpent) -> int:
        await self._ai_today()
        self.ai_tokens += max(0, message.tokens)
        return self.ai_tokens

    @on(Ping)
    def ping(self, _: Ping) -> int:
        self.touches += 1
        return self.touches
