"""A mailbox's fetched messages as one `Batch`: parsed, threaded, their
files kept.

Each raw message is parsed (channels.email_mime; bad input never raises),
then placed in a conversation (storage.email_threads: the Message-IDs it
names, then a reply token, scoped to the sender; messages of one batch may
answer each other, so the batch's own are consulted first). A new
conversation's thread id is a digest of the sender and the first
Message-ID: another sender who reuses that Message-ID cannot land in it.

What is not a message: a bounce (DSN) becomes the `failed` status of the
message of ours it returns (an unknown one is ignored, logged); a message
from the mailbox's own address is ours (a copy), ignored. Attachments are
written into the data dir now (the message brought them), up to
`max_attachment_bytes` each; the rest is recorded with the reason."""
from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from actors.files import files_dir
from channels import email
from channels.email_mime import ParsedAttachment, ParsedEmail, parse_email
from channels.imap import Fetched
from core.messages import Attachment, Batch, InboundMessage, StatusUpdate
from storage import email_threads
from storage.chats import alias_ids, contact_id_for
from storage.email_threads import Known, Thread
from storage.integrations import Integration

log = logging.getLogger(__name__)

IN_THREAD = 1 << 20  # bytes: a larger message is parsed off the event loop


@dataclass
class Skipped:
    """A message that could not be stored, and why (kept in the poller's state)."""

    uid: int
    reason: str
    message_id: str | None = None


@dataclass
class Built:
    batch: Batch
    skipped: list[Skipped] = field(default_factory=list)
    uids: list[int] = field(default_factory=list)  # those in the batch, by message


def thread_for_new(address: str | None, message_key: str) -> str:
    digest = hashlib.sha256(f"{(address or '').lower()}\x1f{message_key}".encode())
    return digest.hexdigest()[:40]


async def parse(fetched: Fetched, max_attachment_bytes: int) -> ParsedEmail:
    def run() -> ParsedEmail:
        return parse_email(fetched.raw, max_attachment_bytes=max_attachment_bytes,
                           truncated=fetched.truncated, full_size=fetched.size)
    if len(fetched.raw) > IN_THREAD:
        return await asyncio.to_thread(run)
    return run()


def _kind(mime_type: str) -> str:
    major = mime_type.partition("/")[0]
    return {"image": "photo", "audio": "audio", "video": "video"}.get(major, "document")


def _safe(name: str | None) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", (name or "file").rsplit("/", 1)[-1])
    return cleaned.strip("._")[:80] or "file"


def _write(path: Path, content: bytes) -> None:
    if not path.exists():
        partial = path.with_name(path.name + ".part")
        partial.write_bytes(content)
        partial.replace(path)


async def keep_files(data_dir: Path, org_id: str,
                     parts: Sequence[ParsedAttachment]) -> list[Attachment]:
    """Each attachment's content in the data dir (named by its digest: a
    message fetched again writes nothing new), or why it is not."""
    kept: list[Attachment] = []
    dest = files_dir(data_dir, org_id)
    for part in parts:
        if part.content is None:
            kept.append(Attachment(url=f"email-file:{part.error or 'missing'}", name=part.name,
                                   mime_type=part.mime_type, size=part.size,
                                   kind=_kind(part.mime_type), error=part.error or "missing"))
            continue
        digest = hashlib.sha256(part.content).hexdigest()[:32]
        path = dest / f"{digest}-{_safe(part.name)}"
        dest.mkdir(parents=True, exist_ok=True)
        if len(part.content) > IN_THREAD:
            await asyncio.to_thread(_write, path, part.content)
        else:
            _write(path, part.content)
        kept.append(Attachment(url=str(path.relative_to(data_dir)), name=part.name,
                               mime_type=part.mime_type, size=len(part.content),
                               kind=_kind(part.mime_type), stored=True))
    return kept


