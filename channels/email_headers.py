"""Header values of an email as plain Python values (pure: no I/O).

Mail in the wild breaks every rule, and a header must still come out as
something: each reader here returns a value or None and never raises. The
stdlib's `email.policy.default` header objects do the RFC 2047 / RFC 5322
work; when one of them chokes on a value (it still can, on some malformed
address lists), the raw value is read again with the older, forgiving
`email.utils` / `email.header` functions.

Message-IDs are kept normalized, without the angle brackets, so the id we
store for a message we sent and the id a reply quotes compare equal as
strings."""
from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from email.header import decode_header, make_header
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
    """The header as it was stored (folded, encoded words and all)."""
    for key, value in msg.raw_items():
        if key.lower() == name.lower():
            return value if isinstance(value, str) else str(value)
    return None


def decode_words(value: str) -> str:
    """RFC 2047 encoded words decoded, best effort (an unknown charset or a
    broken word leaves the text as it was)."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (LookupError, ValueError, UnicodeError, AssertionError, TypeError):
        return value


def text_header(msg: Message, name: str, defects: list[str]) -> str | None:
    """A header's decoded text, unfolded; None when absent."""
    try:
        value = msg.get(name)
    except Exception as exc:  # the header registry can raise on junk; the raw value remains
        defects.append(f"header {name} unreadable ({type(exc).__name__}), kept as sent")
        raw = raw_value(msg, name)
        return decode_words(" ".join(raw.split())) if raw is not None else None
    if value is None:
        return None
    for defect in getattr(value, "defects", ()):
        defects.append(f"header {name}: {describe(defect)}")
    return str(value)


def addresses(msg: Message, names: Iterable[str],
              defects: list[str]) -> list[tuple[str | None, str]]:
    """(display name, lowercased addr-spec) of every address in the headers
    `names`, in order, deduplicated by address; groups flattened."""
    found: dict[str, str | None] = {}
    for name in names:
        for display, addr in _header_addresses(msg, name, defects):
            addr = collapse(addr).lower()
            if addr and "@" in addr and addr not in found:
                found[addr] = collapse(display) or None
    return [(display, addr) for addr, display in found.items()]


def _header_addresses(msg: Message, name: str,
                      defects: list[str]) -> list[tuple[str, str]]:
    try:
        headers: list[Any] = msg.get_all(name) or []
        pairs = []
        for header in headers:
            for defect in getattr(header, "defects", ()):
                defects.append(f"header {name}: {describe(defect)}")
            if not hasattr(header, "addresses"):  # Delivered-To & co are unstructured to the stdlib
                pairs += [(decode_words(d), a) for d, a in getaddresses([str(header)])]
                continue
            for address in header.addresses:
                pairs.append((address.display_name, address.addr_spec))
        return pairs
    except Exception as exc:  # the structured parse failed: fall back to the lenient one
        defects.append(f"header {name} unreadable ({type(exc).__name__}), read leniently")
    raws = [value for key, value in msg.raw_items() if key.lower() == name.lower()]
    try:
        return [(decode_words(display), addr) for display, addr in getaddresses(raws)]
    except Exception:  # getaddresses has raised on pathological input in some versions
        return []


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
