"""What every language-model provider speaks: a conversation of `Turn`s
and the tools the model may call, in; a `Completion` (text and/or tool
calls, token usage), out. OpenAI, Anthropic and the offline provider each
map these to their own wire shapes (agents.providers); the tool loop
(agents.runner) and the agent actor see only these.

A tool call's `arguments` stay the raw JSON text the model produced: they
are untrusted until the tool registry has validated them against the tool's
schema."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Role = Literal["user", "assistant", "tool"]


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the model is told of it: name, purpose, JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    id: str  # the provider's id of the call (a tool result names it)
    name: str
    arguments: str  # JSON text, as the model wrote it


@dataclass(frozen=True)
class Turn:
    """One entry of the conversation the model reads. `tool` turns carry a
    tool's result (`content`, JSON text) for the call `tool_call_id`."""

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None  # the tool's name, on a tool turn


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens,
                     self.output_tokens + other.output_tokens)


@dataclass(frozen=True)
class Completion:
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)
    provider: str = ""  # openai, anthropic, offline
    model: str = ""
    finish: str = ""  # the provider's stop reason (stop, tool_calls, length, end_turn, ...)


class ProviderError(Exception):
    """A completion that did not come: `retryable` when the same request may
    work later (429, 5xx, a timeout), `status` the HTTP status when there was one."""

    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None,
                 timeout: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.timeout = timeout


class Provider(Protocol):
    name: str

    async def complete(self, *, model: str, system: str, turns: list[Turn],
                       tools: list[ToolSpec], max_tokens: int,
                       temperature: float) -> Completion:
        """One completion (streaming off); `ProviderError` when none came."""
        ...
