"""The hosted language models behind `agents.llm.Provider`: OpenAI chat
completions and Anthropic messages, each through its official async SDK with
tools and streaming off, and `provider_for`, which picks one (or the offline
provider when there is no key).

Each provider maps our `Turn`s to its wire shape in one function and the
answer back in another, and turns every SDK exception into a
`ProviderError` at one choke point (`openai_error`, `anthropic_error`):

    ProviderError
      retryable, status=429/5xx   the SDK retried with backoff and gave up
      retryable, no status        the connection failed (refused, reset)
      retryable, timeout          no answer within the time budget
      not retryable, status=4xx   the request or the key is wrong (400, 401, 403, 404)
      not retryable, no status    the answer could not be read

Time budget. The SDKs retry 408/409/429/5xx, connection errors and timeouts
`max_retries` times with exponential backoff (0.5 s, 1 s, 2 s ... capped at
8 s, minus up to 25% jitter), and `timeout` bounds each attempt's connect,
write and every read. An SDK also honours a server's `Retry-After`
(OpenAI's up to 2 minutes, Anthropic's without limit), which would let one
call outlast any budget, so the whole call also runs under a hard deadline:

    deadline = timeout * (max_retries + 1) + sum(min(0.5 * 2**n, 8) for n < max_retries)

(30 s and 2 retries: 91.5 s). A call cut off there is
`ProviderError(timeout=True, retryable=True)`.

Only core/settings.py reads the environment: keys and base URLs come in as
arguments, and the base URL is always passed so the SDKs' own fallbacks to
`OPENAI_BASE_URL` / `ANTHROPIC_BASE_URL` never apply."""
from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

import anthropic
import openai

from agents.llm import Completion, Provider, ProviderError, ToolCall, ToolSpec, Turn, Usage
from agents.offline import OfflineProvider

OPENAI_URL = "https://api.openai.com/v1"
ANTHROPIC_URL = "https://api.anthropic.com"
RETRYABLE_STATUS = frozenset({408, 409, 429})


def deadline(timeout: float, max_retries: int) -> float:
    """The longest one `complete` may take: every attempt times out, and the
    SDK's backoff between them at its uncapped-jitter maximum."""
    backoff = sum(min(0.5 * 2.0**n, 8.0) for n in range(max_retries))
    return timeout * (max_retries + 1) + backoff


def _status_error(provider: str, status: int, message: str) -> ProviderError:
    retryable = status in RETRYABLE_STATUS or status >= 500
    return ProviderError(f"{provider}: HTTP {status}: {message}", retryable=retryable,
                         status=status)


def _sdk_error(provider: str, sdk: Any, exc: Exception) -> ProviderError:
    """An SDK's exception as ours (both SDKs name their errors alike)."""
    if isinstance(exc, sdk.APITimeoutError):
        return ProviderError(f"{provider}: request timed out", retryable=True, timeout=True)
    if isinstance(exc, sdk.APIConnectionError):
        return ProviderError(f"{provider}: connection failed: {exc}", retryable=True)
    if isinstance(exc, sdk.APIStatusError):
        return _status_error(provider, exc.status_code, exc.message)
    return ProviderError(f"{provider}: {exc}")


def openai_error(exc: openai.OpenAIError) -> ProviderError:
    return _sdk_error("openai", openai, exc)


def anthropic_error(exc: anthropic.AnthropicError) -> ProviderError:
    return _sdk_error("anthropic", anthropic, exc)


def _out_of_time(provider: str, budget: float) -> ProviderError:
    return ProviderError(f"{provider}: no completion within {budget:g} s", retryable=True,
                         timeout=True)


# -- OpenAI ---------------------------------------------------------------


def openai_messages(system: str, turns: list[Turn]) -> list[dict[str, Any]]:
    """Our turns as chat-completion messages: the system prompt first, an
    assistant turn's tool calls as `tool_calls`, each result a `tool` message."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for turn in turns:
        if turn.role == "tool":
            messages.append({"role": "tool", "tool_call_id": turn.tool_call_id,
                             "content": turn.content})
        elif turn.role == "assistant" and turn.tool_calls:
            messages.append({"role": "assistant", "content": turn.content or None,
                             "tool_calls": [{"id": c.id, "type": "function", "function": {
                                 "name": c.name, "arguments": c.arguments}}
                                 for c in turn.tool_calls]})
        else:
            messages.append({"role": turn.role, "content": turn.content})
    return messages


def _openai_completion(response: Any) -> Completion:
    if not response.choices:
        raise ProviderError("openai: the answer has no choices")
    choice = response.choices[0]
    calls = []
    for call in choice.message.tool_calls or ():
        if call.type == "function":
            calls.append(ToolCall(call.id, call.function.name, call.function.arguments))
        else:  # a custom (free-form) tool: its input is the raw text
            calls.append(ToolCall(call.id, call.custom.name, call.custom.input))
    usage = response.usage
    return Completion(text=choice.message.content or "", tool_calls=tuple(calls),
                      usage=Usage(usage.prompt_tokens, usage.completion_tokens) if usage
                      else Usage(), provider="openai", model=response.model,
                      finish=choice.finish_reason or "")


class _SdkProvider:
    """What both SDK-backed providers share: the hard deadline around a
    call, the one place an SDK's errors become ours, and closing the client."""

    name = ""
    deadline: float
    _client: Any

    async def _call(self, work: Callable[[], Awaitable[Any]], read: Callable[[Any], Completion],
                    sdk_error: type[Exception],
                    ours: Callable[[Any], ProviderError]) -> Completion:
        try:
            async with asyncio.timeout(self.deadline):
                response = await work()
            return read(response)
        except sdk_error as exc:
            raise ours(exc) from exc
        except TimeoutError as exc:
            raise _out_of_time(self.name, self.deadline) from exc
        except (AttributeError, TypeError, ValueError) as exc:
            raise ProviderError(f"{self.name}: unreadable answer: {exc}") from exc

    async def aclose(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()


class OpenAIProvider(_SdkProvider):
    name = "openai"

    def __init__(self, api_key: str, *, base_url: str | None = None, timeout: float = 30.0,
                 max_retries: int = 2) -> None:
        self.deadline = deadline(timeout, max_retries)
        self._client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url or OPENAI_URL,
                                          timeout=timeout, max_retries=max_retries)

    async def complete(self, *, model: str, system: str, turns: list[Turn],
                       tools: list[ToolSpec], max_tokens: int,
                       temperature: float) -> Completion:
        extra: dict[str, Any] = {}
        if tools:
            extra["tools"] = [{"type": "function", "function": {
                "name": t.name, "description": t.description, "parameters": t.parameters}}
                for t in tools]
            extra["tool_choice"] = "auto"
        return await self._call(
            lambda: self._client.chat.completions.create(
                model=model, messages=openai_messages(system, turns),
                max_completion_tokens=max_tokens, temperature=temperature, stream=False,
                **extra),
            _openai_completion, openai.OpenAIError, openai_error)


