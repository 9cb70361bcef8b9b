"""The SMTP client against a real server (aiosmtpd on loopback): logins,
the bytes that arrive, the server's refusals mapped, the pool's reuse and
its recovery from dropped connections, timeouts, concurrency."""
from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from channels.smtp import (
    SmtpAuthError,
    SmtpError,
    SmtpPool,
    SmtpRejected,
    SmtpServer,
    SmtpTemporary,
    check_login,
)
from tests.waiting import eventually

if TYPE_CHECKING:  # imported by pytest as the plugin below, before anyone else does
    from tests.peers.smtp import SmtpPeer

SENDER = "sales@bidi.example"


def server_of(peer: SmtpPeer, user: tuple[str, str], timeout: float = 10.0) -> SmtpServer:
    username, password = user
    return SmtpServer(host=peer.host, port=peer.port, tls="none", username=username,
                      password=password, timeout=timeout)


def address() -> str:
    return f"rcpt-{secrets.token_hex(6)}@customer.example"


def mail(to: str, subject: str = "Your quote", body: bytes = b"Hello,\r\n") -> bytes:
    mid = f"<{secrets.token_hex(8)}@bidi.example>"
    return (f"From: Sales <{SENDER}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: {mid}\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n").encode() + body


@pytest.fixture
def user(smtp_peer: SmtpPeer) -> tuple[str, str]:
    return smtp_peer.add_user()


@pytest.fixture
def server(smtp_peer: SmtpPeer, user: tuple[str, str]) -> SmtpServer:
    return server_of(smtp_peer, user)


@pytest.fixture
async def pool() -> AsyncIterator[SmtpPool]:
    async with SmtpPool(size=4) as made:
        yield made


@pytest.fixture(scope="module")
def tls_peers() -> Iterator[dict[str, SmtpPeer]]:
    from tests.peers.smtp import SmtpPeer  # loaded as the plugin by now

    peers = {"starttls": SmtpPeer.start("starttls"), "ssl": SmtpPeer.start("ssl")}
    yield peers
    for peer in peers.values():
        peer.stop()


@pytest.fixture
def closed_port() -> Iterator[int]:
    # Bound but not listening: connecting is refused, and no one else gets the port.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


async def test_check_login(smtp_peer: SmtpPeer, user: tuple[str, str],
                           closed_port: int) -> None:
    await check_login(server_of(smtp_peer, user))
    with pytest.raises(SmtpAuthError) as refused:
        await check_login(server_of(smtp_peer, (user[0], "wrong")))
    assert refused.value.code == 535 and refused.value.message.startswith("535 ")
    smtp_peer.set_password(user[0], "changed")
    with pytest.raises(SmtpAuthError):
        await check_login(server_of(smtp_peer, user))
    await check_login(server_of(smtp_peer, (user[0], "changed")))
    nobody = SmtpServer(host="127.0.0.1", port=closed_port, tls="none", username="u",
                        password="p", timeout=5.0)
    with pytest.raises(SmtpTemporary) as down:
        await check_login(nobody)
    assert down.value.code is None


async def test_tls(tls_peers: dict[str, SmtpPeer]) -> None:
    for tls, peer in tls_peers.items():
        server = replace(server_of(peer, peer.add_user()), tls=tls)  # type: ignore[arg-type]
        trusted = peer.client_context()
        await check_login(server, ssl_context=trusted)
        to, raw = address(), mail(address())
        before = peer.connections
        async with SmtpPool(ssl_context=trusted) as pool:
            for _ in range(3):
                await pool.send(server, raw, SENDER, [to])
        assert [r.raw for r in peer.for_rcpt(to)] == [raw] * 3
        assert peer.connections == before + 1
        with pytest.raises(SmtpTemporary) as unknown:  # the system's CAs do not know it
            await check_login(server)
        assert "certificate verify failed" in unknown.value.message
    starttls = tls_peers["starttls"]
    plain = replace(server_of(starttls, starttls.add_user()), tls="none")
    with pytest.raises(SmtpError) as no_auth:  # AUTH is offered only after STARTTLS
        await check_login(plain)
    assert type(no_auth.value) is SmtpError and "AUTH" in no_auth.value.message


