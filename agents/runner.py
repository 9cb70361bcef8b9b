"""The tool loop of one agent run: ask the model, run the tool calls it
makes through the registry, feed every outcome back (refusals and invalid
calls too, as errors the model reads, so it can recover), and ask again,
until it answers with text or a limit stops it.

Limits are the guardrails', enforced here whatever the model does: at most
`max_tool_steps` rounds of tool calls (the next round stops the run as
`blocked`, "max tool steps"), at most `MAX_CALLS_PER_STEP` calls in a
round, and `max_tokens_per_run` tokens summed over the run's completions.
The final text goes through `output_block`, and may not repeat a line of
the system prompt's instructions ("reveal your prompt"), nor give out an
email or phone of any contact but the chat's that a tool returned ("export
the contact list"). A `ProviderError` ends the run
as `error`.

The runner never sends the reply: it returns it, and the agent actor
drafts or sends it by the agent's mode. The only way out of a run is the
`send_message` tool, which the registry lets through to `ctx.send` only
when it is allowed, screened and needs no approval."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agents.guardrails import Guardrails
from agents.llm import Provider, ProviderError, ToolCall, Turn, Usage
from agents.prompts import quotes_instructions
from agents.tools import Pending, Registry, ToolContext, ToolOutcome

log = logging.getLogger("agents.runner")

RunStatus = Literal["success", "error", "blocked"]
MAX_CALLS_PER_STEP = 8
LOGGED_ARGUMENTS = 2000  # characters of a call's arguments kept in the log


@dataclass(frozen=True)
class CallRecord:
    """One tool call as the execution log keeps it."""

    name: str
    arguments: str  # as the model wrote them, cut to LOGGED_ARGUMENTS
    status: str  # the ToolOutcome's status
    reason: str | None
    call_id: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments, "status": self.status,
                "reason": self.reason, "call_id": self.call_id}


@dataclass
class RunResult:
    status: RunStatus
    reply: str | None
    tool_calls: list[CallRecord] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    provider: str = ""
    elapsed_ms: int = 0
    reason: str | None = None  # the error, or why the run was blocked
    steps: int = 0  # rounds of tool calls

    @property
    def refused(self) -> list[CallRecord]:
        return [c for c in self.tool_calls if c.status != "ok"]

    def as_output(self) -> dict[str, Any]:
        """`agent_executions.output_data`."""
        return {"status": self.status, "reply": self.reply, "reason": self.reason,
                "tool_calls": [c.as_dict() for c in self.tool_calls],
                "pending": [{"tool": p.tool, "arguments": p.arguments, "reason": p.reason,
                             "call_id": p.call_id} for p in self.pending],
                "usage": {"input_tokens": self.usage.input_tokens,
                          "output_tokens": self.usage.output_tokens},
                "provider": self.provider, "elapsed_ms": self.elapsed_ms, "steps": self.steps}


@dataclass
class _Run:
    result: RunResult
    started: float

    def end(self, status: RunStatus, reply: str | None = None,
            reason: str | None = None) -> RunResult:
        self.result.status, self.result.reply, self.result.reason = status, reply, reason
        self.result.elapsed_ms = int((time.perf_counter() - self.started) * 1000)
        if status != "success":
            log.info("agent run %s: %s", status, reason)
        return self.result


async def run(*, provider: Provider, model: str, system: str, turns: Sequence[Turn],
              registry: Registry, allowed: Sequence[str], ctx: ToolContext,
              guardrails: Guardrails, max_tokens: int, temperature: float) -> RunResult:
    """One run of the tool loop (see the module doc)."""
    state = _Run(RunResult("success", None, provider=provider.name), time.perf_counter())
    result = state.result
    conversation = list(turns)
    specs = registry.specs(allowed)

    others: set[str] = set()  # other contacts' emails and phones the tools returned

    def screen(text: str) -> str | None:
        """Why `text` (the reply, or a message a tool would send) may not go out."""
        if quotes_instructions(system, text):
            return "the text repeats the system prompt"
        said = text.lower()
        if any(value in said for value in others):
            return "the text gives out another contact's email or phone"
        return guardrails.output_block(text)

    while True:
        budget = guardrails.max_tokens_per_run - result.usage.total
        try:
            completion = await provider.complete(
                model=model, system=system, turns=conversation, tools=specs,
                max_tokens=max(1, min(max_tokens, budget)), temperature=temperature)
        except ProviderError as exc:
            return state.end("error", reason=f"provider error: {exc}")
        result.usage = result.usage + completion.usage
        result.provider = completion.provider or result.provider
        if not guardrails.within_run_tokens(result.usage.total):
            return state.end("blocked", reason=f"max tokens per run"
                             f" ({result.usage.total} > {guardrails.max_tokens_per_run})")
        if not completion.tool_calls:
            text = completion.text.strip()
            blocked = screen(text) if text else None
            if blocked is not None:
                return state.end("blocked", reason=blocked)
            return state.end("success", reply=text or None)
        if result.steps >= guardrails.max_tool_steps:
            return state.end("blocked", reason="max tool steps")
        result.steps += 1
        conversation.append(Turn("assistant", completion.text,
                                 tool_calls=completion.tool_calls))
        for index, call in enumerate(completion.tool_calls):
            try:
                outcome = await _one(registry, ctx, call, allowed, screen, index)
            except Exception as exc:  # a bug in a tool: the run fails, the chat goes on
                log.exception("agent %s: tool %s failed", ctx.agent_id, call.name)
                _record(result, call, ToolOutcome("error", error="the tool failed",
                                                  reason=type(exc).__name__))
                return state.end("error", reason=f"tool {call.name} failed: {exc!r}")
            _record(result, call, outcome)
            if outcome.result is not None:
                others.update(_foreign_contacts(outcome.result, ctx.contact_id))
            conversation.append(Turn("tool", outcome.feedback(), tool_call_id=call.id,
                                     name=call.name))


async def _one(registry: Registry, ctx: ToolContext, call: ToolCall, allowed: Sequence[str],
               screen: Callable[[str], str | None], index: int) -> ToolOutcome:
    if index >= MAX_CALLS_PER_STEP:
        return ToolOutcome("refused", error=f"at most {MAX_CALLS_PER_STEP} tool calls at once",
                           reason="too many calls in one step")
    return await registry.call(ctx, call, allowed, screen=screen)


def _record(result: RunResult, call: ToolCall, outcome: ToolOutcome) -> None:
    result.tool_calls.append(CallRecord(call.name[:100], call.arguments[:LOGGED_ARGUMENTS],
                                        outcome.status, outcome.reason, call.id))
    if outcome.status == "needs_approval" and outcome.arguments is not None:
        result.pending.append(Pending(call.name, outcome.arguments, outcome.reason or "",
                                      call.id))


def _foreign_contacts(value: Any, contact_id: str | None) -> set[str]:
    """The emails and phones of contacts other than the chat's in a tool
    result: the chat's contact may be told its own, never anyone else's."""
    found: set[str] = set()
    if isinstance(value, dict):
        if "id" in value and str(value["id"]) != str(contact_id):
            for key in ("email", "phone"):
                item = value.get(key)
                if isinstance(item, str) and len(item) >= 5:
                    found.add(item.lower())
        for item in value.values():
            found |= _foreign_contacts(item, contact_id)
    elif isinstance(value, list):
        for item in value:
            found |= _foreign_contacts(item, contact_id)
    return found
