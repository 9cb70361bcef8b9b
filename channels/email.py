"""The email channel: a mailbox read over IMAP, replies sent over SMTP.

Inbound, the mailbox poller (actors.mailbox) fetches raw messages through
channels.imap and this module turns each parsed one (channels.email_mime)
into an `InboundMessage`, a bounce into a `StatusUpdate` of the message it
returns, once the poller has found the conversation it belongs to (threading
needs the database: storage.email_threads). Outbound, `EmailConnector.send`
composes a reply from the `OutboundMessage` and its `context` (whom to
answer, the subject, the Message-IDs to refer to: the chat reads them from
the thread) and hands it to a pooled SMTP connection; the sent copy is then
appended to the mailbox's Sent folder, beside the send, best effort.

Ids: a Message-ID is stored without its angle brackets as the message's
`external_id` (long ones as a digest: `key`); a new conversation's thread id
is its first message's. Our own Message-ID follows from our message id, so
a send retried after a lost answer carries the same id and the receiver's
client sees one message. The `reply+<token>@` address we answer from names
the chat: the token is the chat id and a MAC, so it cannot be forged to
reach another chat, and matches stay scoped to the contact anyway."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import uuid
from collections.abc import Awaitable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from channels.base import CREDENTIALS_REFUSED, ChannelError
from channels.email_compose import compose, references_for, reply_subject
from channels.email_mime import ParsedEmail
from channels.imap import ImapAuthError, ImapError, Mailbox
from channels.imap import check_login as imap_login
from channels.mail_server import MailServer
from channels.smtp import SmtpAuthError, SmtpPool, SmtpRejected, SmtpTemporary
from channels.smtp import check_login as smtp_login
from core.errors import Invalid
from core.messages import Attachment, InboundMessage, OutboundMessage, Receipt, Sender, StatusUpdate
from storage.integrations import Integration

log = logging.getLogger(__name__)

CHANNEL = "email"
MAX_KEY = 200  # a Message-ID longer than this is kept as its digest (thread ids are <= 255)
TOKEN = re.compile(r"^reply\+([0-9a-f]{32})([0-9a-f]{12})@(.+)$")
APPEND_QUEUE = 1000  # sent copies waiting for the Sent folder, per host
# The chat view of a message is at most this long (every event and frame
# carries it); the whole text is kept beside it.
VISIBLE_MAX = 65_536


class ServerConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    host: str
    port: int
    username: str
    password: str
    tls: Literal["ssl", "starttls", "none"] = "ssl"


class ImapConfig(ServerConfig, forbid_unknown_fields=True, frozen=True):
    folder: str = "INBOX"


class EmailConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    address: str
    imap: ImapConfig
    smtp: ServerConfig
    reply_domain: str | None = None
    import_days: int = 7


def key(message_id: str) -> str:
    """A normalized Message-ID as we store it (external ids, thread ids)."""
    if len(message_id) <= MAX_KEY:
        return message_id
    return "sha256:" + hashlib.sha256(message_id.encode()).hexdigest()


def public_config(config: EmailConfig) -> dict[str, Any]:
    """What the API shows of an email integration: everything but the passwords."""
    def server(s: ServerConfig) -> dict[str, Any]:
        return {"host": s.host, "port": s.port, "tls": s.tls, "username": s.username}
    return {"address": config.address,
            "imap": {**server(config.imap), "folder": config.imap.folder},
            "smtp": server(config.smtp), "reply_domain": config.reply_domain,
            "import_days": config.import_days}


def secrets_of(config: EmailConfig) -> dict[str, str]:
    return {"imap_password": config.imap.password, "smtp_password": config.smtp.password}


def server_of(integration: Integration, protocol: Literal["imap", "smtp"],
              timeout: float = 30.0) -> MailServer:
    """The integration's IMAP or SMTP server and login, as stored."""
    given = integration.config.get(protocol) or {}
    return MailServer(host=str(given.get("host")), port=int(given.get("port") or 0),
                      tls=given.get("tls") or "ssl", username=str(given.get("username")),
                      password=integration.secrets.get(f"{protocol}_password", ""),
                      timeout=timeout)