async def test_starttls_the_server_lacks(smtp_peer: SmtpPeer, server: SmtpServer) -> None:
    with pytest.raises(SmtpError) as lacking:
        await check_login(replace(server, tls="starttls"))
    assert type(lacking.value) is SmtpError and "STARTTLS" in lacking.value.message


async def test_send_delivers_the_bytes_as_given(smtp_peer: SmtpPeer, pool: SmtpPool,
                                                server: SmtpServer,
                                                user: tuple[str, str]) -> None:
    to = address()
    body = ("Hello Ada,\r\n.a line that starts with a dot\r\n..two of them\r\n"
            "Grüße, naïve café\r\n\r\n-- \r\nSales\r\n").encode()
    raw = mail(to, body=body).replace(
        b"Subject: Your quote\r\n",
        b"Subject: =?utf-8?q?Ang=C3=A9bot?= a long subject\r\n folded onto a second line\r\n"
        b"References: <a@x.example>\r\n\t<b@x.example>\r\n")
    reply = await pool.send(server, raw, SENDER, [to])
    assert reply.startswith("250 ") and "queued as" in reply
    (got,) = smtp_peer.for_rcpt(to)
    assert got.raw == raw
    assert got.mail_from == SENDER and got.rcpt_tos == [to] and got.login == user[0]
    assert got.message["Subject"] == "Angébot a long subject folded onto a second line"
    assert got.message["References"].split() == ["<a@x.example>", "<b@x.example>"]
    assert got.message.get_content() == body.decode()


async def test_a_temporary_refusal(smtp_peer: SmtpPeer, pool: SmtpPool,
                                   server: SmtpServer) -> None:
    to = address()
    smtp_peer.fail(to, 451, "4.3.0 try again later", times=1)
    with pytest.raises(SmtpTemporary) as later:
        await pool.send(server, mail(to), SENDER, [to])
    assert later.value.code == 451 and later.value.message == "451 4.3.0 try again later"
    assert smtp_peer.for_rcpt(to) == []
    await pool.send(server, mail(to), SENDER, [to])  # the fault was for once
    assert len(smtp_peer.for_rcpt(to)) == 1
    smtp_peer.fail(to, 452, "4.2.2 mailbox full", times=1, at="DATA")
    with pytest.raises(SmtpTemporary) as full:
        await pool.send(server, mail(to), SENDER, [to])
    assert full.value.code == 452 and full.value.message == "452 4.2.2 mailbox full"


async def test_a_final_refusal(smtp_peer: SmtpPeer, pool: SmtpPool,
                               server: SmtpServer) -> None:
    to, spam = address(), address()
    smtp_peer.fail(to, 550, "5.1.1 no such user")
    smtp_peer.fail(spam, 554, "5.7.1 message refused as spam", at="DATA")
    for rcpt, text in ((to, "550 5.1.1 no such user"),
                       (spam, "554 5.7.1 message refused as spam")):
        for _ in range(2):  # every time, and the connection stays usable
            with pytest.raises(SmtpRejected) as refused:
                await pool.send(server, mail(rcpt), SENDER, [rcpt])
            assert refused.value.message == text and refused.value.code == int(text[:3])
        assert smtp_peer.for_rcpt(rcpt) == []
    fine = address()
    before = smtp_peer.connections
    await pool.send(server, mail(fine), SENDER, [fine])
    assert len(smtp_peer.for_rcpt(fine)) == 1 and smtp_peer.connections == before


async def test_some_recipients_refused(smtp_peer: SmtpPeer, pool: SmtpPool,
                                       server: SmtpServer) -> None:
    good, bad, busy = address(), address(), address()
    smtp_peer.fail(bad, 550, "5.1.1 no such user")
    smtp_peer.fail(busy, 450, "4.2.1 mailbox busy")
    reply = await pool.send(server, mail(good), SENDER, [good, bad])
    assert reply.startswith("250 ")
    assert reply.endswith(f"; refused: {bad} (550 5.1.1 no such user)")
    (got,) = smtp_peer.for_rcpt(good)
    assert got.rcpt_tos == [good]
    with pytest.raises(SmtpTemporary) as mixed:  # one might take it later
        await pool.send(server, mail(bad), SENDER, [bad, busy])
    assert mixed.value.code == 450
    assert mixed.value.message == (f"550 5.1.1 no such user ({bad}); "
                                   f"450 4.2.1 mailbox busy ({busy})")


