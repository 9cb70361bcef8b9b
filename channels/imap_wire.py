"""The IMAP wire under channels.imap: aioimaplib's protocol, made to hold up
against a real mailbox, and the parsing of the responses we ask for.

aioimaplib reads responses recursively, one stack frame per line, and
copies the rest of the buffer at every line: a `UID FETCH 1:* (UID
RFC822.SIZE)` of a thousand messages ends in RecursionError, which kills
the connection silently. Its FETCH command also rescans every line
received so far after each new one (quadratic in the response). And a
dropped connection leaves pending commands waiting for their timeout.
`Protocol` replaces the reader with a loop over one buffer, counts a FETCH's
parentheses as lines arrive, fails every pending command the moment the
connection ends, and notes each untagged EXISTS/RECENT whichever command it
came with (aioimaplib drops those outside IDLE, and Dovecot reports new
mail only once).

Responses arrive as aioimaplib leaves them: a list of bytes lines (the
untagged ones without their `* `), each literal as a bytearray after the
line that announced it, and the tagged status text last."""
from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import aioimaplib

CRLF = b"\r\n"
LITERAL = re.compile(rb"\{(\d+)\}\Z")
NEW_MAIL = re.compile(rb"\* \d+ (?:EXISTS|RECENT)\b", re.IGNORECASE)
FETCH_START = re.compile(rb"\d+ FETCH \(", re.IGNORECASE)
NUMBER_ITEM = re.compile(rb"\b(UID|RFC822\.SIZE) (\d+)", re.IGNORECASE)
LIST_LINE = re.compile(rb'\(([^)]*)\) (?:NIL|"(?:[^"\\]|\\.)*") (.*)\Z')
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
SECTION = re.compile(rb'\b(BODY\[[^\]]*\](?:<\d+>)?) (?:\{(\d+)\}\Z|NIL|"((?:[^"\\]|\\.)*)")',
                     re.IGNORECASE)


