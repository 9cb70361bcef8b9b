"""Sending mail: SMTP submission over aiosmtplib, with a connection pool.

The caller composes the message; its bytes go to DATA as given (lone CR or
LF become CRLF and leading dots are doubled, as the protocol requires: the
server's copy is the same bytes). Addresses are ASCII (no SMTPUTF8).

Errors, mapped from aiosmtplib's at one place (`_mapped`)::

    SmtpError           the server's reply as text ("550 5.1.1 no such user"),
    |                   `code` when a reply came; on its own: the server cannot
    |                   do what the settings ask (no STARTTLS, no AUTH)
    +-- SmtpTemporary   4xx, or network / TLS / timeout / dropped: try again later
    +-- SmtpRejected    5xx to MAIL, RCPT or DATA: final, the reply kept
    +-- SmtpAuthError   AUTH refused (535 ...): the credentials are wrong

`SmtpPool` keeps connections to each server (keyed by host, port, user and
a hash of the password) open after a send and reuses them, so a login costs
once per connection, not per message; at most `size` connections to one
server are in use at once and a send waits (up to the server's timeout)
for one. An idle connection is closed after `idle_timeout`. A reused
connection may have been dropped by the server meanwhile (restart, its own
idle cut-off): when MAIL FROM finds it gone, nothing of the message was
sent yet, so the send moves to a fresh connection, once. A failure later
in the transaction is never retried here: the server may have queued the
message, and only the caller knows whether a duplicate is worse than a
loss. Every network wait is bounded by the server's `timeout` (per
command). One pool belongs to one asyncio loop."""
from __future__ import annotations

import asyncio
import hashlib
import re
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

import aiosmtplib

from channels.mail_server import MailServer

__all__ = ("SmtpAuthError", "SmtpError", "SmtpPool", "SmtpRejected", "SmtpServer",
           "SmtpTemporary", "check_login")

# Anything but spaces, angle brackets and control characters around one "@":
# what can go on a MAIL FROM / RCPT TO line without quoting or SMTPUTF8.
_ADDRESS = re.compile(r"[!-~]+@[!-~]+")
_UNSAFE = re.compile(r"[<>\s]")
QUIT_TIMEOUT = 5.0  # a polite QUIT at close is not worth waiting the full timeout for


SmtpServer = MailServer  # an SMTP submission server and the login to it


