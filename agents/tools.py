"""The tool registry: what a model may call, and the one gate every call
passes before it does anything.

`Registry.call(ctx, call, allowed)` takes a model's `ToolCall` through, in
order: the allow-list (a tool the agent may not use, or that does not
exist, is `refused` and logged); the size cap and JSON parse of the
arguments (`invalid`); the tool's JSON schema (`invalid`, with what was
wrong); the outbound-text screen (what a sending tool would say, through
the guardrails: `refused`); approval (`needs_approval` with why: a change
to another contact, a send to anyone but the chat's contact, a bulk change
— any id list longer than one on a mutating tool); and only then the
handler, inside `ctx.db.tenant_tx(org_id)` so row-level security decides
what it can see (another org's id is simply not found). Whatever happens,
the model gets a `ToolOutcome` it can read; nothing raises to the loop
but a bug.

Tools that hand work to another component with its own connections (the
memory, the chat actor's send) set `transaction=False`: holding a pooled
connection while waiting for another from the same pool would deadlock
under load. Those components run their own tenant transactions."""
from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import asyncpg
import jsonschema

from agents.llm import ToolCall, ToolSpec
from core.errors import BidiError
from storage.audit import Actor
from storage.db import Database

log = logging.getLogger("agents.tools")

Status = Literal["ok", "refused", "invalid", "error", "needs_approval"]
MAX_ARGUMENTS = 16_384  # characters of one call's JSON arguments
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
UUID = {"type": "string", "pattern": UUID_PATTERN}


class MemoryStore(Protocol):
    """Long-term memory (agents.memory.LongTermMemory)."""

    async def recall(self, org_id: str, query: str, *, contact_id: Any = None,
                     limit: int = 5) -> Sequence[Any]: ...

    async def remember(self, org_id: str, actor: Actor, *, agent_id: Any,
                       contact_id: Any, memory_type: str,
                       content: str) -> tuple[Any, bool]: ...


Send = Callable[[str], Awaitable[dict[str, Any]]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ToolContext:
    """Where a run's tool calls act: the org, agent, chat and its contact.
    `send` is the chat's outbound (wired by the agent actor); `conn` is set
    by the registry for the duration of a transactional tool's call."""

    db: Database
    org_id: str
    agent_id: str
    chat_id: str | None
    contact_id: str | None
    actor: Actor
    memory: MemoryStore
    send: Send
    clock: Callable[[], datetime] = _utcnow
    _conn: asyncpg.Connection | None = field(default=None, repr=False, compare=False)

    def now(self) -> datetime:
        return self.clock()

    @property
    def conn(self) -> asyncpg.Connection:
        if self._conn is None:
            raise RuntimeError("this tool runs outside a transaction")
        return self._conn


Handler = Callable[[ToolContext, dict[str, Any]], Awaitable[dict[str, Any]]]
Approval = Callable[[ToolContext, dict[str, Any]], str | None]


def _no_approval(ctx: ToolContext, args: dict[str, Any]) -> str | None:
    return None


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object
    handler: Handler
    mutates: bool = False
    approval: Approval = _no_approval  # why a human must approve this call, or None
    transaction: bool = True
    outbound: Callable[[dict[str, Any]], str | None] | None = None  # text it would send

    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.parameters)


@dataclass(frozen=True)
class ToolOutcome:
    status: Status
    result: dict[str, Any] | None = None
    error: str | None = None  # what the model reads when it did not run
    reason: str | None = None  # why it was refused / needs approval, for the log
    arguments: dict[str, Any] | None = None  # the validated arguments of a held call

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def feedback(self) -> str:
        """The tool turn's content: JSON the model reads."""
        if self.status == "ok":
            return json.dumps(self.result, default=str)
        body: dict[str, Any] = {"status": self.status, "error": self.error}
        if self.status == "needs_approval":
            body["note"] = "not run: a human must approve it; do not retry"
        return json.dumps(body, default=str)


@dataclass(frozen=True)
class Pending:
    """A call held for a human's approval."""

    tool: str
    arguments: dict[str, Any]
    reason: str
    call_id: str


def bulk_reason(args: dict[str, Any]) -> str | None:
    """A bulk change: any argument that is a list of more than one id."""
    for key, value in args.items():
        if isinstance(value, list) and len(value) > 1 and key.endswith("_ids"):
            return f"a bulk change ({len(value)} records in {key})"
    return None