def _server(config: ServerConfig, timeout: float) -> MailServer:
    return MailServer(host=config.host, port=config.port, tls=config.tls,
                      username=config.username, password=config.password, timeout=timeout)


def folder_of(integration: Integration) -> str:
    return str((integration.config.get("imap") or {}).get("folder") or "INBOX")


async def check_logins(config: EmailConfig, timeout: float = 15.0,
                       only: Collection[str] = ("imap", "smtp")) -> None:
    """Log in to both servers (at once; or `only` those); `Invalid` names the
    server that failed and why (a refused password, a server not reachable)."""
    def login(name: str) -> Awaitable[Any]:
        if name == "imap":
            return imap_login(_server(config.imap, timeout), config.imap.folder)
        return smtp_login(_server(config.smtp, timeout))
    names = [name for name in ("imap", "smtp") if name in only]
    got = await asyncio.gather(*(login(name) for name in names), return_exceptions=True)
    for name, result in zip(names, got, strict=True):
        if isinstance(result, ImapAuthError | SmtpAuthError):
            raise Invalid(f"the {name.upper()} server refused the login of"
                          f" {getattr(config, name).username!r}: check the username and"
                          " password", field=f"config.{name}.password")
        if isinstance(result, BaseException):
            raise Invalid(f"the {name.upper()} server could not be used: {result}",
                          field=f"config.{name}.host")


# -- reply tokens ---------------------------------------------------------

def _mac(secret: bytes, chat_id: str) -> str:
    return hmac.new(secret, b"email-reply:" + chat_id.encode(), hashlib.sha256).hexdigest()[:12]


def reply_address(secret: bytes, chat_id: str, domain: str) -> str:
    """The address a reply to this chat comes back to: `reply+<token>@domain`."""
    return f"reply+{uuid.UUID(chat_id).hex}{_mac(secret, str(uuid.UUID(chat_id)))}@{domain}"


def token_chat(secret: bytes, address: str, domain: str | None = None) -> str | None:
    """The chat a `reply+<token>@` address names, if its MAC holds (and, with
    `domain`, it is at that domain)."""
    found = TOKEN.match(address.lower())
    if found is None or (domain is not None and found.group(3) != domain.lower()):
        return None
    chat_id = str(uuid.UUID(found.group(1)))
    return chat_id if hmac.compare_digest(_mac(secret, chat_id), found.group(2)) else None


# -- inbound ----------------------------------------------------------------

def _clean(text: str) -> str:
    return text.replace("\x00", "")  # Postgres text holds no NUL


def headers_of(parsed: ParsedEmail) -> dict[str, Any]:
    """What a message's envelope says, kept on it (threading and replies read it)."""
    return {"message_id": parsed.message_id, "subject": _clean(parsed.subject),
            "from": parsed.from_address, "reply_to": list(parsed.reply_to),
            "to": list(parsed.to), "cc": list(parsed.cc),
            "in_reply_to": list(parsed.in_reply_to), "references": list(parsed.references)}


