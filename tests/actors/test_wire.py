"""The data path between callers and hosts (actors.runtime.wire), in-process
against a real host on its own context: each call is answered when its own
turn ends (not when its frame's slowest does), a connection that does not
open with the host's token is closed before anything it sent is unpickled,
and a host that goes away fails the calls on the wire instead of losing them."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from actors.runtime.actor import VirtualActor, on
from actors.runtime.host import Host
from actors.runtime.protocol import ASK, TELL, HostUnavailable
from actors.runtime.remote import open_context
from actors.runtime.wire import TOKEN_BYTES, Endpoint, Link, pack
from core.settings import Settings
from tests.actors.kinds import TEST_KINDS, Append, GetLog
from tests.waiting import eventually

GATES: dict[str, asyncio.Event] = {}
TRIPPED: list[str] = []


class Wait(msgspec.Struct, frozen=True):
    gate: str


class Gated(VirtualActor):
    """A turn that ends only when the test opens its gate."""

    kind = "gated"
    __slots__ = ()

    @on(Wait)
    async def wait(self, message: Wait) -> str:
        await GATES[message.gate].wait()
        return "opened"


def _trip(name: str) -> str:
    TRIPPED.append(name)
    return name


class Tripwire:
    """Records that it was unpickled."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self) -> Any:
        return (_trip, (self.name,))


@pytest.fixture
async def endpoint(settings: Settings) -> AsyncIterator[Endpoint]:
    async with open_context(0, settings) as ctx, Host(ctx, [*TEST_KINDS, Gated]) as host, \
            Endpoint(host, "127.0.0.1") as ep:
        yield ep


def link_to(endpoint: Endpoint) -> Link:
    async def locate() -> Any:
        return endpoint.address, endpoint.token
    return Link(0, locate)


async def test_each_call_is_answered_when_its_own_turn_ends(endpoint: Endpoint) -> None:
    GATES["slow"] = asyncio.Event()
    link = link_to(endpoint)
    # Made in one loop tick: they travel in one frame.
    slow = link.call(("gated", "org", "g", Wait("slow"), ASK, 10.0))
    fast = link.call(("plain", "org", "p", Append("s", 1), ASK, 10.0))
    told = link.call(("plain", "org", "p", Append("s", 2), TELL, 0.0))
    assert await asyncio.wait_for(fast, 5) == 1
    assert await asyncio.wait_for(told, 5) is None
    assert not slow.done()  # still in its turn; it held nothing else
    GATES["slow"].set()
    assert await asyncio.wait_for(slow, 5) == "opened"
    log = link.call(("plain", "org", "p", GetLog(), ASK, 10.0))
    assert await asyncio.wait_for(log, 5) == [("s", 1), ("s", 2)]
    await link.close()


async def test_refusals_reach_the_caller_as_errors(endpoint: Endpoint) -> None:
    link = link_to(endpoint)
    unknown = link.call(("nope", "org", "x", Append("s", 0), ASK, 5.0))
    with pytest.raises(Exception) as caught:
        await asyncio.wait_for(unknown, 5)
    assert getattr(caught.value, "code", None) == "unknown_kind"
    await link.close()


async def _send_raw(endpoint: Endpoint, token: bytes, frame: bytes) -> bytes:
    assert endpoint.address is not None
    reader, writer = await asyncio.open_connection(*endpoint.address)
    writer.write(token + frame)
    try:
        return await asyncio.wait_for(reader.read(), 5)  # until the host closes
    finally:
        writer.close()


async def test_a_wrong_token_is_refused_before_anything_is_unpickled(
        endpoint: Endpoint) -> None:
    TRIPPED.clear()
    assert await _send_raw(endpoint, b"\0" * TOKEN_BYTES, pack(Tripwire("wrong"))) == b""
    assert TRIPPED == []
    # The same frame after the right token is unpickled (then refused as no
    # batch): the tripwire works, and the token is what kept it shut.
    assert await _send_raw(endpoint, endpoint.token, pack(Tripwire("right"))) == b""
    assert TRIPPED == ["right"]


async def test_a_host_going_away_fails_the_calls_on_the_wire(settings: Settings) -> None:
    GATES["never"] = asyncio.Event()
    async with open_context(0, settings) as ctx, Host(ctx, [*TEST_KINDS, Gated]) as host:
        async with Endpoint(host, "127.0.0.1") as first:
            link = link_to(first)
            assert await asyncio.wait_for(
                link.call(("plain", "org", "a", Append("s", 1), ASK, 5.0)), 5) == 1
            stuck = link.call(("gated", "org", "g", Wait("never"), ASK, 30.0))
            await eventually(lambda: ("gated", "org", "g") in host.residents,
                             what="the host has the stuck call")
        with pytest.raises(HostUnavailable):
            await asyncio.wait_for(stuck, 5)
        assert link.dead
        with pytest.raises(HostUnavailable):  # a dead link takes no more calls
            await asyncio.wait_for(
                link.call(("plain", "org", "a", Append("s", 2), ASK, 5.0)), 5)
        async with Endpoint(host, "127.0.0.1") as second:  # the host "restarted"
            again = link_to(second)
            assert await asyncio.wait_for(
                again.call(("plain", "org", "a", Append("s", 3), ASK, 5.0)), 5) == 2
            await again.close()
        GATES["never"].set()
