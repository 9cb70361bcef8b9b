"""ChatActor: one conversation's hot state (recent messages, unread count,
contact, assigned agent, last inbound time), loaded in batches on activation."""
from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from actors.messages import GetState, Ping
from actors.runtime.actor import VirtualActor, on
from core.errors import Invalid, NotFound
from storage.loader import BatchLoader

RECENT = 20
Key = tuple[str, str]  # (org_id, chat_id)

CHAT_SQL = f"""
SELECT c.id, c.contact_id, c.channel, c.channel_thread_id, c.last_message_at,
       c.last_inbound_at, c.metadata,
       (SELECT count(*) FROM messages m
         WHERE m.chat_id = c.id AND m.is_incoming AND NOT m.is_read) AS unread,
       (SELECT coalesce(jsonb_agg(r ORDER BY r.created_at, r.id), '[]'::jsonb) FROM (
          SELECT m.id, m.sender_type, m.content, m.is_incoming, m.status, m.created_at
          FROM messages m WHERE m.chat_id = c.id
          ORDER BY m.created_at DESC, m.id DESC LIMIT {RECENT}) r) AS recent
FROM chats c WHERE c.id = ANY($1::uuid[])
"""


def chat_loader(actor: VirtualActor) -> BatchLoader[Key, dict[str, Any]]:
    db = actor.ctx.db

    async def fetch(keys: Sequence[Key]) -> dict[Key, dict[str, Any]]:
        by_org: dict[str, list[str]] = {}
        for org_id, chat_id in keys:
            by_org.setdefault(org_id, []).append(chat_id)
        found: dict[Key, dict[str, Any]] = {}
        assert db is not None
        for org_id, chat_ids in by_org.items():
            async with db.tenant_tx(org_id) as conn:
                for row in await conn.fetch(CHAT_SQL, chat_ids):
                    found[(org_id, str(row["id"]))] = dict(row)
        return found

    return BatchLoader(fetch)


class ChatActor(VirtualActor):
    kind = "chat"
    __slots__ = ("contact_id", "channel", "thread_id", "unread", "last_message_at",
                 "last_inbound_at", "assigned_agent_id", "recent", "touches")

    async def on_activate(self) -> None:
        try:
            UUID(self.key), UUID(self.org_id)
        except ValueError:
            raise Invalid(f"chat key {self.key!r} is not a UUID") from None
        loader = self.ctx.loader("chat", lambda: chat_loader(self))
        row = await loader.load((self.org_id, self.key))
        if row is None:
            raise NotFound(f"chat {self.key} not found")
        self.contact_id = str(row["contact_id"]) if row["contact_id"] else None
        self.channel = row["channel"]
        self.thread_id = row["channel_thread_id"]
        self.unread = int(row["unread"])
        self.last_message_at: datetime | None = row["last_message_at"]
        self.last_inbound_at: datetime | None = row["last_inbound_at"]
        self.assigned_agent_id = (row["metadata"] or {}).get("assigned_agent_id")
        self.recent: deque[dict[str, Any]] | None = (
            deque(row["recent"], maxlen=RECENT) if row["recent"] else None)
        self.touches = 0

    @on(GetState)
    def state(self, _: GetState) -> dict[str, Any]:
        return {
            "chat_id": self.key,
            "organization_id": self.org_id,
            "contact_id": self.contact_id,
            "channel": self.channel,
            "thread_id": self.thread_id,
            "unread": self.unread,
            "last_message_at": self.last_message_at,
            "last_inbound_at": self.last_inbound_at,
            "assigned_agent_id": self.assigned_agent_id,
            "recent": list(self.recent or ()),
            "touches": self.touches,
        }

    @on(Ping)
    def ping(self, message: Ping) -> int:
        self.touches += 1
        return self.touches