def inbound(integration: Integration, parsed: ParsedEmail, thread_id: str,
            attachments: Sequence[Attachment], *, uid: int, uidvalidity: int) -> InboundMessage:
    """`parsed` as the message of `thread_id` it is."""
    email: dict[str, Any] = {**headers_of(parsed), "uid": uid, "uidvalidity": uidvalidity,
                             "folder": folder_of(integration)}
    if parsed.message_id_generated:
        email["message_id_generated"] = True
    data: dict[str, Any] = {"type": "email", "email": email}
    if parsed.auto_submitted:
        data["auto_submitted"] = parsed.auto_submitted
    if parsed.defects:
        data["defects"] = [_clean(d)[:300] for d in parsed.defects[:20]]
    if parsed.truncated:
        data["truncated"] = {"size": parsed.size}
    visible, full = _clean(parsed.visible_text), _clean(parsed.text)
    if len(visible) > VISIBLE_MAX:
        visible = visible[:VISIBLE_MAX] + "\n[…]"
    return InboundMessage(
        organization_id=integration.org_id, integration_id=integration.id, channel=CHANNEL,
        thread_id=thread_id, external_id=key(parsed.message_id),
        sender=Sender(id=parsed.from_address or "unknown", name=parsed.from_name,
                      email=parsed.from_address),
        text=visible, body=full if full != visible else None,
        sent_at=parsed.date, received_at=datetime.now(UTC), attachments=tuple(attachments),
        reply_to_external_id=key(parsed.in_reply_to[0]) if parsed.in_reply_to else None,
        thread_title=_clean(parsed.subject)[:255] or None, thread_kind="email", data=data)


def bounce_status(integration: Integration, parsed: ParsedEmail, thread_id: str,
                  original: str) -> StatusUpdate:
    """A delivery failure report as the status of the message it returns."""
    bounce = parsed.bounce
    assert bounce is not None
    return StatusUpdate(
        organization_id=integration.org_id, integration_id=integration.id, channel=CHANNEL,
        external_id=original, status="failed", thread_id=thread_id, at=parsed.date,
        error_code=bounce.status or "bounced",
        error_title=_clean(bounce.diagnostic or f"bounced by {parsed.from_address}")[:300])


# -- outbound ---------------------------------------------------------------

def our_message_id(message_id: str, address: str) -> str:
    """Our Message-ID for our message `message_id`: the same on every attempt."""
    domain = address.rpartition("@")[2] or "localhost"
    return f"bidi.{message_id}@{domain}"


@dataclass(frozen=True)
class _Copy:
    integration: Integration
    raw: bytes