class Registry:
    def __init__(self, tools: Sequence[Tool]) -> None:
        self.tools = {t.name: t for t in tools}
        self._validators = {
            t.name: jsonschema.Draft202012Validator(t.parameters) for t in tools}
        for t in tools:
            jsonschema.Draft202012Validator.check_schema(t.parameters)

    def specs(self, allowed: Sequence[str]) -> list[ToolSpec]:
        """The tools the agent may use, as the model is told of them."""
        return [self.tools[n].spec() for n in dict.fromkeys(allowed) if n in self.tools]

    def parse(self, name: str, arguments: str) -> tuple[dict[str, Any] | None, ToolOutcome | None]:
        """The validated arguments, or the `invalid` outcome saying why not."""
        if len(arguments) > MAX_ARGUMENTS:
            return None, ToolOutcome("invalid", error=f"arguments longer than {MAX_ARGUMENTS}"
                                     " characters", reason="arguments too large")
        try:
            args = json.loads(arguments) if arguments.strip() else {}
        except (ValueError, RecursionError) as exc:
            return None, ToolOutcome("invalid", error=f"arguments are not JSON: {exc}",
                                     reason="malformed JSON")
        if not isinstance(args, dict):
            return None, ToolOutcome("invalid", error="arguments must be a JSON object",
                                     reason="not an object")
        errors = sorted(self._validators[name].iter_errors(args), key=lambda e: list(e.path))
        if errors:
            first = errors[0]
            where = "/".join(map(str, first.absolute_path)) or "arguments"
            message = first.message if len(first.message) <= 300 else first.message[:300] + "..."
            return None, ToolOutcome("invalid", error=f"{where}: {message}",
                                     reason="schema validation failed")
        return args, None

    async def call(self, ctx: ToolContext, call: ToolCall, allowed: Sequence[str], *,
                   screen: Callable[[str], str | None] | None = None) -> ToolOutcome:
        """Run one model tool call if everything allows it (see the module doc)."""
        tool = self.tools.get(call.name)
        if tool is None or call.name not in allowed:
            why = "unknown tool" if tool is None else "tool not in the agent's allow-list"
            log.warning("agent %s: refused %s call (%s)", ctx.agent_id, call.name[:100], why)
            return ToolOutcome("refused", error=f"{why}: {call.name[:100]}", reason=why)
        args, bad = self.parse(tool.name, call.arguments)
        if bad is not None or args is None:
            log.info("agent %s: invalid %s call (%s)", ctx.agent_id, tool.name,
                     bad.reason if bad else "")
            return bad or ToolOutcome("invalid", error="no arguments")
        if screen is not None and tool.outbound is not None:
            text = tool.outbound(args)
            blocked = screen(text) if text is not None else None
            if blocked is not None:
                log.warning("agent %s: %s blocked by guardrails (%s)", ctx.agent_id, tool.name,
                            blocked)
                return ToolOutcome("refused", error=f"blocked by the guardrails: {blocked}",
                                   reason=blocked)
        reason = (bulk_reason(args) if tool.mutates else None) or tool.approval(ctx, args)
        if reason is not None:
            log.info("agent %s: %s held for approval (%s)", ctx.agent_id, tool.name, reason)
            return ToolOutcome("needs_approval", error=f"needs a human's approval: {reason}",
                               reason=reason, arguments=args)
        return await self._run(ctx, tool, args)

    async def run_approved(self, ctx: ToolContext, name: str,
                           arguments: dict[str, Any]) -> ToolOutcome:
        """Run a call a human approved: validated again, approval not asked."""
        tool = self.tools.get(name)
        if tool is None:
            return ToolOutcome("refused", error=f"unknown tool: {name}", reason="unknown tool")
        args, bad = self.parse(name, json.dumps(arguments))
        if bad is not None or args is None:
            return bad or ToolOutcome("invalid", error="no arguments")
        return await self._run(ctx, tool, args)

    async def _run(self, ctx: ToolContext, tool: Tool, args: dict[str, Any]) -> ToolOutcome:
        try:
            if not tool.transaction:
                return ToolOutcome("ok", result=await tool.handler(ctx, args))
            async with ctx.db.tenant_tx(ctx.org_id) as conn:
                result = await tool.handler(dataclasses.replace(ctx, _conn=conn), args)
            return ToolOutcome("ok", result=result)
        except BidiError as exc:  # not found (another org's id too), invalid, conflict
            return ToolOutcome("error", error=exc.message, reason=exc.code)
