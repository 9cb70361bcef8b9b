"""Our outgoing email replies as RFC 5322 bytes (pure: no I/O; SMTP
sends them).

A reply is multipart/alternative: the text as text/plain, and HTML (the
agent's own, or the text marked up by `text_to_html`). Both parts are
UTF-8 in quoted-printable, so every line stays 7-bit and under 78 octets
whatever the text is and no relay needs 8BITMIME; headers with non-ASCII
text (subject, display names) become RFC 2047 encoded words, and every
line ends in CRLF (`email.policy.SMTP`).

Message-ID, In-Reply-To and References are written by hand, one id per
folded line: the stdlib folds an over-long unstructured header by turning
words into encoded words, which would break an id that does not fit a
78-octet line (Outlook's often do not). Ids come and go normalized
(no angle brackets), as `channels.email_mime` reads them.

Subjects: a reply's subject is the parent's with exactly one "Re: " in
front. Reply prefixes of other clients and languages ("RE:", "Re[2]:",
"Aw:", "Sv:", "Antw:", "Odp:", "回复:") are taken off first; "Fwd:" is
kept ("Re: Fwd: x" is a reply to a forward). An empty subject gives
"Re: (no subject)", what the recipient's client would have shown anyway,
and replying to that again gives the same."""
from __future__ import annotations

import html as html_escape
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime

from channels.email_headers import collapse, normalize_message_id
from core.errors import Invalid

NO_SUBJECT = "(no subject)"
_REPLY_PREFIX = re.compile(
    r"^\s*(?:re|aw|sv|antw|odp|rif|回复|答复)\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*", re.IGNORECASE)
_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
_URL_TAIL = ".,;:!?)]}'\""  # punctuation after a link belongs to the sentence
# Ids are folded here, one per line; "none" keeps the policy from folding them again.
SMTP = SMTP_POLICY.clone(refold_source="none")
_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


def new_message_id(domain: str) -> str:
    """A globally unique Message-ID (normalized: no brackets) under `domain`:
    128 random bits, so no two hosts ever need to agree on a counter."""
    if not _DOMAIN.match(domain) or ".." in domain:
        raise Invalid(f"{domain!r} is not a domain for a Message-ID", field="domain")
    return f"{secrets.token_hex(16)}@{domain.lower()}"


def reply_subject(subject: str) -> str:
    """Exactly one "Re: " in front of the parent's subject (see the module docstring)."""
    rest = collapse(subject)
    while True:
        stripped = _REPLY_PREFIX.sub("", rest, count=1)
        if stripped == rest:
            break
        rest = stripped
    return f"Re: {rest or NO_SUBJECT}"


def references_for(parent_references: Sequence[str], parent_id: str | None,
                   limit: int = 20) -> tuple[str, ...]:
    """parent's References + parent id; when longer than `limit`, keep the
    first and the last limit-1 (RFC 5322 3.6.4 practice). Ids normalized,
    deduplicated, the parent last; ids that are not ids are dropped."""
    ids: dict[str, None] = {}
    parent = normalize_message_id(parent_id)
    for value in parent_references:
        normalized = normalize_message_id(value)
        if normalized is not None and normalized != parent:
            ids.setdefault(normalized, None)
    if parent is not None:
        ids[parent] = None  # last, even when an older References named it earlier
    chain = tuple(ids)
    if len(chain) <= limit:
        return chain
    if limit < 2:  # no room for the thread's root: the nearest ids only
        return chain[len(chain) - limit:] if limit > 0 else ()
    # the root keeps the thread findable, the tail keeps it ordered
    return chain[:1] + chain[len(chain) - (limit - 1):]


def text_to_html(text: str) -> str:
    """escaped, paragraphs/line breaks, http(s) links clickable"""
    normalized = text.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    paragraphs = [p for p in re.split(r"\n[ \t]*\n", normalized) if p.strip()]
    body = "\n".join(
        "<p>" + "<br>\n".join(_linked(line) for line in paragraph.split("\n")) + "</p>"
        for paragraph in paragraphs)
    return ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>\n'
            f"<body>\n{body}\n</body></html>\n")