class Protocol(aioimaplib.IMAP4ClientProtocol):  # type: ignore[misc]
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.lost: asyncio.Future[str] = loop.create_future()  # why the connection ended
        self.new_mail = asyncio.Event()
        self._partial = b""

    # reading

    def data_received(self, data: bytes) -> None:
        try:
            self._consume(self._partial + data if self._partial else data)
        except Exception as exc:  # a response aioimaplib cannot follow: the session is lost
            self.fail(f"unexpected response from the server: {exc}")
            if self.transport is not None:
                self.transport.abort()

    def _consume(self, buf: bytes) -> None:
        view = memoryview(buf)
        size, pos = len(buf), 0
        cmd: Any = getattr(self, "current_command", None)  # aioimaplib's, untyped
        while pos < size:
            if cmd is not None and cmd.wait_literal_data():
                rest = cmd.append_literal_data(view[pos:])  # takes what the literal lacks
                pos = size - len(rest)
                continue
            end = buf.find(CRLF, pos)
            if end < 0:
                break
            line = buf[pos:end]
            pos = end + 2
            handled = self._handle_line(line, cmd)
            literal = LITERAL.search(line) if line.endswith(b"}") else None
            if literal is not None:
                if handled is None:
                    handled = aioimaplib.Command("NIL", "unused", loop=self.loop)
                handled.begin_literal_data(int(literal.group(1)))
                cmd = handled
            elif handled is not None and handled.wait_data():
                cmd = handled
            else:
                cmd = None
        self._partial = buf[pos:]
        if cmd is not None and not cmd.wait_data() and not self._partial:
            cmd = None
        self.current_command = cmd
        if self.pending_sync_command is not None:
            self.pending_sync_command.flush()  # IDLE hands its lines over per chunk

    def _handle_line(self, line: bytes, current_cmd: Any) -> Any:
        if self.state == aioimaplib.CONNECTED and line:
            if line.startswith(b"* BYE"):
                self.fail(f"the server refused the connection: {line[6:].decode(errors='replace')}")
                return None
            super()._handle_line(line, current_cmd)  # starts the greeting's task
            for task in self.tasks:  # its failure is reported through `lost`
                task.add_done_callback(self._greeted)
            return None
        if current_cmd is None and NEW_MAIL.match(line):
            self.new_mail.set()
        return super()._handle_line(line, current_cmd)

    def _greeted(self, task: asyncio.Future[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.fail(f"the server's greeting failed: {task.exception()}")
            if self.transport is not None:
                self.transport.abort()

    # the end of the connection

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(f"the connection was lost ({exc})" if exc else "the server closed the connection")

    def fail(self, reason: str) -> None:
        """Ends every command still waiting for the server with `reason`."""
        if self.lost.done():
            return
        self.lost.set_result(reason)
        waiting = [self.pending_sync_command, *self.pending_async_commands.values()]
        for command in waiting:
            if command is not None:
                command._exception = aioimaplib.Abort(reason)  # what its wait() raises
                command.close(reason.encode(), "KO")

    # commands

    def fetch(self, message_set: str, message_parts: str, by_uid: bool = False,
              timeout: float | None = None) -> Any:
        return self.execute(Fetch(self.new_tag(), message_set, message_parts,
                                  prefix="UID" if by_uid else "", loop=self.loop, timeout=timeout))


class Fetch(aioimaplib.FetchCommand):  # type: ignore[misc]
    """A FETCH that knows whether its last message is complete without
    rescanning every line: a running count of open parentheses."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._depth = 0
        super().__init__(*args, **kwargs)

    def append_to_resp(self, line: bytes, result: str = "Pending") -> None:
        super().append_to_resp(line, result)
        # literals (bytearrays) are message data: their parentheses do not count
        if result == "Pending" and type(line) is bytes:
            if FETCH_START.match(line):
                self._depth = 0
            self._depth += line.count(b"(") - line.count(b")")

    def wait_data(self) -> bool:
        return self._depth != 0


# parsing

@dataclass
class Record:
    """One message's FETCH response: its numbers and its sections' data."""
    numbers: dict[str, int] = field(default_factory=dict)
    sections: dict[str, bytes | None] = field(default_factory=dict)


def fetch_records(lines: Sequence[Any]) -> list[Record]:
    """The messages of a FETCH response; a record without UID (an unsolicited
    flags update) is left out."""
    records: list[Record] = []
    current: Record | None = None
    awaiting: str | None = None  # the section whose literal comes next
    for item in lines[:-1]:  # the last one is the tagged status text
        if not isinstance(item, bytes):
            if current is not None and awaiting is not None:
                current.sections[awaiting] = bytes(item)
            awaiting = None
            continue
        start = FETCH_START.match(item)
        if start is not None:
            current = Record()
            records.append(current)
        if current is None:
            continue
        for name, value in NUMBER_ITEM.findall(item):
            current.numbers[name.decode().upper()] = int(value)
        awaiting = None
        for name, literal, quoted in SECTION.findall(item):
            key = name.decode().upper().split("<")[0].replace(".PEEK", "")
            if literal:
                awaiting = key
            else:
                current.sections[key] = unquote(quoted) if quoted else None
    return [record for record in records if "UID" in record.numbers]


def header_value(header: bytes) -> str | None:
    unfolded = re.sub(rb"\r?\n[ \t]", b" ", header)
    found = re.search(rb"^Message-ID:(.*)$", unfolded, re.IGNORECASE | re.MULTILINE)
    if found is None:
        return None
    return found.group(1).strip().decode("utf-8", errors="replace") or None


def list_entries(lines: Sequence[Any]) -> list[tuple[frozenset[str], str]]:
    """(flags, name) of each LIST answer; names come quoted, bare, or as literals."""
    entries: list[tuple[frozenset[str], str]] = []
    for index, line in enumerate(lines):
        if not isinstance(line, bytes):
            continue
        found = LIST_LINE.match(line)
        if found is None:
            continue
        flags = frozenset(found.group(1).decode(errors="replace").upper().split())
        name = found.group(2)
        if re.fullmatch(rb"\{\d+\}", name) and index + 1 < len(lines):
            name = bytes(lines[index + 1])
        elif name.startswith(b'"') and name.endswith(b'"'):
            name = unquote(name[1:-1])
        entries.append((flags, decode_folder(name.decode(errors="replace"))))
    return entries


def imap_date(day: date) -> str:
    """`2-Dec-2026`: SEARCH's date, in English whatever the locale."""
    return f"{day.day}-{MONTHS[day.month - 1]}-{day.year}"


def unquote(value: bytes) -> bytes:
    return re.sub(rb"\\(.)", rb"\1", value)


def uid_set(uids: Iterable[int]) -> str:
    """A compact UID set: `1:5,9,12:13` (ascending, duplicates dropped)."""
    ranges: list[list[int]] = []
    for uid in sorted(set(uids)):
        if ranges and uid == ranges[-1][1] + 1:
            ranges[-1][1] = uid
        else:
            ranges.append([uid, uid])
    return ",".join(str(a) if a == b else f"{a}:{b}" for a, b in ranges)


def status_code(text: bytes) -> str | None:
    """The response code of a status text (`[AUTHENTICATIONFAILED] ...`)."""
    found = re.match(rb"\[([A-Z-]+)", text.strip())
    return found.group(1).decode() if found else None


def quote(value: str) -> str:
    """An IMAP quoted string (folder names with spaces, passwords)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# Folder names travel in modified UTF-7 (RFC 3501 5.1.3): `&` opens base64
# of UTF-16 with `,` for `/`, `-` closes it, and `&-` is a literal `&`.

def encode_folder(name: str) -> str:
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            data = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(data).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def decode_folder(name: str) -> str:
    def one(found: re.Match[str]) -> str:
        body = found.group(1)
        if not body:
            return "&"
        data = body.replace(",", "/")
        return base64.b64decode(data + "=" * (-len(data) % 4)).decode("utf-16-be")

    return re.sub(r"&([A-Za-z0-9+,]*)-", one, name)
