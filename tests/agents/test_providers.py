"""OpenAIProvider, AnthropicProvider and OpenAIEmbedder through the real
SDKs over HTTP against the fake servers: replies, tool-call round trips in
each provider's documented shape, raw malformed arguments, the SDK's
retries, and every failure ending as a ProviderError in time."""
from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agents.embeddings_openai import OpenAIEmbedder
from agents.llm import ProviderError, ToolSpec, Turn
from agents.offline import OfflineProvider
from agents.providers import AnthropicProvider, OpenAIProvider, deadline, provider_for
from serve.stack import free_port
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.llm_script import ScriptedServer, hang, status, tokens
from tests.fakes.openai import FakeOpenAI, vector

TOOLS = [
    ToolSpec("get_contact", "The chat's contact.", {"type": "object", "properties": {}}),
    ToolSpec("search_memory", "Search what is remembered.",
             {"type": "object", "properties": {"query": {"type": "string"}},
              "required": ["query"]}),
]
Provider = OpenAIProvider | AnthropicProvider


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fake_anthropic() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic(free_port()).start()
    yield server
    server.stop()


@pytest.fixture(params=["openai", "anthropic"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fake(kind: str, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> ScriptedServer:
    return fake_openai if kind == "openai" else fake_anthropic


def make(kind: str, fake: ScriptedServer, key: str, *, timeout: float = 5.0,
         max_retries: int = 2) -> Provider:
    if kind == "openai":
        return OpenAIProvider(key, base_url=fake.url + "/v1", timeout=timeout,
                              max_retries=max_retries)
    return AnthropicProvider(key, base_url=fake.url, timeout=timeout, max_retries=max_retries)


async def ask(provider: Provider, turns: list[Turn], tools: list[ToolSpec] | None = None,
              system: str = "You are a helpful sales assistant.") -> Any:
    return await provider.complete(model="test-model", system=system, turns=turns,
                                   tools=TOOLS if tools is None else tools, max_tokens=300,
                                   temperature=0.2)


async def test_text_reply_with_usage(kind: str, fake: ScriptedServer) -> None:
    key = fake.new_key()
    fake.script(key, "Hi Ann, happy to help.")
    async with make(kind, fake, key) as provider:
        done = await ask(provider, [Turn("user", "What does it cost?")], tools=[])
    assert done.text == "Hi Ann, happy to help."
    assert done.tool_calls == ()
    assert done.provider == kind and done.model == "test-model"
    assert done.finish == ("stop" if kind == "openai" else "end_turn")
    [sent] = fake.requests(key)
    assert sent["stream"] is False
    if kind == "openai":
        assert sent["messages"] == [
            {"role": "system", "content": "You are a helpful sales assistant."},
            {"role": "user", "content": "What does it cost?"}]
        assert sent["max_completion_tokens"] == 300 and sent["temperature"] == 0.2
        assert "tools" not in sent
        assert done.usage.input_tokens == tokens(len(json.dumps(sent["messages"]))
                                                 + len("null"))
        assert done.usage.output_tokens == tokens(len("Hi Ann, happy to help."))
    else:
        assert sent["system"] == "You are a helpful sales assistant."
        assert sent["messages"] == [{"role": "user", "content": [
            {"type": "text", "text": "What does it cost?"}]}]
        assert sent["max_tokens"] == 300
        assert done.usage.output_tokens == tokens(len(json.dumps(
            [{"type": "text", "text": "Hi Ann, happy to help."}])))
        assert done.usage.input_tokens > 0
    assert done.usage.total == done.usage.input_tokens + done.usage.output_tokens


async def test_tool_call_round_trip(kind: str, fake: ScriptedServer) -> None:
    key = fake.new_key()
    fake.script(key, [("get_contact", {}), ("search_memory", {"query": "pricing"})],
                "Hi Ann, 40 seats are 4,000 EUR a month.")
    user = Turn("user", "Pricing for 40 seats?")
    async with make(kind, fake, key) as provider:
        first = await ask(provider, [user])
        assert first.finish == ("tool_calls" if kind == "openai" else "tool_use")
        assert [(c.name, json.loads(c.arguments)) for c in first.tool_calls] == [
            ("get_contact", {}), ("search_memory", {"query": "pricing"})]
        results = [Turn("tool", json.dumps({"first_name": "Ann"}),
                        tool_call_id=first.tool_calls[0].id, name="get_contact"),
                   Turn("tool", json.dumps({"memories": []}),
                        tool_call_id=first.tool_calls[1].id, name="search_memory")]
        final = await ask(provider, [user, Turn("assistant", "", first.tool_calls), *results])
    assert final.text == "Hi Ann, 40 seats are 4,000 EUR a month." and not final.tool_calls
    first_sent, second = fake.requests(key)
    ids = [c.id for c in first.tool_calls]
    if kind == "openai":
        assert first_sent["tool_choice"] == "auto"
        assert first_sent["tools"][1] == {"type": "function", "function": {
            "name": "search_memory", "description": "Search what is remembered.",
            "parameters": TOOLS[1].parameters}}
        assert second["messages"][2:] == [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": ids[0], "type": "function",
                 "function": {"name": "get_contact", "arguments": "{}"}},
                {"id": ids[1], "type": "function",
                 "function": {"name": "search_memory", "arguments": '{"query": "pricing"}'}}]},
            {"role": "tool", "tool_call_id": ids[0], "content": '{"first_name": "Ann"}'},
            {"role": "tool", "tool_call_id": ids[1], "content": '{"memories": []}'}]
    else:
        assert first_sent["tool_choice"] == {"type": "auto"}
        assert first_sent["tools"][1] == {"name": "search_memory",
                                          "description": "Search what is remembered.",
                                          "input_schema": TOOLS[1].parameters}
        # both results in ONE user message right after the assistant's tool_use turn
        assert second["messages"][1:] == [
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": ids[0], "name": "get_contact", "input": {}},
                {"type": "tool_use", "id": ids[1], "name": "search_memory",
                 "input": {"query": "pricing"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": ids[0],
                 "content": '{"first_name": "Ann"}'},
                {"type": "tool_result", "tool_use_id": ids[1], "content": '{"memories": []}'}]}]