class Threads:
    """Where the messages of one batch go: the stored conversations they name
    and those the batch itself opens, scoped to each sender."""

    def __init__(self, known: dict[str, list[Known]], tokens: dict[str, Thread]) -> None:
        self.known = known
        self.tokens = tokens
        self.opened: dict[str, list[tuple[str, str | None]]] = {}  # message key -> (thread, sender)

    def resolve(self, parsed: ParsedEmail, token_chats: Sequence[str],
                contact_ids: Sequence[str]) -> str:
        address = parsed.from_address
        own = email.key(parsed.message_id)
        named = [own, *(email.key(i) for i in parsed.in_reply_to),
                 *(email.key(i) for i in reversed(parsed.references))]
        for candidate in named:
            for thread, sender in self.opened.get(candidate, ()):
                if sender == address:
                    return thread
            for found in self.known.get(candidate, ()):
                if found.thread.of(address, contact_ids):
                    return found.thread.thread_id
        for chat_id in token_chats:
            thread_ = self.tokens.get(chat_id)
            if thread_ is not None and thread_.of(address, contact_ids):
                return thread_.thread_id
        return thread_for_new(address, own)

    def opened_by(self, message: InboundMessage, address: str | None) -> None:
        self.opened.setdefault(message.external_id, []).append((message.thread_id, address))


def _token_chats(connector: email.EmailConnector, integration: Integration,
                 parsed: ParsedEmail) -> list[str]:
    domain = integration.config.get("reply_domain")
    found = (email.token_chat(connector.secret, a, str(domain) if domain else None)
             for a in (*parsed.to, *parsed.cc, *parsed.delivered_to))
    return list(dict.fromkeys(c for c in found if c is not None))


def _named(parsed: ParsedEmail) -> list[str]:
    ids = [parsed.message_id, *parsed.in_reply_to, *parsed.references]
    if parsed.bounce is not None and parsed.bounce.original_message_id:
        ids.append(parsed.bounce.original_message_id)
    return [email.key(i) for i in ids]


async def build(ctx: Any, connector: email.EmailConnector, integration: Integration,
                fetched: Sequence[Fetched], uidvalidity: int) -> Built:
    """`fetched` (ascending UIDs) as the batch to deliver."""
    settings = ctx.settings
    parsed: list[tuple[Fetched, ParsedEmail]] = []
    built = Built(Batch())
    for item in fetched:
        try:
            parsed.append((item, await parse(item, settings.max_attachment_bytes)))
        except Exception as exc:  # a parser bug must not block the mailbox
            log.exception("email %s: uid %s not parsed", integration.id, item.uid)
            built.skipped.append(Skipped(item.uid, f"not parsed: {type(exc).__name__}: {exc}"))
    tokens = {p.message_id: _token_chats(connector, integration, p) for _, p in parsed}
    async with ctx.db.tenant_tx(integration.org_id) as conn:
        known = await email_threads.known(conn, integration.id,
                                          [i for _, p in parsed for i in _named(p)])
        chats = await email_threads.chats(conn, integration.id,
                                          [c for found in tokens.values() for c in found])
    threads = Threads(known, chats)
    own_address = str(integration.config.get("address") or "").lower()
    messages: list[InboundMessage] = []
    statuses: list[StatusUpdate] = []
    ignored: list[str] = []
    for item, mail in parsed:
        if mail.bounce is not None:
            ignored.extend(_bounce(integration, mail, known, statuses))
            continue
        if mail.from_address and mail.from_address == own_address:
            ignored.append(f"uid {item.uid}: from the mailbox's own address")
            continue
        attachments = await keep_files(Path(settings.data_dir), integration.org_id,
                                       mail.attachments)
        probe = email.inbound(integration, mail, "", attachments, uid=item.uid,
                              uidvalidity=uidvalidity)
        contact_ids = [contact_id_for(probe), *alias_ids(probe)]
        message = msgspec.structs.replace(
            probe, thread_id=threads.resolve(mail, tokens[mail.message_id], contact_ids))
        threads.opened_by(message, mail.from_address)
        messages.append(message)
        built.uids.append(item.uid)
    built.batch = Batch(messages=tuple(messages), statuses=tuple(statuses),
                        ignored=tuple(ignored))
    return built


def _bounce(integration: Integration, mail: ParsedEmail, known: dict[str, list[Known]],
            statuses: list[StatusUpdate]) -> list[str]:
    bounce = mail.bounce
    assert bounce is not None
    original = email.key(bounce.original_message_id) if bounce.original_message_id else None
    if bounce.action and bounce.action.lower() not in ("failed", ""):
        return [f"a delivery report ({bounce.action}) for {original}"]
    ours = [k for k in known.get(original or "", ()) if not k.is_incoming]
    if original is None or not ours:
        return [f"a bounce of a message not ours or not known: {original}"]
    statuses.append(email.bounce_status(integration, mail, ours[0].thread.thread_id, original))
    return []