class SmtpError(Exception):
    """`message`: the server's reply as text (or what went wrong when none
    came); `code`: the reply's code, None without one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class SmtpTemporary(SmtpError):
    """Try again later: a 4xx reply, or no reply at all."""


class SmtpRejected(SmtpError):
    """Final: the server refused the message (or its sender or recipients)."""


class SmtpAuthError(SmtpError):
    """The server refused the credentials."""


def _text(code: int, message: str) -> str:
    return f"{code} {' '.join(message.split())}"  # a multi-line reply on one line


def _by_code(code: int, text: str) -> SmtpError:
    if 400 <= code < 500 or code < 0:  # aiosmtplib's -1: a reply it could not parse
        return SmtpTemporary(text, code if code > 0 else None)
    return SmtpRejected(text, code)


def _mapped(exc: Exception) -> SmtpError:
    """aiosmtplib's (and the socket's) errors as ours."""
    if isinstance(exc, SmtpError):
        return exc
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        text = _text(exc.code, exc.message)
        if 400 <= exc.code < 500:  # 454: a temporary authentication failure
            return SmtpTemporary(text, exc.code)
        return SmtpAuthError(text, exc.code)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _by_code(exc.code, _text(exc.code, exc.message))
    if isinstance(exc, OSError):  # aiosmtplib's disconnects and timeouts are OSErrors too
        return SmtpTemporary(str(exc) or type(exc).__name__)
    if isinstance(exc, aiosmtplib.SMTPException):
        return SmtpError(exc.message)  # e.g. no STARTTLS or AUTH offered
    return SmtpTemporary(f"{type(exc).__name__}: {exc}")


def _refused(refused: dict[str, tuple[int, str]]) -> SmtpError:
    """Every recipient refused: temporary when any refusal was."""
    replies = [(code, _text(code, message)) for code, message in refused.values()]
    if len(replies) == 1:
        code, text = replies[0]
    else:
        code = next((c for c, _ in replies if 400 <= c < 500), replies[0][0])
        text = "; ".join(f"{reply} ({address})"
                         for address, (_, reply) in zip(refused, replies, strict=True))
    return _by_code(code, text)


def _check_address(address: str, *, empty_ok: bool = False) -> None:
    if empty_ok and address == "":
        return  # the null reverse-path of a bounce
    if not address.isascii() or _UNSAFE.search(address) or not _ADDRESS.fullmatch(address):
        raise SmtpRejected(f"not an address SMTP can carry without SMTPUTF8: {address!r}")


async def _open(server: SmtpServer, ssl_context: ssl.SSLContext | None) -> aiosmtplib.SMTP:
    """A connected, (TLS-wrapped,) logged-in client."""
    smtp = aiosmtplib.SMTP(
        hostname=server.host, port=server.port, username=server.username,
        password=server.password, local_hostname=await _local_hostname(),
        timeout=server.timeout, use_tls=server.tls == "ssl",
        start_tls=server.tls == "starttls", tls_context=ssl_context)
    try:
        await smtp.connect()
    except Exception as exc:  # connect() has closed it already
        raise _mapped(exc) from exc
    return smtp


_fqdn: str | None = None


async def _local_hostname() -> str:
    # Our EHLO name. getfqdn() may ask DNS: once per process, off the loop.
    global _fqdn
    if _fqdn is None:
        _fqdn = await asyncio.to_thread(socket.getfqdn)
    return _fqdn


async def _quit(smtp: aiosmtplib.SMTP, timeout: float) -> None:
    try:
        await smtp.quit(timeout=min(timeout, QUIT_TIMEOUT))
    except (aiosmtplib.SMTPException, OSError):
        pass  # we were leaving anyway
    finally:
        smtp.close()


async def check_login(server: SmtpServer, *, ssl_context: ssl.SSLContext | None = None) -> None:
    """Connect, (STARTTLS,) log in and QUIT; the errors above."""
    smtp = await _open(server, ssl_context)
    await _quit(smtp, server.timeout)


class _Stale(Exception):
    """A reused connection turned out dropped before anything was sent."""


@dataclass
class _Connection:
    smtp: aiosmtplib.SMTP
    reused: bool = False
    expiry: asyncio.TimerHandle | None = None


@dataclass
class _Group:
    """The connections to one server (one key)."""

    slots: asyncio.Semaphore
    idle: list[_Connection] = field(default_factory=list)


async def _transaction(conn: _Connection, raw: bytes, mail_from: str,
                       rcpt_to: Sequence[str]) -> str:
    smtp = conn.smtp
    options = []
    if smtp.supports_extension("size"):
        options.append(f"SIZE={len(raw)}")
    if smtp.supports_extension("8bitmime") and not raw.isascii():
        options.append("BODY=8BITMIME")
    try:
        await smtp.mail(mail_from, options=options)
    except aiosmtplib.SMTPServerDisconnected as exc:
        if conn.reused:
            raise _Stale from exc
        raise
    except aiosmtplib.SMTPResponseException as exc:
        if conn.reused and exc.code == 421:  # the server closing an old session
            raise _Stale from exc
        raise
    refused: dict[str, tuple[int, str]] = {}
    for rcpt in rcpt_to:
        try:
            await smtp.rcpt(rcpt)
        except aiosmtplib.SMTPRecipientRefused as exc:
            refused[rcpt] = (exc.code, exc.message)
    if len(refused) == len(rcpt_to):
        raise _refused(refused)
    response = await smtp.data(raw)
    reply = _text(response.code, response.message)
    if refused:
        reply += "; refused: " + "; ".join(
            f"{address} ({_text(code, message)})" for address, (code, message) in refused.items())
    return reply


class SmtpPool:
    """Connections per server kept open and reused (login once), at most
    `size` to one server at once; a connection the server dropped (or idle
    too long) is replaced transparently once. One asyncio loop."""

    def __init__(self, size: int = 4, idle_timeout: float = 60.0, *,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self.idle_timeout = idle_timeout
        self._ssl_context = ssl_context  # None: the system's CAs, hostname checked
        self._groups: dict[tuple[str, int, str, str], _Group] = {}
        self._closed = False

    async def __aenter__(self) -> SmtpPool:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def send(self, server: SmtpServer, raw: bytes, mail_from: str,
                   rcpt_to: Sequence[str]) -> str:
        """Submit `raw` from `mail_from` to `rcpt_to`; the server's reply to
        DATA ("250 2.0.0 OK queued as ..."), naming any refused recipients
        after "; refused: ". Raises `SmtpRejected` only when every recipient
        was refused (`SmtpTemporary` if any of those refusals was 4xx)."""
        if self._closed:
            raise RuntimeError("the SMTP pool is closed")
        _check_address(mail_from, empty_ok=True)
        if not rcpt_to:
            raise SmtpRejected("no recipients")
        for rcpt in rcpt_to:
            _check_address(rcpt)
        group = self._group(server)
        try:
            async with asyncio.timeout(server.timeout):
                await group.slots.acquire()
        except TimeoutError:
            raise SmtpTemporary(f"no connection to {server.host}:{server.port} came free"
                                f" within {server.timeout:g} s") from None
        try:
            return await self._send(group, server, raw, mail_from, rcpt_to)
        finally:
            group.slots.release()

    async def _send(self, group: _Group, server: SmtpServer, raw: bytes, mail_from: str,
                    rcpt_to: Sequence[str]) -> str:
        while True:
            conn = await self._take(group, server)
            try:
                reply = await _transaction(conn, raw, mail_from, rcpt_to)
            except _Stale:
                # Nothing was sent on it. The next may be stale too (the
                # server dropped them all); a fresh one is never retried.
                conn.smtp.close()
                continue
            except aiosmtplib.SMTPResponseException as exc:
                await self._reset(group, conn)
                raise _mapped(exc) from exc
            except SmtpError:
                await self._reset(group, conn)
                raise
            except Exception as exc:
                conn.smtp.close()  # a timeout or a drop leaves the session unknown
                raise _mapped(exc) from exc
            except BaseException:
                conn.smtp.close()
                raise
            self._release(group, conn)
            return reply

    async def _take(self, group: _Group, server: SmtpServer) -> _Connection:
        loop = asyncio.get_running_loop()
        while group.idle:
            conn = group.idle.pop()  # the most recently used: the likeliest alive
            if conn.expiry is not None:
                conn.expiry.cancel()
            if conn.smtp.is_connected and conn.expiry is not None \
                    and conn.expiry.when() > loop.time():
                conn.reused = True
                return conn
            conn.smtp.close()
        return _Connection(await _open(server, self._ssl_context))

    async def _reset(self, group: _Group, conn: _Connection) -> None:
        # A refused message leaves the session usable once RSET clears it.
        usable = False
        try:
            if conn.smtp.is_connected:
                await conn.smtp.rset()
                usable = True
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            if usable:
                self._release(group, conn)
            else:
                conn.smtp.close()

    def _release(self, group: _Group, conn: _Connection) -> None:
        if self._closed or not conn.smtp.is_connected:
            conn.smtp.close()
            return
        loop = asyncio.get_running_loop()
        conn.expiry = loop.call_later(self.idle_timeout, self._expire, group, conn)
        group.idle.append(conn)

    @staticmethod
    def _expire(group: _Group, conn: _Connection) -> None:
        if conn in group.idle:
            group.idle.remove(conn)
        conn.smtp.close()

    def _group(self, server: SmtpServer) -> _Group:
        secret = hashlib.sha256(server.password.encode()).hexdigest()
        key = (server.host.lower(), server.port, server.username, secret)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(asyncio.Semaphore(self.size))
        return group

    async def close(self) -> None:
        """QUIT the idle connections; those in use close when their send ends."""
        self._closed = True
        idle = [conn for group in self._groups.values() for conn in group.idle]
        for group in self._groups.values():
            group.idle.clear()
        for conn in idle:
            if conn.expiry is not None:
                conn.expiry.cancel()
        await asyncio.gather(*(_quit(conn.smtp, QUIT_TIMEOUT) for conn in idle))