async def test_malformed_tool_arguments_come_through_raw(kind: str,
                                                         fake: ScriptedServer) -> None:
    key = fake.new_key()
    fake.script(key, [("add_note", '{"text": "call back on Mon')])
    async with make(kind, fake, key) as provider:
        done = await ask(provider, [Turn("user", "note this")])
    [call] = done.tool_calls
    assert (call.name, call.arguments) == ("add_note", '{"text": "call back on Mon')


async def test_a_429_is_retried_by_the_sdk(kind: str, fake: ScriptedServer) -> None:
    key = fake.new_key()
    fake.script(key, status(429, retry_after=0.05), "second time lucky")
    async with make(kind, fake, key) as provider:
        done = await ask(provider, [Turn("user", "hello")])
    assert done.text == "second time lucky"
    assert len(fake.requests(key)) == 2


@pytest.mark.parametrize("code", [429, 500])
async def test_failing_for_ever_is_a_retryable_error(kind: str, fake: ScriptedServer,
                                                     code: int) -> None:
    key = fake.new_key()
    fake.script(key, *[status(code, retry_after=0.05)] * 5)
    async with make(kind, fake, key, max_retries=2) as provider:
        with pytest.raises(ProviderError) as raised:
            await ask(provider, [Turn("user", "hello")])
    assert raised.value.retryable and raised.value.status == code
    assert not raised.value.timeout
    assert len(fake.requests(key)) == 3  # the first try and two retries


async def test_a_bad_key_is_not_retryable(kind: str, fake: ScriptedServer) -> None:
    key = "sk-not-issued-by-the-server"
    async with make(kind, fake, key) as provider:
        with pytest.raises(ProviderError) as raised:
            await ask(provider, [Turn("user", "hello")])
    assert raised.value.status == 401 and not raised.value.retryable
    assert len(fake.requests(key)) == 1  # a 401 is not retried


async def test_a_bad_request_is_not_retryable(kind: str, fake: ScriptedServer) -> None:
    key = fake.new_key()
    async with make(kind, fake, key) as provider:
        with pytest.raises(ProviderError) as raised:  # a result for a call never made
            await ask(provider, [Turn("user", "hi"), Turn("tool", "{}", tool_call_id="nope")])
    assert raised.value.status == 400 and not raised.value.retryable


async def test_a_hang_ends_as_a_timeout_within_the_budget(kind: str,
                                                          fake: ScriptedServer) -> None:
    key = fake.new_key()
    fake.script(key, hang(30), hang(30))
    timeout, retries = 0.4, 1
    async with make(kind, fake, key, timeout=timeout, max_retries=retries) as provider:
        started = time.monotonic()
        with pytest.raises(ProviderError) as raised:
            await ask(provider, [Turn("user", "hello")])
        took = time.monotonic() - started
    assert raised.value.timeout and raised.value.retryable
    assert len(fake.requests(key)) == 2  # the SDK retried the timed-out attempt
    assert timeout * (retries + 1) <= took <= deadline(timeout, retries) + 0.3
    assert deadline(timeout, retries) == pytest.approx(timeout * (retries + 1) + 0.5)


async def test_a_long_retry_after_is_cut_at_the_deadline(kind: str,
                                                         fake: ScriptedServer) -> None:
    """The SDKs would sleep out a 30 s Retry-After; the call must not."""
    key = fake.new_key()
    fake.script(key, status(429, retry_after=30))
    async with make(kind, fake, key, timeout=0.4, max_retries=1) as provider:
        started = time.monotonic()
        with pytest.raises(ProviderError) as raised:
            await ask(provider, [Turn("user", "hello")])
        took = time.monotonic() - started
    assert raised.value.timeout and raised.value.retryable
    assert took <= deadline(0.4, 1) + 0.3
    assert len(fake.requests(key)) == 1