async def test_addresses_smtp_cannot_carry(pool: SmtpPool, server: SmtpServer) -> None:
    for sender, rcpts in ((SENDER, ["a@b.example\r\nRCPT TO:<x@y.example>"]),
                          (SENDER, ["José@example.com"]), (SENDER, []),
                          ("no-at-sign", ["a@b.example"]), (SENDER, ["<a@b.example>"])):
        with pytest.raises(SmtpRejected):
            await pool.send(server, mail("a@b.example"), sender, rcpts)


async def test_connections_are_reused(smtp_peer: SmtpPeer, pool: SmtpPool,
                                      server: SmtpServer) -> None:
    to = address()
    before = smtp_peer.connections
    for _ in range(50):
        await pool.send(server, mail(to), SENDER, [to])
    assert smtp_peer.connections - before == 1
    await asyncio.gather(*(pool.send(server, mail(to), SENDER, [to]) for _ in range(100)))
    assert smtp_peer.connections - before <= pool.size
    assert len(smtp_peer.for_rcpt(to)) == 150


async def test_each_login_has_its_own_connections(smtp_peer: SmtpPeer, pool: SmtpPool,
                                                  server: SmtpServer) -> None:
    other = smtp_peer.add_user()
    to = address()
    await pool.send(server, mail(to), SENDER, [to])
    await pool.send(server_of(smtp_peer, other), mail(to), SENDER, [to])
    await pool.send(server, mail(to), SENDER, [to])
    assert [r.login for r in smtp_peer.for_rcpt(to)] == [server.username, other[0],
                                                         server.username]


async def test_a_dropped_connection_is_replaced(smtp_peer: SmtpPeer, pool: SmtpPool,
                                                server: SmtpServer) -> None:
    to = address()
    await pool.send(server, mail(to), SENDER, [to])
    before = smtp_peer.connections
    smtp_peer.drop()  # our idle connection is gone before this loop even notices
    reply = await pool.send(server, mail(to), SENDER, [to])
    assert reply.startswith("250 ") and len(smtp_peer.for_rcpt(to)) == 2
    assert smtp_peer.connections == before + 1
    await eventually(lambda: smtp_peer.open_connections == 1, what="the old one gone")
    smtp_peer.drop()
    await eventually(lambda: smtp_peer.open_connections == 0, what="the drop")
    await pool.send(server, mail(to), SENDER, [to])  # noticed this time: not even tried
    assert smtp_peer.connections == before + 2 and len(smtp_peer.for_rcpt(to)) == 3


async def test_an_idle_connection_is_closed(smtp_peer: SmtpPeer, server: SmtpServer) -> None:
    to = address()
    async with SmtpPool(idle_timeout=0.2) as pool:
        before = smtp_peer.connections
        await pool.send(server, mail(to), SENDER, [to])
        await eventually(lambda: smtp_peer.open_connections == 0, what="the idle close")
        await pool.send(server, mail(to), SENDER, [to])
        assert smtp_peer.connections == before + 2


async def test_a_stalled_data_times_out(smtp_peer: SmtpPeer, user: tuple[str, str]) -> None:
    to = address()
    smtp_peer.stall(30.0, to)
    try:
        async with SmtpPool() as pool:
            started = time.monotonic()
            with pytest.raises(SmtpTemporary) as late:
                await pool.send(server_of(smtp_peer, user, timeout=0.5), mail(to), SENDER, [to])
            assert time.monotonic() - started < 5.0
            assert late.value.code is None
            fine = address()  # the pool has no half-done session to hand out
            await pool.send(server_of(smtp_peer, user, timeout=0.5), mail(fine), SENDER, [fine])
            assert len(smtp_peer.for_rcpt(fine)) == 1
    finally:
        smtp_peer.stall(0.0, to)


async def test_many_concurrent_sends(smtp_peer: SmtpPeer, pool: SmtpPool,
                                     server: SmtpServer) -> None:
    to = address()
    raws = [mail(to, subject=f"quote {i}") for i in range(200)]
    replies = await asyncio.gather(*(pool.send(server, raw, SENDER, [to]) for raw in raws))
    assert all(reply.startswith("250 ") for reply in replies)
    assert sorted(r.raw for r in smtp_peer.for_rcpt(to)) == sorted(raws)
