"""Header values of an email as plain Python values (pure: no I/O).

Mail in the wild breaks every rule, and a header must still come out as
something: each reader here returns a value or None and never raises.
Headers are read from their raw stored form with the forgiving
`email.utils` / `email.header` functions rather than through the
`email.policy.default` header registry: the registry parses a header anew
on every access (Content-Type alone some twenty times per message), which
made it two thirds of the cost of a parse, and it raises on some
malformed address lists.

Message-IDs are kept normalized, without the angle brackets, so the id we
store for a message we sent and the id a reply quotes compare equal as
strings."""
from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from email.header import decode_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

# Real ids are far shorter; this keeps "In-Reply-To: <id>" within a 998-octet line.
MAX_ID_LENGTH = 900
_BRACKETED = re.compile(r"<([^<>]*)>")
_NOT_IN_ID = re.compile(r"[\s<>\x00-\x1f\x7f]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean(value: str) -> str:
    """A string without NUL and the other C0 controls (Postgres text refuses
    NUL; none of them means anything in a name or a subject)."""
    return _CONTROL.sub("", value) if _CONTROL.search(value) else value


def collapse(value: str) -> str:
    return " ".join(clean(value).split())


def normalize_message_id(value: str | None) -> str | None:
    """'<abc@host>' / ' abc@host ' -> 'abc@host' (no brackets, stripped); None for empty/garbage.

    The first bracketed id wins when there are brackets (a comment may
    follow it); without brackets the whole value must be one token. No
    "@" is required: some mailers make ids without one, and a reply quotes
    them as they are."""
    if not value:
        return None
    bracketed = _BRACKETED.search(value)
    candidate = (bracketed.group(1) if bracketed else value).strip()
    if not candidate or len(candidate) > MAX_ID_LENGTH or _NOT_IN_ID.search(candidate):
        return None
    return candidate


def message_ids(value: str | None) -> tuple[str, ...]:
    """All ids in a References / In-Reply-To header, normalized, in order, deduplicated.

    Bracketed ids when there are any; else the bare tokens that look like
    ids (have an "@"), which skips the prose of old In-Reply-To values
    ("Your message of Mon, 1 Jan ...")."""
    if not value:
        return ()
    tokens = _BRACKETED.findall(value)
    if not tokens:
        tokens = [t for t in re.split(r"[\s,]+", value) if "@" in t]
    found: dict[str, None] = {}
    for token in tokens:
        normalized = normalize_message_id(token)
        if normalized is not None:
            found.setdefault(normalized, None)
    return tuple(found)


def raw_value(msg: Message, name: str) -> str | None:
    """The first header `name` as stored (folded, encoded words and all), its
    8-bit bytes (RFC 6532 UTF-8, or a legacy charset) read as text."""
    wanted = name.lower()
    for key, value in msg.raw_items():
        if key.lower() == wanted:
            return unescape(value if isinstance(value, str) else str(value))
    return None


def raw_values(msg: Message, name: str) -> list[str]:
    wanted = name.lower()
    return [unescape(value if isinstance(value, str) else str(value))
            for key, value in msg.raw_items() if key.lower() == wanted]


def unescape(value: str) -> str:
    """Raw 8-bit header bytes (kept by the parser as surrogate escapes) as
    UTF-8 when they are, else windows-1252."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        pass
    raw = value.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def decode_words(value: str) -> str:
    """RFC 2047 encoded words decoded, best effort: a word in an unknown
    charset is read as UTF-8 or windows-1252, a broken one stays as it was."""
    if "=?" not in value:
        return value
    try:
        parts = decode_header(value)
    except (ValueError, UnicodeError, AssertionError, IndexError):
        return value
    out = []
    for chunk, charset in parts:
        if isinstance(chunk, str):
            out.append(chunk)
        elif charset is None:  # text around the encoded words, as decode_header escaped it
            out.append(chunk.decode("raw-unicode-escape", "replace"))
        else:
            try:
                out.append(chunk.decode(charset, "replace"))
            except (LookupError, ValueError):  # unknown, or not even a name
                out.append(unescape(chunk.decode("utf-8", "surrogateescape")))
    return "".join(out)


def text_header(msg: Message, name: str) -> str | None:
    """A header's decoded text, unfolded; None when absent."""
    raw = raw_value(msg, name)
    return None if raw is None else decode_words(" ".join(raw.split()))


def addresses(msg: Message, names: Iterable[str]) -> list[tuple[str | None, str]]:
    """(display name, lowercased addr-spec) of every address in the headers
    `names`, in order, deduplicated by address; groups flattened. Names are
    decoded after the list is split, so an encoded comma stays in its name."""
    found: dict[str, str | None] = {}
    for name in names:
        raws = [" ".join(value.split()) for value in raw_values(msg, name)]
        try:
            pairs = getaddresses(raws) if raws else []
        except Exception:  # getaddresses has raised on pathological input in some versions
            pairs = []
        for display, addr in pairs:
            addr = collapse(addr).lower()
            if addr and "@" in addr and addr not in found:
                found[addr] = collapse(decode_words(display)) or None
    return [(display, addr) for addr, display in found.items()]


def date_header(msg: Message, defects: list[str]) -> datetime | None:
    """The Date header as an aware UTC datetime; a zone-less one is taken as UTC."""
    raw = raw_value(msg, "Date")
    if raw is None:
        return None
    try:
        parsed = parsedate_to_datetime(" ".join(raw.split()))
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.append(f"unparseable Date {collapse(raw)[:80]!r}")
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def first_token(value: str | None) -> str | None:
    """'auto-replied; owner-email=...' -> 'auto-replied' (lowercased)."""
    if value is None:
        return None
    token = value.split(";", 1)[0].strip().lower()
    return token or None


def describe(defect: Any) -> str:
    """'CloseBoundaryNotFoundDefect' -> 'close boundary not found', plus the
    stdlib's own words when it has some."""
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", type(defect).__name__.removesuffix("Defect")).lower()
    detail = str(defect) if isinstance(defect, Exception) else ""
    return f"{words}: {detail}" if detail and detail != words else words