async def test_nobody_listening_is_a_retryable_error(kind: str, fake: ScriptedServer) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    provider = (OpenAIProvider("sk-x", base_url=url + "/v1", timeout=2, max_retries=0)
                if kind == "openai" else
                AnthropicProvider("sk-x", base_url=url, timeout=2, max_retries=0))
    async with provider:
        with pytest.raises(ProviderError) as raised:
            await ask(provider, [Turn("user", "hello")])
    assert raised.value.retryable and raised.value.status is None
    assert not raised.value.timeout


async def test_anthropic_merges_turns_of_one_side(fake_anthropic: FakeAnthropic) -> None:
    """Two user turns in a row and a result followed by new user text are one
    message each time; a request the API would refuse would fail here."""
    key = fake_anthropic.new_key()
    fake_anthropic.script(key, [("get_contact", {})], "ok")
    async with make("anthropic", fake_anthropic, key) as provider:
        first = await ask(provider, [Turn("user", "Hi"), Turn("user", "Are you there?")])
        await ask(provider, [Turn("user", "Hi"), Turn("assistant", "", first.tool_calls),
                             Turn("tool", '{"ok": true}', tool_call_id=first.tool_calls[0].id),
                             Turn("user", "And one more thing")], system="")
    one, two = fake_anthropic.requests(key)
    assert one["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "Hi"}, {"type": "text", "text": "Are you there?"}]}]
    assert "system" not in two
    assert two["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": first.tool_calls[0].id, "content": '{"ok": true}'},
        {"type": "text", "text": "And one more thing"}]}


async def test_embeddings_keep_order_and_size(fake_openai: FakeOpenAI) -> None:
    key = fake_openai.new_key()
    texts = ["Ann prefers email", "Budget approved for Q3", "", "Acme", "40 seats"]
    embedder = OpenAIEmbedder(key, base_url=fake_openai.url + "/v1", dimensions=256,
                              batch_size=2)
    vectors = await embedder.embed(texts)
    await embedder.aclose()
    assert len(vectors) == 5 and all(len(v) == 256 for v in vectors)
    for text, got in zip(texts, vectors, strict=True):
        want = vector(text or " ", 256)
        assert max(abs(a - b) for a, b in zip(got, want, strict=True)) < 1e-6
    sent = fake_openai.requests(key)
    assert [r["input"] for r in sent] == [texts[0:2], [" ", "Acme"], ["40 seats"]]
    assert {r["dimensions"] for r in sent} == {256}
    assert {r["model"] for r in sent} == {"text-embedding-3-small"}
    assert await embedder.embed([]) == []


async def test_embeddings_default_size_and_errors(fake_openai: FakeOpenAI) -> None:
    key = fake_openai.new_key()
    embedder = OpenAIEmbedder(key, base_url=fake_openai.url + "/v1")
    [one] = await embedder.embed(["hello"])
    assert len(one) == 1536 and math.isclose(sum(x * x for x in one), 1.0, rel_tol=1e-4)
    fake_openai.script(key, *[status(500)] * 2, endpoint="embeddings")
    failing = OpenAIEmbedder(key, base_url=fake_openai.url + "/v1", timeout=2.0,
                             max_retries=1)
    failing_fast = OpenAIEmbedder("sk-wrong", base_url=fake_openai.url + "/v1")
    with pytest.raises(ProviderError) as bad_key:
        await failing_fast.embed(["hello"])
    assert bad_key.value.status == 401 and not bad_key.value.retryable
    with pytest.raises(ProviderError) as server_down:
        await failing.embed(["hello"])
    assert server_down.value.status == 500 and server_down.value.retryable
    for client in (embedder, failing, failing_fast):
        await client.aclose()


async def test_provider_for_picks_by_kind_and_key(fake_openai: FakeOpenAI) -> None:
    options: dict[str, Any] = {"base_url": None, "timeout": 3.0, "max_retries": 1}
    openai = provider_for("openai", api_key="sk-1", **options)
    anthropic = provider_for("anthropic", api_key="sk-2", **options)
    assert isinstance(openai, OpenAIProvider) and openai.name == "openai"
    assert isinstance(anthropic, AnthropicProvider) and anthropic.name == "anthropic"
    assert openai.deadline == deadline(3.0, 1) == 6.5
    for kind in ("offline", "openai", "anthropic"):
        key = "sk-3" if kind == "offline" else None
        assert isinstance(provider_for(kind, api_key=key, **options), OfflineProvider)
    with pytest.raises(ValueError, match="unknown provider"):
        provider_for("llama", api_key="sk-4", **options)
    await openai.aclose()
    await anthropic.aclose()
