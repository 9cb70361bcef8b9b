"""The email channel's IMAP client: one authenticated connection to a
mailbox, over aioimaplib (with the wire fixes of channels.imap_wire).

It offers what reading a mailbox needs and no more: select a folder
(EXAMINE unless told otherwise, so reading never changes the mailbox),
list UIDs and sizes after the last one seen, fetch messages whole or
their first bytes with BODY.PEEK (never setting \\Seen), read Message-IDs,
IDLE until new mail, find the Sent folder and APPEND a copy there.

Errors (one choke point, `_until` and `_check`):

    ImapError               a refusal that trying again will not fix
    ├── ImapAuthError       the server refused the login
    └── ImapUnavailable     connect, TLS, timeout, a dropped connection, BYE,
                            a response we cannot follow: try again later

Every wait on the network has the server's timeout; after ImapUnavailable
the connection is gone and a new `Mailbox` must be opened. Folder names
are quoted and travel in modified UTF-7; UID sets are sent compact
(`1:5,9`), in batches, so a backfill's command lines stay short."""
from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import date
from types import TracebackType
from typing import Any, Literal, TypeVar

import aioimaplib

from channels.imap_wire import (
    Protocol,
    encode_folder,
    fetch_records,
    header_value,
    imap_date,
    list_entries,
    quote,
    status_code,
    uid_set,
)
from channels.mail_server import MailServer

__all__ = ("Fetched", "ImapAuthError", "ImapError", "ImapServer", "ImapUnavailable", "Mailbox",
           "Selected", "check_login")

T = TypeVar("T")

BODY_BATCH = 200  # messages per FETCH of bodies: bounded responses, few round trips
SIZE_BATCH = 2000
UPLOAD_RATE = 64 * 1024  # bytes/s an APPEND may be as slow as before it times out
TEMPORARY = {"UNAVAILABLE", "INUSE", "LIMIT", "SERVERBUG", "EXPUNGEISSUED"}  # RFC 5530
FALLBACK_NAMES = {"\\SENT": ("Sent", "Sent Items", "Sent Messages")}


ImapServer = MailServer  # an IMAP server and the login to it


class ImapError(Exception):
    """An IMAP operation that failed; the tree is in the module docstring."""


class ImapAuthError(ImapError):
    """The server refused the login (LOGIN answered NO)."""


class ImapUnavailable(ImapError):
    """The server could not be reached or stopped making sense: try again later."""


@dataclass(frozen=True)
class Selected:
    uidvalidity: int
    uidnext: int | None
    exists: int


@dataclass(frozen=True)
class Fetched:
    uid: int
    raw: bytes
    size: int  # RFC822.SIZE: the whole message's, even when `raw` is a prefix
    truncated: bool


