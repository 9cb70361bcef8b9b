"""The host's mailbox machinery in-process (no Ray): order, bounds, errors,
passivation and the LRU cap. Each host stands on a context of its own,
opened as an actor host opens it."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from actors.runtime.actor import VirtualActor
from actors.runtime.host import Host, HostConfig, by_kind
from actors.runtime.protocol import ASK, TELL, Envelope, Failure, MailboxFull, encode_error
from actors.runtime.remote import open_context
from core.settings import Settings
from tests.actors.kinds import TEST_KINDS, Append, Boom, Flaky, GetLog, Plain, Recorder, SlowAppend

MakeHost = Callable[..., Host]


@pytest.fixture
async def make_host(settings: Settings) -> AsyncIterator[MakeHost]:
    async with open_context(0, settings) as ctx:
        yield lambda **config: Host(ctx, TEST_KINDS, HostConfig(**config))


async def ask(host: Host, key: str, message: object) -> object:
    future = host.enqueue("plain", "org", key, message, True)
    assert future is not None
    return await future


async def test_turns_are_serial_and_in_order_per_actor(make_host: MakeHost) -> None:
    host = make_host()
    futures = [host.enqueue("plain", "org", "a", SlowAppend("s", n) if n % 3 else Append("s", n),
                            True) for n in range(200)]
    assert await asyncio.gather(*futures) == list(range(1, 201))  # type: ignore[arg-type]
    assert await ask(host, "a", GetLog()) == [("s", n) for n in range(200)]


async def test_turn_error_reaches_the_asker_and_the_actor_lives_on(make_host: MakeHost) -> None:
    host = make_host()
    with pytest.raises(ValueError, match="bad input"):
        await ask(host, "b", Boom("bad input"))
    assert await ask(host, "b", Append("s", 1)) == 1


async def test_bounded_mailbox_says_retry_later(make_host: MakeHost) -> None:
    host = make_host(mailbox_limit=5)
    # not yet active: everything queues behind the activation
    queued = [host.enqueue("plain", "org", "c", Append("s", n), True) for n in range(5)]
    with pytest.raises(MailboxFull, match="retry later"):
        host.enqueue("plain", "org", "c", Append("s", 5), False)
    await asyncio.gather(*queued)  # type: ignore[arg-type]
    assert await ask(host, "c", GetLog()) == [("s", n) for n in range(5)]


async def deliver(host: Host, envelopes: list[Envelope]) -> tuple[list[Failure], dict[int, Any]]:
    """`Host.accept` a batch and wait for its asks: what a caller would be
    answered, as `(index, code, text)` failures and results by index."""
    slots = host.accept(envelopes)
    waits = [s for s in slots if isinstance(s, asyncio.Future)]
    if waits:
        await asyncio.wait(waits, timeout=5.0)
    failures: list[Failure] = []
    results: dict[int, Any] = {}
    for i, slot in enumerate(slots):
        if isinstance(slot, tuple):
            failures.append((i, *slot))
        elif slot is not None and slot.exception() is not None:
            failures.append((i, *encode_error(slot.exception())))  # type: ignore[arg-type]
        elif slot is not None:
            results[i] = slot.result()
    return failures, results


async def test_accept_reports_unknown_kinds_and_turn_errors_per_envelope(
        make_host: MakeHost) -> None:
    host = make_host()
    failures, results = await deliver(host, [
        ("nope", "org", "e", Append("s", 0), TELL, 0.0),
        ("plain", "org", "e", Boom("no"), ASK, 5.0),
        ("plain", "org", "e", Append("s", 1), ASK, 5.0),
    ])
    codes = {i: code for i, code, _ in failures}
    assert codes == {0: "unknown_kind", 1: "turn_error"}
    assert results == {2: 1}


async def test_idle_actors_passivate_and_come_back_fresh(make_host: MakeHost) -> None:
    host = make_host(idle_ttl=0.0)
    await ask(host, "f", Append("s", 1))
    actor = host.residents[("plain", "org", "f")]
    assert host.passivate_idle() == 1
    await asyncio.gather(*host._tasks)
    assert ("plain", "org", "f") not in host.residents
    assert actor.deactivated  # type: ignore[attr-defined]
    assert host.metrics.passivations["plain"] == 1
    assert await ask(host, "f", GetLog()) == []  # Plain keeps nothing across activations
    assert host.metrics.activations["plain"] == 2


async def test_lru_cap_keeps_the_most_recently_used(make_host: MakeHost) -> None:
    host = make_host(max_resident=10)
    for i in range(25):
        await ask(host, f"k{i}", Append("s", i))
    await ask(host, "k0", Append("s", 99))  # k0 becomes the most recent
    host.passivate_idle()
    await asyncio.gather(*host._tasks)
    keys = {key for _, _, key in host.residents}
    assert len(keys) == 10
    assert "k0" in keys and "k24" in keys and "k1" not in keys
    assert host.resident_by_kind["plain"] == 10


async def test_a_message_queued_behind_passivation_cancels_it(make_host: MakeHost) -> None:
    host = make_host(idle_ttl=0.0)
    await ask(host, "g", Append("s", 1))
    host.passivate_idle()
    future = host.enqueue("plain", "org", "g", Append("s", 2), True)
    assert await future == 2  # same activation, state kept, no flush needed
    assert ("plain", "org", "g") in host.residents
    assert host.metrics.passivations["plain"] == 0


async def test_a_message_after_passivation_gets_a_fresh_activation(make_host: MakeHost) -> None:
    host = make_host(idle_ttl=0.0)
    await ask(host, "g2", Append("s", 1))
    host.passivate_idle()
    await asyncio.sleep(0)  # one loop turn: the passivation task runs to its end
    future = host.enqueue("plain", "org", "g2", Append("s", 2), True)
    assert await future == 1  # reactivated after the flush: Plain starts empty
    assert ("plain", "org", "g2") in host.residents
    assert host.metrics.activations["plain"] == 2


async def test_idle_actor_keeps_no_mailbox_or_task(make_host: MakeHost) -> None:
    host = make_host()
    await ask(host, "h", SlowAppend("s", 1))
    await asyncio.gather(*host._tasks)
    actor = host.residents[("plain", "org", "h")]
    assert actor._mailbox is None and not actor._running
    assert not host._tasks


async def test_the_same_key_named_by_another_org_is_another_actor(make_host: MakeHost) -> None:
    host = make_host()
    assert await host.enqueue("plain", "org-a", "shared", Append("s", 1), True) == 1
    assert await host.enqueue("plain", "org-b", "shared", GetLog(), True) == []
    assert await host.enqueue("plain", "org-a", "shared", GetLog(), True) == [("s", 1)]
    assert {("plain", "org-a", "shared"), ("plain", "org-b", "shared")} <= set(host.residents)


async def test_kinds_are_registered_as_classes_by_their_kind(make_host: MakeHost) -> None:
    host = make_host()
    assert host.kinds == {"recorder": Recorder, "plain": Plain, "flaky": Flaky}
    with pytest.raises(TypeError, match="kind 'plain' is named by Plain and Twin"):
        by_kind([Plain, Twin])
    with pytest.raises(TypeError, match="is not a VirtualActor class"):
        by_kind([Append])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="has no kind"):
        by_kind([VirtualActor])


async def test_leaving_a_host_flushes_every_resident_actor(make_host: MakeHost) -> None:
    async with make_host() as host:
        await ask(host, "i", Append("s", 1))
        actor = host.residents[("plain", "org", "i")]
    assert actor.deactivated  # type: ignore[attr-defined]
    assert not host.residents


class Twin(Plain):
    kind = "plain"
    __slots__ = ()