class EmailConnector:
    """Sends replies over SMTP (a pool of connections per server) and keeps
    their copies in the mailbox's Sent folder. `secret` makes and checks the
    reply tokens."""

    def __init__(self, secret: bytes, *, timeout: float = 30.0, smtp_connections: int = 4,
                 sent_copies: bool = True) -> None:
        self.secret = secret
        self.timeout = timeout
        self.pool = SmtpPool(size=smtp_connections)
        self.sent_copies = sent_copies
        self._copies: asyncio.Queue[_Copy] | None = None
        self._copier: asyncio.Task[None] | None = None
        self._sent_folders: dict[str, str | None] = {}  # integration id -> its Sent folder

    def reply_to(self, integration: Integration, chat_id: str) -> str | None:
        domain = integration.config.get("reply_domain")
        return reply_address(self.secret, chat_id, str(domain)) if domain else None

    def compose(self, integration: Integration,
                message: OutboundMessage) -> tuple[bytes, dict[str, Any]]:
        """The reply as bytes, and what it says of itself (kept on the message)."""
        context = message.context or {}
        to = [str(a) for a in context.get("to") or () if a]
        if not to:
            raise ChannelError("no address to reply to: the conversation has no message"
                               " from the contact")
        address = str(integration.config.get("address"))
        message_id = our_message_id(message.message_id, address)
        parent = context.get("in_reply_to")
        references = list(references_for([str(r) for r in context.get("references") or ()],
                                         str(parent) if parent else None))
        subject = reply_subject(str(context.get("subject") or ""))
        try:
            raw = compose(from_address=address, from_name=integration.name, to=to,
                          subject=subject, text=message.text, html=None,
                          message_id=message_id, in_reply_to=parent, references=references,
                          reply_to=self.reply_to(integration, message.chat_id))
        except Invalid as exc:  # an address or id SMTP cannot carry: no attempt will do
            raise ChannelError(f"not_sendable: {exc.message}") from None
        return raw, {"message_id": message_id, "subject": subject, "to": to,
                     "in_reply_to": [parent] if parent else [], "references": references}

    async def send(self, integration: Integration, message: OutboundMessage) -> Receipt:
        raw, said = self.compose(integration, message)
        address = str(integration.config.get("address"))
        try:
            reply = await self.pool.send(server_of(integration, "smtp", self.timeout), raw,
                                         address, said["to"])
        except SmtpAuthError as exc:
            raise ChannelError(f"smtp_login_refused: {exc}", reason=CREDENTIALS_REFUSED) from None
        except SmtpRejected as exc:
            raise ChannelError(f"smtp_rejected: {exc}") from None
        except SmtpTemporary as exc:
            raise ChannelError(f"smtp_temporary: {exc}", retryable=True) from None
        if self.sent_copies:
            self._keep_copy(integration, raw)
        return Receipt(external_id=key(said["message_id"]), sent_at=datetime.now(UTC),
                       unique_in_thread=True, data={"email": {**said, "smtp_reply": reply[:300]}})

    # -- the Sent folder ------------------------------------------------------

    def _keep_copy(self, integration: Integration, raw: bytes) -> None:
        if self._copies is None:
            self._copies = asyncio.Queue(APPEND_QUEUE)
        if self._copier is None or self._copier.done():
            self._copier = asyncio.create_task(self._append_copies(), name="email sent copies")
        try:
            self._copies.put_nowait(_Copy(integration, raw))
        except asyncio.QueueFull:
            log.warning("email %s: the Sent folder is behind; a sent copy is not kept",
                        integration.id)

    async def _append_copies(self) -> None:
        """Append queued copies, one IMAP connection per mailbox while there is work."""
        assert self._copies is not None
        boxes: dict[str, Mailbox] = {}
        try:
            while True:
                try:
                    copy = await asyncio.wait_for(self._copies.get(), 30.0)
                except TimeoutError:
                    return
                try:
                    await self._append(boxes, copy)
                except (ImapError, OSError) as exc:
                    box = boxes.pop(copy.integration.id, None)
                    if box is not None:
                        await box.close()
                    log.warning("email %s: keeping a sent copy failed: %s",
                                copy.integration.id, exc)
        finally:
            for box in boxes.values():
                await box.close()

    async def _append(self, boxes: dict[str, Mailbox], copy: _Copy) -> None:
        integration = copy.integration
        box = boxes.get(integration.id)
        if box is None:
            box = await Mailbox.open(server_of(integration, "imap", self.timeout))
            boxes[integration.id] = box
        if integration.id not in self._sent_folders:
            self._sent_folders[integration.id] = await box.special_folder("\\Sent")
        folder = self._sent_folders[integration.id]
        if folder is not None:
            await box.append(folder, copy.raw, flags="\\Seen")

    async def close(self) -> None:
        if self._copier is not None:
            self._copier.cancel()
        await self.pool.close()


def parse_config(data: Mapping[str, Any]) -> EmailConfig:
    """An email integration's settings, checked; `Invalid` names the field."""
    try:
        config = msgspec.convert(dict(data), EmailConfig)
    except msgspec.ValidationError as exc:
        found = re.search(r"at `\$\.([A-Za-z_.]+)", str(exc))
        raise Invalid(f"invalid email settings: {exc}",
                      field=f"config.{found.group(1)}" if found else "config") from None
    if config.reply_domain is not None and not re.fullmatch(
            r"(?i)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+",
            config.reply_domain):
        raise Invalid("reply_domain must be a domain name", field="config.reply_domain")
    if not 0 <= config.import_days <= 365:
        raise Invalid("import_days must be between 0 and 365", field="config.import_days")
    return config


__all__ = ("CHANNEL", "EmailConfig", "EmailConnector", "bounce_status", "check_logins", "key",
           "inbound", "parse_config", "public_config", "reply_address",
           "secrets_of", "token_chat")
