"""Connecting a mailbox of the test Dovecot (tests/peers/dovecot.py), with
the aiosmtpd peer (tests/peers/smtp.py) as its SMTP server, to an org as a
user of the API would; writing mail into it as a correspondent would; and
reading back what the engine stored."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import httpx

from storage.db import Database
from tests.conftest import Account
from tests.peers.dovecot import Dovecot, MailUser
from tests.peers.smtp import SmtpPeer

REPLY_DOMAIN = "replies.bidi.test"


def config(dovecot: Dovecot, smtp: SmtpPeer, user: MailUser, smtp_login: tuple[str, str],
           **extra: Any) -> dict[str, Any]:
    return {"address": user.address,
            "imap": {"host": dovecot.host, "port": dovecot.port, "tls": "none",
                     "username": user.address, "password": user.password},
            "smtp": {"host": smtp.host, "port": smtp.port, "tls": "none",
                     "username": smtp_login[0], "password": smtp_login[1]},
            "reply_domain": REPLY_DOMAIN, **extra}


async def connect(api: httpx.AsyncClient, owner: Account, dovecot: Dovecot, smtp: SmtpPeer,
                  **extra: Any) -> tuple[dict[str, Any], MailUser]:
    """A new mailbox connected as an email integration: its JSON and its user."""
    user = dovecot.add_user(password=f"pw-{uuid.uuid4().hex[:12]}")
    resp = await api.post("/v1/integrations", headers=owner.headers, json={
        "type": "email", "name": "Sales inbox",
        "config": config(dovecot, smtp, user, smtp.add_user(), **extra)})
    assert resp.status_code == 201, resp.text
    return resp.json(), user


def mail(sender: str, to: str, subject: str, text: str, *, message_id: str | None = None,
         in_reply_to: str | None = None, references: list[str] | None = None,
         name: str | None = None, date: datetime | None = None,
         headers: dict[str, str] | None = None) -> tuple[bytes, str]:
    """A plain message as a correspondent's client writes it, and its Message-ID."""
    message = EmailMessage()
    message["From"] = f"{name} <{sender}>" if name else sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(date or datetime.now(UTC))
    message_id = message_id or make_msgid(domain="client.test")
    message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    if references:
        message["References"] = " ".join(references)
    for header, value in (headers or {}).items():
        message[header] = value
    message.set_content(text)
    return message.as_bytes(), message_id


def person() -> str:
    return f"buyer-{uuid.uuid4().hex[:10]}@client.test"


async def chats_of(db: Database, owner: Account) -> list[dict[str, Any]]:
    """The org's email chats with their messages (oldest first)."""
    async with db.tenant_tx(owner.org_id) as conn:
        rows = await conn.fetch(
            "SELECT c.id AS chat_id, c.title, ct.email AS contact_email, m.content,"
            " m.is_incoming, m.status, m.external_id, m.metadata"
            " FROM chats c JOIN messages m ON m.chat_id = c.id"
            " LEFT JOIN contacts ct ON ct.id = c.contact_id"
            " WHERE c.channel = 'email' ORDER BY m.created_at, m.id")
    found: dict[str, dict[str, Any]] = {}
    for r in rows:
        chat = found.setdefault(str(r["chat_id"]), {"id": str(r["chat_id"]), "title": r["title"],
                                                    "contact": r["contact_email"],
                                                    "messages": []})
        chat["messages"].append(dict(r))
    return list(found.values())


async def inbound_count(db: Database, owner: Account) -> int:
    async with db.tenant_tx(owner.org_id) as conn:
        return int(await conn.fetchval(
            "SELECT count(*) FROM messages WHERE is_incoming"))


async def settled(db: Database, owner: Account, message_id: str) -> dict[str, Any] | None:
    """Our message `message_id` once no longer pending (status, attempts,
    external id, metadata), else None."""
    async with db.tenant_tx(owner.org_id) as conn:
        row = await conn.fetchrow("SELECT status, delivery_attempts, external_id, metadata"
                                  " FROM messages WHERE id = $1::uuid", message_id)
    return dict(row) if row is not None and row["status"] != "pending" else None