class Mailbox:
    """One authenticated IMAP connection."""

    def __init__(self, server: ImapServer, protocol: Protocol) -> None:
        self.server = server
        self._protocol = protocol
        self.capabilities: frozenset[str] = frozenset()

    @property
    def has_idle(self) -> bool:
        return "IDLE" in self.capabilities

    @classmethod
    async def open(cls, server: ImapServer, *,
                   ssl_context: ssl.SSLContext | None = None) -> Mailbox:
        loop = asyncio.get_running_loop()
        box = cls(server, Protocol(loop))
        context = None
        if server.tls != "none":
            context = ssl_context or ssl.create_default_context()
        try:
            await box._until(loop.create_connection(
                lambda: box._protocol, server.host, server.port,
                ssl=context if server.tls == "ssl" else None), "connect")
            await box._until(box._protocol.wait("AUTH|NONAUTH"), "the server's greeting")
            if server.tls == "starttls" and context is not None:
                await box._starttls(context)
            await box._login()
        except BaseException:
            box._abort()
            raise
        return box

    async def _starttls(self, context: ssl.SSLContext) -> None:
        if "STARTTLS" not in {c.upper() for c in self._protocol.capabilities}:
            raise ImapError("the server does not offer STARTTLS")
        await self._run(self._new("STARTTLS"), "STARTTLS")
        loop = asyncio.get_running_loop()
        self._protocol.transport = await self._until(loop.start_tls(
            self._protocol.transport, self._protocol, context,
            server_hostname=self.server.host), "TLS handshake")
        await self._capability()  # what was said before TLS no longer counts

    async def _login(self) -> None:
        server = self.server
        try:
            command = self._new("LOGIN", quote(server.username), quote(server.password))
        except ValueError:
            raise ImapAuthError("the username or password holds a line break") from None
        response = await self._until(
            self._protocol.execute(command, scrub=server.password), "LOGIN")
        if response.result != "OK":
            text = _text(response)
            if status_code(text.encode()) in TEMPORARY:
                raise ImapUnavailable(f"LOGIN: {response.result} {text}")
            raise ImapAuthError(f"the server refused the login: {text}")
        self._protocol.state = aioimaplib.AUTH
        found = re.search(r"\[CAPABILITY ([^\]]*)\]", _text(response))
        if found:
            self._set_capabilities(found.group(1).split())
        else:
            await self._capability()

    async def _capability(self) -> None:
        response = await self._run(self._new("CAPABILITY"), "CAPABILITY")
        words = b" ".join(line for line in response.lines[:-1] if isinstance(line, bytes))
        self._set_capabilities(words.decode(errors="replace").split())

    def _set_capabilities(self, words: Sequence[str]) -> None:
        self.capabilities = frozenset(word.upper() for word in words)
        self._protocol.capabilities = set(self.capabilities)

    # reading

    async def select(self, folder: str = "INBOX", *, readonly: bool = True) -> Selected:
        """EXAMINE (or SELECT) `folder`: its UIDVALIDITY, UIDNEXT and message count."""
        name = "EXAMINE" if readonly else "SELECT"
        try:
            response = await self._run(self._new(name, self._folder(folder)), f"{name} {folder}")
        except ImapError:
            self._protocol.state = aioimaplib.AUTH  # a failed SELECT leaves none selected
            raise
        self._protocol.state = aioimaplib.SELECTED
        self._protocol.new_mail.clear()  # the EXISTS of the answer is not news
        text = b"\n".join(line for line in response.lines if isinstance(line, bytes))
        validity = re.search(rb"\[UIDVALIDITY (\d+)\]", text)
        uidnext = re.search(rb"\[UIDNEXT (\d+)\]", text)
        exists = re.search(rb"^(\d+) EXISTS", text, re.MULTILINE)
        if validity is None or exists is None:
            self._abort()
            raise ImapUnavailable(f"{name} {folder}: no UIDVALIDITY or EXISTS in the answer")
        return Selected(int(validity.group(1)), int(uidnext.group(1)) if uidnext else None,
                        int(exists.group(1)))

    async def search_since(self, day: date) -> list[int]:
        """UIDs of the messages received on or after `day`, ascending."""
        response = await self._run(self._new("SEARCH", "SINCE", imap_date(day), prefix="UID"),
                                   "UID SEARCH")
        return sorted({int(word) for line in response.lines[:-1] if isinstance(line, bytes)
                       for word in line.split() if word.isdigit()})

    async def sizes_after(self, uid: int) -> list[tuple[int, int]]:
        """(uid, size) of every message with a UID above `uid`, ascending."""
        # `n:*` means "n to the highest", and when n is above it the server
        # answers with the highest message: drop what is not above `uid`.
        found = await self._sizes(f"{uid + 1}:*")
        return [pair for pair in found if pair[0] > uid]

    async def sizes(self, uids: Sequence[int]) -> list[tuple[int, int]]:
        """(uid, size) of those of `uids` that still exist, ascending."""
        found: list[tuple[int, int]] = []
        for chunk in _chunks(uids, SIZE_BATCH):
            found += await self._sizes(uid_set(chunk))
        return sorted(found)

    async def _sizes(self, uids: str) -> list[tuple[int, int]]:
        records = await self._fetch(uids, "(UID RFC822.SIZE)")
        return sorted((r.numbers["UID"], r.numbers["RFC822.SIZE"])
                      for r in records if "RFC822.SIZE" in r.numbers)

    async def fetch(self, uids: Sequence[int], *,
                    max_bytes: int | None = None) -> list[Fetched]:
        """The messages, without setting \\Seen; one larger than `max_bytes`
        comes as its first `max_bytes` (truncated). Messages expunged
        meanwhile are absent; ascending by UID."""
        part = "BODY.PEEK[]" if max_bytes is None else f"BODY.PEEK[]<0.{max_bytes}>"
        found: list[Fetched] = []
        for chunk in _chunks(uids, BODY_BATCH):
            for record in await self._fetch(uid_set(chunk), f"(UID RFC822.SIZE {part})"):
                raw = record.sections.get("BODY[]")
                if raw is None:
                    continue
                size = record.numbers.get("RFC822.SIZE", len(raw))
                found.append(Fetched(record.numbers["UID"], raw, size,
                                     max_bytes is not None and size > len(raw)))
        return sorted(found, key=lambda message: message.uid)

    async def message_ids(self, uids: Sequence[int]) -> dict[int, str | None]:
        """The Message-ID header of each message as written (None when it has none)."""
        found: dict[int, str | None] = {}
        for chunk in _chunks(uids, SIZE_BATCH):
            records = await self._fetch(uid_set(chunk),
                                        "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            for record in records:
                header = next((data for key, data in record.sections.items()
                               if key.startswith("BODY[HEADER.FIELDS")), None)
                found[record.numbers["UID"]] = header_value(header or b"")
        return dict(sorted(found.items()))

    async def _fetch(self, uids: str, parts: str) -> list[Any]:
        # the command's own timer runs from its last line, so a 30 MB answer
        # may take longer than the timeout as long as it keeps coming
        response = await self._until(
            self._protocol.fetch(uids, parts, by_uid=True, timeout=self.server.timeout),
            "UID FETCH", timeout=None)
        self._check(response, "UID FETCH")
        return fetch_records(response.lines)

    # waiting

    async def idle(self, timeout: float) -> bool:
        """IDLE until the server reports new mail (True) or `timeout` s pass
        (False). New mail reported during an earlier command counts too."""
        protocol = self._protocol
        if not self.has_idle:
            raise ImapUnavailable("the server does not support IDLE")
        if protocol.new_mail.is_set():
            protocol.new_mail.clear()
            return True
        idling = asyncio.ensure_future(protocol.idle())
        try:
            started = asyncio.ensure_future(protocol.wait_for_idle_response())
            await self._until(_first(started, idling), "IDLE")
            started.cancel()
            if idling.done():  # refused, or the connection went
                self._check(await self._until(idling, "IDLE"), "IDLE")
                raise ImapUnavailable("IDLE ended before it started")
            news = asyncio.ensure_future(protocol.new_mail.wait())
            try:
                await self._until(_first(news, idling), "IDLE", timeout=timeout, expire=True)
            finally:
                news.cancel()
            if protocol.lost.done():
                raise ImapUnavailable(f"IDLE: {protocol.lost.result()}")
            if not idling.done():  # a server may end IDLE by itself
                protocol.idle_done()
            self._check(await self._until(idling, "IDLE"), "IDLE")
        except BaseException:
            idling.cancel()
            self._abort()
            raise
        while not protocol.idle_queue.empty():  # aioimaplib's copy of the lines we have seen
            protocol.idle_queue.get_nowait()
        new = protocol.new_mail.is_set()
        protocol.new_mail.clear()
        return new

    # folders

    async def special_folder(self, use: str = "\\Sent") -> str | None:
        """The folder flagged `use` (RFC 6154), else one of the usual names, else None."""
        response = await self._run(self._new("LIST", '""', '"*"'), "LIST")
        folders = list_entries(response.lines[:-1])
        for flags, name in folders:
            if use.upper() in flags:
                return name
        for wanted in FALLBACK_NAMES.get(use.upper(), ()):
            for _, name in folders:
                if name.lower() == wanted.lower():
                    return name
        return None

    async def append(self, folder: str, raw: bytes, *, flags: str = "\\Seen") -> None:
        timeout = self.server.timeout + len(raw) / UPLOAD_RATE
        response = await self._until(self._protocol.append(
            raw, self._folder(folder), flags or None, None, timeout=timeout),
            f"APPEND {folder}", timeout=None)
        self._check(response, f"APPEND {folder}")

    # the connection

    async def close(self) -> None:
        """LOGOUT and close; never raises."""
        if not self._protocol.lost.done():
            try:
                async with asyncio.timeout(self.server.timeout):
                    await self._protocol.execute(self._new("LOGOUT"))
            except Exception:  # the connection goes either way
                pass
        self._abort()

    async def __aenter__(self) -> Mailbox:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    def _abort(self) -> None:
        transport = self._protocol.transport
        if transport is not None:
            transport.abort()
        self._protocol.fail("the connection was closed")

    # the choke point of aioimaplib's errors

    def _new(self, name: str, *args: str, prefix: str | None = None) -> Any:
        return aioimaplib.Command(name, self._protocol.new_tag(), *args, prefix=prefix,
                                  loop=self._protocol.loop)

    def _folder(self, folder: str) -> str:
        if re.search(r"[\x00\r\n]", folder):
            raise ImapError(f"the folder name {folder!r} holds a control character")
        return quote(encode_folder(folder))

    async def _run(self, command: Any, what: str) -> Any:
        return self._check(await self._until(self._protocol.execute(command), what), what)

    def _check(self, response: Any, what: str) -> Any:
        if response.result == "OK":
            return response
        text = _text(response)
        message = f"{what}: {response.result} {text}"
        if response.result == "NO" and status_code(text.encode()) not in TEMPORARY:
            raise ImapError(message)
        raise ImapUnavailable(message)

    async def _until(self, work: Awaitable[T], what: str, *,
                     timeout: float | None | Literal["server"] = "server",
                     expire: bool = False) -> T:
        """`work`'s result within `timeout` (None: `work` has its own timer);
        ImapUnavailable when the connection fails first. `expire`: running
        out of time is no error (IDLE), and the result is then None."""
        protocol = self._protocol
        if protocol.lost.done() and not isinstance(work, asyncio.Future):
            _close(work)
            raise ImapUnavailable(f"{what}: {protocol.lost.result()}")
        limit = self.server.timeout if timeout == "server" else timeout
        task: asyncio.Future[T] = asyncio.ensure_future(work)
        both: list[asyncio.Future[Any]] = [task, protocol.lost]
        try:
            done, _ = await asyncio.wait(both, timeout=limit,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                if expire:
                    return None  # type: ignore[return-value]
                self._abort()
                raise ImapUnavailable(f"{what}: no answer within {limit:.0f} s")
            if task not in done:
                raise ImapUnavailable(f"{what}: {protocol.lost.result()}")
            return task.result()
        except (aioimaplib.AioImapException, OSError, EOFError) as exc:
            self._abort()
            raise ImapUnavailable(f"{what}: {_describe(exc)}") from exc
        finally:
            if not task.done():
                task.cancel()


async def check_login(server: ImapServer, folder: str = "INBOX") -> Selected:
    """Logs in and selects `folder` (read-only): settings that work say so."""
    async with await Mailbox.open(server) as box:
        return await box.select(folder)


def _chunks(uids: Sequence[int], size: int) -> list[list[int]]:
    ordered = sorted(set(uids))
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


async def _first(*futures: asyncio.Future[Any]) -> None:
    pending: list[asyncio.Future[Any]] = list(futures)
    await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)


def _close(work: Awaitable[Any]) -> None:
    close = getattr(work, "close", None)
    if close is not None:
        close()  # a coroutine never started: no "never awaited" warning


def _text(response: Any) -> str:
    last = response.lines[-1] if response.lines else b""
    return bytes(last).decode(errors="replace")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aioimaplib.CommandTimeout):
        return "no answer in time"
    return str(exc) or type(exc).__name__
