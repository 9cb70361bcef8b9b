"""Delivery failures reported back to us: RFC 3464 delivery status
notifications and the free-text bounces some servers still send (pure).

A standard one is a multipart/report (report-type=delivery-status) whose
message/delivery-status part holds the recipient, Action, Status and
Diagnostic-Code, followed by the returned message (message/rfc822) or its
headers (text/rfc822-headers), where the Message-ID of our message is.

A non-standard one comes from MAILER-DAEMON / postmaster (or with an
empty Return-Path and a bounce-like subject), with the original's headers
quoted in the text. Its fields are found best effort: a Message-ID line in
a returned part or in the text, else the bounce's own In-Reply-To /
References; the first enhanced status code (RFC 3463) and SMTP reply in
the text. Only the head of the text is scanned (`SCAN_CHARS`), so a huge
bounce costs no more than a small one."""
from __future__ import annotations

import re
from dataclasses import dataclass
from email import message_from_string
from email.message import Message

from channels.email_headers import collapse, message_ids, normalize_message_id, raw_value

SCAN_CHARS = 65_536
DAEMONS = frozenset({"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon"})
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery (?:status notification|failure|has failed)|returned mail"
    r"|failure notice|mail delivery (?:failed|subsystem)|delivery failed", re.IGNORECASE)
_MESSAGE_ID_LINE = re.compile(r"^[ \t>]*Message-ID:[ \t]*(<[^<>\r\n]+>)",
                              re.IGNORECASE | re.MULTILINE)
_RECIPIENT_LINE = re.compile(
    r"^[ \t]*(?:Final|Original)-Recipient:[ \t]*(?:[\w-]+;)?[ \t]*<?([^\s<>;]+@[^\s<>;]+)>?",
    re.IGNORECASE | re.MULTILINE)
_QMAIL_RECIPIENT = re.compile(r"^<([^\s<>]+@[^\s<>]+)>:[ \t]*$", re.MULTILINE)
_STATUS = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])")
_DIAGNOSTIC_LINE = re.compile(r"^[ \t]*Diagnostic-Code:[ \t]*(.+)$", re.IGNORECASE | re.MULTILINE)
_SMTP_REPLY = re.compile(r"^[ \t]*([45]\d\d[ -].+)$", re.MULTILINE)


@dataclass(frozen=True)
class Bounce:
    """A delivery status notification (RFC 3464) about one of our messages."""
    # from the returned message/rfc822 or text/rfc822-headers part, else References/In-Reply-To
    original_message_id: str | None
    recipient: str | None  # Final-Recipient / Original-Recipient address
    status: str | None  # "5.1.1"
    action: str | None  # "failed", "delayed", ...
    diagnostic: str | None  # Diagnostic-Code text, e.g. "smtp; 550 5.1.1 user unknown"


def find_bounce(msg: Message, *, from_address: str | None, subject: str,
                return_path: str | None, text: str) -> Bounce | None:
    """The bounce `msg` is, or None when it is not one."""
    if msg.get_content_type() == "multipart/report" \
            and str(msg.get_param("report-type") or "").lower() == "delivery-status":
        return _standard(msg)
    local = (from_address or "").partition("@")[0]
    null_sender = return_path is not None and return_path.strip() in ("<>", "")
    if local in DAEMONS or (null_sender and _BOUNCE_SUBJECT.search(subject)):
        return _free_text(msg, text)
    return None


def _standard(msg: Message) -> Bounce:
    fields: dict[str, str] = {}
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            fields = _status_fields(part)
            break
    return Bounce(original_message_id=_returned_id(msg) or _own_reference(msg),
                  recipient=_address(fields.get("final-recipient")
                                     or fields.get("original-recipient")),
                  status=_status(fields.get("status")),
                  action=(fields.get("action") or "").lower() or None,
                  diagnostic=fields.get("diagnostic-code"))


def _status_fields(part: Message) -> dict[str, str]:
    """The per-recipient fields of a delivery-status part: the first
    recipient block that failed, else the first one there is."""
    blocks = [b for b in part.get_payload() if isinstance(b, Message)] \
        if part.is_multipart() else []
    chosen: dict[str, str] = {}
    for block in blocks[1:] or blocks:
        fields = {key.lower(): collapse(str(value)) for key, value in block.raw_items()}
        if not chosen:
            chosen = fields
        if fields.get("action", "").lower() == "failed":
            return fields
    return chosen


def _returned_id(msg: Message) -> str | None:
    """The Message-ID of the returned message or headers, when a part has them."""
    for part in msg.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822" and part.is_multipart():
            inner = part.get_payload(0)
            if isinstance(inner, Message):
                found = normalize_message_id(raw_value(inner, "Message-ID"))
                if found:
                    return found
        elif kind == "text/rfc822-headers":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                headers = message_from_string(payload.decode("utf-8", "replace")[:SCAN_CHARS])
                found = normalize_message_id(headers.get("Message-ID"))
                if found:
                    return found
    return None


def _own_reference(msg: Message) -> str | None:
    """The bounce's own In-Reply-To, else the last of its References (the
    message it answers)."""
    for name, pick in (("In-Reply-To", 0), ("References", -1)):
        ids = message_ids(raw_value(msg, name))
        if ids:
            return ids[pick]
    return None


def _free_text(msg: Message, text: str) -> Bounce:
    head = text[:SCAN_CHARS]
    quoted = _MESSAGE_ID_LINE.search(head)
    original = _returned_id(msg) or (normalize_message_id(quoted.group(1)) if quoted else None)
    recipient = _RECIPIENT_LINE.search(head) or _QMAIL_RECIPIENT.search(head)
    status = _STATUS.search(head)
    diagnostic = _DIAGNOSTIC_LINE.search(head) or _SMTP_REPLY.search(head)
    code = status.group(1) if status else None
    action = None if code is None else {"5": "failed", "4": "delayed", "2": "delivered"}[code[0]]
    return Bounce(original_message_id=original or _own_reference(msg),
                  recipient=recipient.group(1).lower() if recipient else None,
                  status=code, action=action or ("failed" if diagnostic else None),
                  diagnostic=collapse(diagnostic.group(1)) if diagnostic else None)


def _address(value: str | None) -> str | None:
    """'rfc822; user@example.com' -> 'user@example.com'."""
    if not value:
        return None
    address = value.rpartition(";")[2].strip().strip("<>").lower()
    return address or None


def _status(value: str | None) -> str | None:
    found = _STATUS.search(value or "")
    return found.group(1) if found else None
