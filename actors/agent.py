"""AgentActor: an AI agent's configuration and its limit on concurrent runs."""
from __future__ import annotations

from typing import Any

import msgspec

from actors.messages import GetState, Ping
from actors.runtime.actor import VirtualActor, on
from core.errors import NotFound, RateLimited

DEFAULT_MAX_RUNS = 4


class StartRun(msgspec.Struct, frozen=True):
    """Take a run slot; refused with `RateLimited` when all are taken."""

    run_id: str


class FinishRun(msgspec.Struct, frozen=True):
    run_id: str


class Begin(msgspec.Struct, frozen=True):
    """Take a run slot (`RateLimited` when all are taken) and answer the
    agent's configuration: what a run needs of its agent, in one call."""

    run_id: str


class Config(msgspec.Struct, frozen=True):
    """The agent's configuration, as stored (re-read with `fresh`)."""

    fresh: bool = False


class AgentActor(VirtualActor):
    kind = "agent"
    __slots__ = ("config", "max_runs", "runs", "touches")

    async def on_activate(self) -> None:
        await self._read()
        self.runs: set[str] = set()
        self.touches = 0

    async def _read(self) -> None:
        async with self.ctx.db.tenant_tx(self.org_id) as conn:
            row = await conn.fetchrow(
                "SELECT id, name, type, model, temperature, max_tokens, tools, guardrails,"
                " prompt_template, provider, is_active FROM ai_agents WHERE id = $1::uuid",
                self.key)
        if row is None:
            raise NotFound(f"agent {self.key} not found")
        self.config = dict(row)
        self.config["id"] = str(row["id"])
        self.config["temperature"] = float(row["temperature"] or 0)
        self.config["tools"] = list(row["tools"] or [])
        guardrails = row["guardrails"] or {}
        self.max_runs = int(guardrails.get("max_concurrent_runs", DEFAULT_MAX_RUNS))

    @on(Config)
    async def configuration(self, message: Config) -> dict[str, Any]:
        if message.fresh:
            await self._read()
        return dict(self.config)

    @on(GetState)
    def state(self, _: GetState) -> dict[str, Any]:
        return {"config": self.config, "max_runs": self.max_runs,
                "running": sorted(self.runs), "touches": self.touches}

    @on(StartRun)
    def start_run(self, message: StartRun) -> int:
        if message.run_id in self.runs:
            return len(self.runs)
        if len(self.runs) >= self.max_runs:
            raise RateLimited(f"agent {self.key} already has {self.max_runs} runs going",
                              retry_after=1.0)
        self.runs.add(message.run_id)
        return len(self.runs)

    @on(Begin)
    def begin(self, message: Begin) -> dict[str, Any]:
        self.start_run(StartRun(message.run_id))
        return dict(self.config)

    @on(FinishRun)
    def finish_run(self, message: FinishRun) -> int:
        self.runs.discard(message.run_id)
        return len(self.runs)

    @on(Ping)
    def ping(self, _: Ping) -> int:
        self.touches += 1
        return self.touches