# -- Anthropic ------------------------------------------------------------


def _tool_input(arguments: str) -> dict[str, Any]:
    """A tool_use block's `input` must be an object; arguments that are not
    one (a call first made by another model) are kept, wrapped, not dropped."""
    try:
        parsed = json.loads(arguments) if arguments else {}
    except ValueError:
        return {"_raw": arguments}
    return parsed if isinstance(parsed, dict) else {"_raw": arguments}


def anthropic_messages(turns: list[Turn]) -> list[dict[str, Any]]:
    """Our turns as Messages API messages. Consecutive turns of one side are
    merged into one message: the results of one assistant turn's tool calls
    must all be in the single user message that follows it, results first."""
    messages: list[dict[str, Any]] = []
    for turn in turns:
        role = "assistant" if turn.role == "assistant" else "user"
        blocks: list[dict[str, Any]] = []
        if turn.role == "tool":
            blocks.append({"type": "tool_result", "tool_use_id": turn.tool_call_id,
                           "content": turn.content})
        elif turn.content:  # the API refuses empty text blocks
            blocks.append({"type": "text", "text": turn.content})
        blocks.extend({"type": "tool_use", "id": c.id, "name": c.name,
                       "input": _tool_input(c.arguments)} for c in turn.tool_calls)
        if not blocks:
            continue
        if messages and messages[-1]["role"] == role:
            merged = messages[-1]["content"] + blocks
            # results before any text in a user message, as the API requires
            merged.sort(key=lambda b: b["type"] != "tool_result")
            messages[-1]["content"] = merged
        else:
            messages.append({"role": role, "content": blocks})
    return messages


def _anthropic_completion(response: Any) -> Completion:
    texts, calls = [], []
    for block in response.content:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "tool_use":
            raw = block.input
            calls.append(ToolCall(block.id, block.name,
                                  raw if isinstance(raw, str) else json.dumps(raw)))
    usage = response.usage
    # Billed input is the uncached part plus what was written to and read from the cache.
    spent_in = usage.input_tokens + (usage.cache_creation_input_tokens or 0) \
        + (usage.cache_read_input_tokens or 0)
    return Completion(text="".join(texts), tool_calls=tuple(calls),
                      usage=Usage(spent_in, usage.output_tokens), provider="anthropic",
                      model=response.model, finish=response.stop_reason or "")


class AnthropicProvider(_SdkProvider):
    name = "anthropic"

    def __init__(self, api_key: str, *, base_url: str | None = None, timeout: float = 30.0,
                 max_retries: int = 2) -> None:
        self.deadline = deadline(timeout, max_retries)
        self._client = anthropic.AsyncAnthropic(api_key=api_key,
                                                base_url=base_url or ANTHROPIC_URL,
                                                timeout=timeout, max_retries=max_retries)

    async def complete(self, *, model: str, system: str, turns: list[Turn],
                       tools: list[ToolSpec], max_tokens: int,
                       temperature: float) -> Completion:
        # `temperature` is not sent: the Messages API version this SDK speaks
        # has no sampling temperature (the SDK offers no such parameter).
        extra: dict[str, Any] = {}
        if system:
            extra["system"] = system
        if tools:
            extra["tools"] = [{"name": t.name, "description": t.description,
                               "input_schema": t.parameters} for t in tools]
            extra["tool_choice"] = {"type": "auto"}
        return await self._call(
            lambda: self._client.messages.create(
                model=model, messages=anthropic_messages(turns),
                max_tokens=max_tokens, stream=False, **extra),
            _anthropic_completion, anthropic.AnthropicError, anthropic_error)


def provider_for(kind: str, *, api_key: str | None, base_url: str | None, timeout: float,
                 max_retries: int) -> Provider:
    """The provider of `kind` ("openai", "anthropic", "offline"); without a
    key, whatever the kind, the offline provider, so an org without
    credentials still gets drafts."""
    if kind == "offline" or not api_key:
        return OfflineProvider()
    if kind == "openai":
        return OpenAIProvider(api_key, base_url=base_url, timeout=timeout,
                              max_retries=max_retries)
    if kind == "anthropic":
        return AnthropicProvider(api_key, base_url=base_url, timeout=timeout,
                                 max_retries=max_retries)
    raise ValueError(f"unknown provider kind {kind!r} (openai, anthropic, offline)")
