"""An inbound email, raw RFC 5322 bytes, as a `ParsedEmail` (pure: no I/O).

The stdlib's parser reads the MIME tree, with the compat32 policy: header
values stay strings, read by channels.email_headers, because the default
policy's header registry parses a header again on every access and was
most of the cost of a parse. The parser is lenient by design (a broken
boundary, a missing close, a junk header line become defects on the
message, not exceptions) and everything read from its result here is
guarded again, so `parse_email` never raises on what a mail server hands
us. What was wrong is said in `defects`.

The body is the first text/plain part that is not an attachment (walked as
`EmailMessage.get_body` walks alternative, related and mixed), else the
HTML converted to text by inscriptis (paragraphs, lists, links with their
URLs). A part's charset is honoured when Python knows it; an unknown one,
or a declared us-ascii/none that is really 8-bit, is read as UTF-8 when it
is valid UTF-8, else as windows-1252 (what a declared ISO-8859-1 or ASCII
mostly is, the WHATWG encoding rule). Every other leaf is an attachment,
its content kept up to `max_attachment_bytes`; the machine parts of a
delivery report are read into `bounce` (channels.email_bounce) instead.
Text is capped at `max_text_chars` (and so is the HTML kept), with a defect
saying so.

Raw bytes cut short (`truncated=True`, e.g. an IMAP partial fetch) are
still parsed: the part that ran into the cut is the last leaf whose
multipart never saw its closing boundary (or the only body); its text is
kept as far as it goes, and an attachment cut there has no content
("truncated")."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes
from email.message import Message
from email.policy import compat32

from inscriptis import get_text
from inscriptis.model.config import ParserConfig

from channels.email_bounce import Bounce, find_bounce
from channels.email_headers import (
    addresses,
    clean,
    collapse,
    date_header,
    decode_words,
    describe,
    first_token,
    message_ids,
    normalize_message_id,
    raw_value,
    text_header,
)
from channels.email_trim import visible_text

__all__ = ["Bounce", "ParsedAttachment", "ParsedEmail", "message_ids",
           "normalize_message_id", "parse_email"]

MISSING_ID_DOMAIN = "missing-message-id.invalid"
MAX_NAME = 255
# Declared charsets that mostly mean "whatever the sender's machine used".
_VAGUE_CHARSETS = frozenset({"us-ascii", "ascii", "iso-8859-1", "latin1", "latin-1",
                             "ansi_x3.4-1968"})
_HTML = ParserConfig(display_links=True)
_AUTOREPLY_FLAGS = ("X-Autoreply", "X-Autorespond")


@dataclass(frozen=True)
class ParsedAttachment:
    name: str | None  # decoded filename (RFC 2231 / 2047), sanitized to a safe basename
    mime_type: str
    size: int  # bytes of the decoded content (or as declared when not kept)
    content: bytes | None  # None when over the cap or cut off by truncation
    error: str | None  # why content is None: "too_large", "truncated", "undecodable"
    inline: bool = False  # Content-Disposition inline with a Content-ID (images in HTML)
    content_id: str | None = None


@dataclass(frozen=True)
class ParsedEmail:
    message_id: str  # normalized; generated from the bytes when missing or garbage
    message_id_generated: bool
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    from_address: str | None  # lowercased addr-spec
    from_name: str | None  # decoded display name
    reply_to: tuple[str, ...]  # lowercased addresses
    to: tuple[str, ...]
    cc: tuple[str, ...]
    delivered_to: tuple[str, ...]  # Delivered-To / X-Original-To, lowercased
    subject: str  # decoded (RFC 2047), whitespace collapsed, "" when none
    date: datetime | None  # aware, UTC; None when missing or unparseable
    text: str  # the full body as text: text/plain preferred, else HTML converted
    html: str | None  # the HTML part as sent, when there was one
    visible_text: str  # the chat view: quotes and signature trimmed
    attachments: tuple[ParsedAttachment, ...]
    auto_submitted: str | None  # "auto-replied", "auto-generated", ...; None for a person's mail
    bounce: Bounce | None
    defects: tuple[str, ...]  # human-readable problems met
    truncated: bool  # the raw bytes were cut (passed in): parts after the cut are missing
    size: int  # len(raw) or the declared full size


def parse_email(raw: bytes, *, max_attachment_bytes: int, max_text_chars: int = 1_000_000,
                truncated: bool = False, full_size: int | None = None) -> ParsedEmail:
    """Never raises on bad input: anything unreadable is a defect, decoded as best it can be."""
    defects: list[str] = []
    msg = _message(raw, defects)
    if not raw.strip():
        defects.append("empty message")
    elif not msg.keys() and not defects:
        defects.append("no headers found: not an email")
    own_id = normalize_message_id(raw_value(msg, "Message-ID"))
    generated = own_id is None
    if own_id is None:
        own_id = f"{hashlib.sha256(raw).hexdigest()[:32]}@{MISSING_ID_DOMAIN}"
        defects.append("no usable Message-ID: one was made from the bytes")
    sender = addresses(msg, ["From"]) or addresses(msg, ["Sender"])
    subject = collapse(text_header(msg, "Subject") or "")

    cut = _cut_leaf(msg) if truncated else None
    if truncated:
        defects.append("the raw message was cut: parts after the cut are missing")
    text_part, html_part = _body_parts(msg)
    html = _decoded(html_part, defects) if html_part is not None else None
    if text_part is not None:
        text = _decoded(text_part, defects)
    elif html is not None:
        text = _html_to_text(html, defects)
    else:
        text = _unsplit(msg)
        text_part = msg if text else None
    text, html = _capped(text, max_text_chars, "text", defects), _capped_html(
        html, max_text_chars, defects)
    attachments = tuple(
        _attachment(part, max_attachment_bytes, part is cut, defects)
        for part in _leaves(msg) if part is not text_part and part is not html_part)

    from_address = sender[0][1] if sender else None
    bounce = _safe_bounce(msg, from_address, subject, text, defects)
    _collect_defects(msg, defects)
    return ParsedEmail(
        message_id=own_id,
        message_id_generated=generated,
        in_reply_to=message_ids(raw_value(msg, "In-Reply-To")),
        references=message_ids(raw_value(msg, "References")),
        from_address=from_address,
        from_name=sender[0][0] if sender else None,
        reply_to=_addrs(msg, ["Reply-To"]),
        to=_addrs(msg, ["To"]),
        cc=_addrs(msg, ["Cc"]),
        delivered_to=_addrs(msg, ["Delivered-To", "X-Original-To"]),
        subject=subject,
        date=date_header(msg, defects),
        text=text,
        html=html,
        visible_text=visible_text(text),
        attachments=attachments,
        auto_submitted=_auto_submitted(msg, bounce),
        bounce=bounce,
        defects=tuple(dict.fromkeys(defects)),
        truncated=truncated,
        size=full_size if full_size is not None else len(raw),
    )


def _message(raw: bytes, defects: list[str]) -> Message:
    # compat32 keeps header values as strings (see channels.email_headers)
    try:
        return message_from_bytes(raw, policy=compat32)
    except Exception as exc:  # the parser is lenient; this is the last guard
        defects.append(f"unparseable message ({type(exc).__name__})")
    return Message(policy=compat32)


def _addrs(msg: Message, names: list[str]) -> tuple[str, ...]:
    return tuple(addr for _, addr in addresses(msg, names))


def _body_parts(msg: Message) -> tuple[Message | None, Message | None]:
    try:
        return _body(msg, "plain"), _body(msg, "html")
    except RecursionError:  # nested past reason: take the top part if it is text
        kind = msg.get_content_type()
        return (msg if kind == "text/plain" else None), (msg if kind == "text/html" else None)


def _body(part: Message, subtype: str) -> Message | None:
    """The first text/<subtype> part that is not an attachment, walked as
    `EmailMessage.get_body` does (whose own walk needs the header registry):
    of a multipart/related only its root part counts."""
    if part.get_content_disposition() == "attachment":
        return None
    maintype, _, sub = part.get_content_type().partition("/")
    if maintype == "text":
        return part if sub == subtype else None
    if maintype != "multipart" or not part.is_multipart():
        return None
    children = [p for p in part.get_payload() if isinstance(p, Message)]
    if sub == "related" and children:
        start = normalize_message_id(str(part.get_param("start") or ""))
        root = next((c for c in children if start and
                     normalize_message_id(raw_value(c, "Content-ID")) == start), children[0])
        children = [root]
    for child in children:
        found = _body(child, subtype)
        if found is not None:
            return found
    return None


def _unsplit(msg: Message) -> str:
    """The body of a multipart whose boundary never came, as the text it is."""
    payload = msg.get_payload()
    if msg.get_content_maintype() != "multipart" or not isinstance(payload, str):
        return ""
    return _lines(payload.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))


def _leaves(msg: Message) -> list[Message]:
    """Every non-multipart part in document order; a message/* part is one
    leaf (its inside is the attachment). Of a report only the first part,
    the human-readable one, counts: the status and the returned message are
    read into `bounce`."""
    found: list[Message] = []
    stack: list[Message] = [msg]
    while stack:
        part = stack.pop()
        kind = part.get_content_type()
        if kind.startswith("multipart/") and part.is_multipart():
            children = [p for p in part.get_payload() if isinstance(p, Message)]
            if kind == "multipart/report":
                children = children[:1]
            stack.extend(reversed(children))
        else:
            found.append(part)
    return found


def _cut_leaf(msg: Message) -> Message | None:
    """The leaf that ran into the end of cut bytes: the last one, unless its
    multipart was closed (then the cut fell after it)."""
    parent, part = None, msg
    while part.get_content_type().startswith("multipart/") and part.is_multipart():
        children = [p for p in part.get_payload() if isinstance(p, Message)]
        if not children:
            return None
        parent, part = part, children[-1]
    if parent is None:
        return part
    closed = not any(type(d).__name__ == "CloseBoundaryNotFoundDefect" for d in parent.defects)
    return None if closed else part


def _decoded(part: Message, defects: list[str]) -> str:
    """A text part's content as str, by its charset or the best guess."""
    try:
        payload = part.get_payload(decode=True)
    except Exception as exc:  # a broken transfer encoding: the stdlib gave up
        defects.append(f"{part.get_content_type()} undecodable ({type(exc).__name__})")
        return ""
    if not isinstance(payload, bytes):
        return ""
    declared = (part.get_content_charset() or "").strip().strip('"').lower()
    if declared in _VAGUE_CHARSETS or not declared:
        return _lines(_guess(payload))
    try:
        return _lines(payload.decode(declared, errors="replace"))
    except (LookupError, ValueError):  # unknown, or not even a name (a NUL in it)
        defects.append(f"unknown charset {declared!r} decoded as UTF-8 or windows-1252")
        return _lines(_guess(payload))


def _lines(text: str) -> str:
    """Text with "\n" line ends and no control characters."""
    return clean(text.replace("\r\n", "\n").replace("\r", "\n"))


def _guess(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.decode("cp1252", errors="replace")


def _html_to_text(html: str, defects: list[str]) -> str:
    try:
        return clean(get_text(html, _HTML)).strip("\n")
    except Exception as exc:  # lxml refuses some documents; the markup is still text
        defects.append(f"HTML not convertible to text ({type(exc).__name__}), kept as sent")
        return html


def _capped(value: str, limit: int, what: str, defects: list[str]) -> str:
    if len(value) <= limit:
        return value
    defects.append(f"body {what} cut at {limit} of {len(value)} characters")
    return value[:limit]


def _capped_html(html: str | None, limit: int, defects: list[str]) -> str | None:
    return None if html is None else _capped(html, limit, "html", defects)


def _attachment(part: Message, cap: int, cut: bool, defects: list[str]) -> ParsedAttachment:
    disposition = (part.get_content_disposition() or "").lower()
    content_id = normalize_message_id(raw_value(part, "Content-ID"))
    content, error = _content(part, defects)
    size = _declared_size(part) if content is None else len(content)
    if content is not None and cut:
        # what arrived is a part of it: the sender's declared size, if any, is the better guess
        content, error, size = None, "truncated", _declared_size(part) or size
    elif content is not None and len(content) > cap:
        content, error = None, "too_large"
    return ParsedAttachment(name=_filename(part), mime_type=part.get_content_type(), size=size,
                            content=content, error=error, content_id=content_id,
                            inline=content_id is not None and disposition != "attachment")


def _content(part: Message, defects: list[str]) -> tuple[bytes | None, str | None]:
    try:
        if part.get_content_type().startswith("message/") and part.is_multipart():
            inner = part.get_payload(0)
            return (inner.as_bytes() if isinstance(inner, Message) else b""), None
        payload = part.get_payload(decode=True)
    except Exception as exc:  # a broken encoding or an inner message that cannot be written
        defects.append(f"{part.get_content_type()} undecodable ({type(exc).__name__})")
        return None, "undecodable"
    return (payload, None) if isinstance(payload, bytes) else (b"", None)


def _declared_size(part: Message) -> int:
    size = part.get_param("size", header="content-disposition")
    try:
        return max(0, int(str(size))) if size is not None else 0
    except ValueError:
        return 0


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:  # a parameter the header parser cannot read
        name = None
    if not name:
        return None
    name = decode_words(str(name))
    # the last path segment only, whichever separator the sender's system uses
    name = collapse(name.replace("\\", "/").rsplit("/", 1)[-1]).strip(" .")
    if not name:
        return None
    if len(name) > MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        name = (stem[:MAX_NAME - len(ext) - 1] + "." + ext) if dot and len(ext) < 16 \
            else name[:MAX_NAME]
    return name


def _safe_bounce(msg: Message, from_address: str | None, subject: str, text: str,
                 defects: list[str]) -> Bounce | None:
    try:
        return find_bounce(msg, from_address=from_address, subject=subject,
                           return_path=raw_value(msg, "Return-Path"), text=text)
    except Exception as exc:  # a report too broken to read is still a message
        defects.append(f"delivery report unreadable ({type(exc).__name__})")
        return None


def _auto_submitted(msg: Message, bounce: Bounce | None) -> str | None:
    declared = first_token(raw_value(msg, "Auto-Submitted"))
    if declared and declared != "no":
        return declared
    if bounce is not None:
        return "auto-generated"
    for flag in _AUTOREPLY_FLAGS:
        value = first_token(raw_value(msg, flag))
        if value is not None and value not in ("no", "false", "0"):
            return "auto-replied"
    if first_token(raw_value(msg, "Precedence")) == "auto_reply":
        return "auto-replied"
    return None


def _collect_defects(msg: Message, defects: list[str]) -> None:
    # a stack, not msg.walk(): a hostile nesting must not reach the recursion limit here
    stack = [msg]
    while stack:
        part = stack.pop()
        for defect in getattr(part, "defects", ()):
            defects.append(f"{part.get_content_type()}: {describe(defect)}")
        if part.is_multipart():
            stack.extend(reversed([p for p in part.get_payload() if isinstance(p, Message)]))