def _linked(line: str) -> str:
    """One line escaped, each http(s) URL in it an anchor."""
    out: list[str] = []
    position = 0
    for match in _URL.finditer(line):
        url = match.group(0).rstrip(_URL_TAIL)
        if url.endswith(("://", ":")):
            continue
        out.append(html_escape.escape(line[position:match.start()]))
        href = html_escape.escape(url, quote=True)
        out.append(f'<a href="{href}">{href}</a>')
        position = match.start() + len(url)
    out.append(html_escape.escape(line[position:]))
    return "".join(out)


def compose(*, from_address: str, from_name: str | None, to: Sequence[str], subject: str,
            text: str, html: str | None, message_id: str, in_reply_to: str | None,
            references: Sequence[str], reply_to: str | None,
            date: datetime | None = None) -> bytes:
    """An RFC 5322 message, multipart/alternative (text/plain + text/html; html from
    text_to_html when None), UTF-8, headers encoded as needed (RFC 2047 for non-ASCII
    subject/names), CRLF line endings, lines <= 998. `Invalid` for an address or id
    that cannot be written."""
    if not to:
        raise Invalid("an email needs a recipient", field="to")
    msg = EmailMessage(policy=SMTP)
    msg.set_raw("Message-ID", _ids([message_id], "message_id"))
    when = date or datetime.now(UTC)
    msg["Date"] = format_datetime(when if when.tzinfo else when.replace(tzinfo=UTC))
    msg["From"] = _address(from_address, from_name, "from_address")
    msg["To"] = [_address(address, None, "to") for address in to]
    if reply_to:
        msg["Reply-To"] = _address(reply_to, None, "reply_to")
    msg["Subject"] = collapse(subject)
    if in_reply_to:
        msg.set_raw("In-Reply-To", _ids([in_reply_to], "in_reply_to"))
    if references:
        msg.set_raw("References", _ids(references, "references"))
    msg["MIME-Version"] = "1.0"
    body = text.replace("\r\n", "\n").replace("\r", "\n")
    msg.set_content(body, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html if html is not None else text_to_html(body), subtype="html",
                        charset="utf-8", cte="quoted-printable")
    try:
        return msg.as_bytes(policy=SMTP)
    except (ValueError, UnicodeError) as exc:  # e.g. a non-ASCII address: needs SMTPUTF8
        raise Invalid(f"the email cannot be written: {exc}") from None


def _address(address: str, name: str | None, field: str) -> Address:
    """An addr-spec as the header needs it: an international domain in its
    IDNA (xn--) form, since the stdlib would write it as an encoded word; a
    non-ASCII local part needs SMTPUTF8, which we do not speak, so `Invalid`."""
    local, _, domain = address.strip().rpartition("@")
    if not local or not domain:
        raise Invalid(f"{address!r} is not an email address", field=field)
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise Invalid(f"{address!r} has a domain that cannot be written", field=field) from None
    if not local.isascii():
        raise Invalid(f"{address!r} needs SMTPUTF8 (a non-ASCII local part)", field=field)
    try:
        parsed = Address(display_name=collapse(name or ""), addr_spec=f"{local}@{domain}")
    except (ValueError, IndexError, TypeError, HeaderParseError) as exc:
        raise Invalid(f"{address!r} is not an email address", field=field) from exc
    if not parsed.username or not parsed.domain:
        raise Invalid(f"{address!r} is not an email address", field=field)
    return parsed


def _ids(values: Sequence[str], field: str) -> str:
    """Bracketed ids, one per folded line (CRLF + space, as the policy writes)."""
    ids = []
    for value in values:
        normalized = normalize_message_id(value)
        if normalized is None:
            raise Invalid(f"{value!r} is not a Message-ID", field=field)
        ids.append(f"<{normalized}>")
    return "\r\n ".join(ids)
