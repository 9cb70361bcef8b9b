"""A resident chat actor whose contact (and so, by cascade, its chat) is
deleted under it: the next inbound messages recreate contact and chat and
are stored, a redelivered one included, instead of failing for as long as
the actor stays resident."""
from __future__ import annotations

import uuid

import httpx

from storage.db import Database
from tests.conftest import Account
from tests.serve.messaging import make_inbox, message, post_inbound


async def _stored(db: Database, owner: Account, message_id: str) -> tuple[str, str] | None:
    async with db.tenant_tx(owner.org_id) as conn:
        row = await conn.fetchrow(
            "SELECT m.content, ct.first_name FROM messages m JOIN chats c ON c.id = m.chat_id"
            " JOIN contacts ct ON ct.id = c.contact_id WHERE m.id = $1", uuid.UUID(message_id))
    return None if row is None else (row["content"], row["first_name"])


async def test_inbound_after_the_contact_is_deleted_recreates_contact_and_chat(
        api: httpx.AsyncClient, owner: Account, db: Database) -> None:
    inbox = await make_inbox(api, owner)
    first = message(thread="deleted-later", text="first")
    resp = await post_inbound(api, inbox, first)
    assert resp.status_code == 202, resp.text
    chat_id = resp.json()["chat_id"]
    chat = (await api.get(f"/v1/chats/{chat_id}", headers=owner.headers)).json()
    deleted = await api.delete(f"/v1/contacts/{chat['contact_id']}", headers=owner.headers)
    assert deleted.status_code == 204
    assert (await api.get(f"/v1/chats/{chat_id}", headers=owner.headers)).status_code == 404

    # The same message again (a redelivery), then a new one: the actor is
    # still resident and remembers both the chat and the first message.
    again = await post_inbound(api, inbox, first)
    assert again.status_code == 202, again.text
    assert again.json() == {"id": resp.json()["id"], "chat_id": chat_id, "duplicate": False}
    later = await post_inbound(api, inbox, message(thread="deleted-later", text="second"))
    assert later.status_code == 202, later.text
    assert later.json()["chat_id"] == chat_id and later.json()["duplicate"] is False

    assert await _stored(db, owner, again.json()["id"]) == ("first", "Grace Hopper")
    assert await _stored(db, owner, later.json()["id"]) == ("second", "Grace Hopper")
    chat = (await api.get(f"/v1/chats/{chat_id}", headers=owner.headers)).json()
    assert chat["unread_count"] == 2 and chat["last_message"]["content"] == "second"
    history = (await api.get(f"/v1/chats/{chat_id}/messages", headers=owner.headers)).json()
    assert [m["content"] for m in history["data"]] == ["second", "first"]
    # ...and a copy of the recreated message is a duplicate again.
    copy = await post_inbound(api, inbox, first)
    assert copy.status_code == 202 and copy.json()["duplicate"] is True


async def test_a_new_message_first_after_the_delete_is_stored(
        api: httpx.AsyncClient, owner: Account, db: Database) -> None:
    inbox = await make_inbox(api, owner)
    resp = await post_inbound(api, inbox, message(thread="gone", text="before"))
    assert resp.status_code == 202, resp.text
    chat = (await api.get(f"/v1/chats/{resp.json()['chat_id']}", headers=owner.headers)).json()
    assert (await api.delete(f"/v1/contacts/{chat['contact_id']}",
                             headers=owner.headers)).status_code == 204
    after = await post_inbound(api, inbox, message(thread="gone", text="after"))
    assert after.status_code == 202, after.text
    assert await _stored(db, owner, after.json()["id"]) == ("after", "Grace Hopper")
    chats = (await api.get("/v1/chats", headers=owner.headers)).json()
    assert chats["total"] == 1 and chats["data"][0]["unread_count"] == 1
