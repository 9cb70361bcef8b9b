"""A Telegram bot through the running engine, with the real python-telegram-bot
client talking to a fake Bot API server: connecting it (getMe, setWebhook
with a secret token), its webhook (secret checked before anything is stored,
200 only after COMMIT and again for a redelivery), edits kept as revisions,
a blocked bot failing sends fast, replies split for Telegram, and switching
it off (deleteWebhook)."""
from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from storage.db import Database
from tests.conftest import Account, register
from tests.fakes import telegram_updates as tg
from tests.fakes.telegram import FakeTelegram
from tests.serve.telegram_bots import connect
from tests.waiting import eventually

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


async def post_update(api: httpx.AsyncClient, integration_id: str, update: dict[str, Any],
                      secret: str | None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    return await api.post(f"/v1/channels/telegram/{integration_id}/webhook",
                          content=json.dumps(update), headers=headers)


async def chat_of(api: httpx.AsyncClient, owner: Account) -> dict[str, Any]:
    (chat,) = (await api.get("/v1/chats?channel=telegram", headers=owner.headers)).json()["data"]
    return dict(chat)


async def opened(api: httpx.AsyncClient, owner: Account, fake: FakeTelegram,
                 first: dict[str, Any]) -> tuple[dict[str, Any], str, str, dict[str, Any]]:
    """A bot whose first update `first` opened a chat: the integration, the
    bot token, the webhook's secret and the chat."""
    created, token, secret = await connect(api, owner, fake)
    assert (await post_update(api, created["id"], first, secret)).status_code == 200
    return created, token, secret, await chat_of(api, owner)


async def history(api: httpx.AsyncClient, owner: Account, chat_id: str) -> list[dict[str, Any]]:
    resp = await api.get(f"/v1/chats/{chat_id}/messages", headers=owner.headers)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["data"])


async def test_connecting_a_bot_sets_its_webhook_and_keeps_its_secrets(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram) -> None:
    created, token, secret = await connect(api, owner, fake)
    assert created["type"] == "telegram" and created["config"]["mode"] == "webhook"
    assert created["config"]["bot_username"].startswith("bot_")
    assert created["webhook_url"].endswith(
        f"/v1/channels/telegram/{created['id']}/webhook")
    (call,) = fake.calls_of(token, "setWebhook")
    assert call.params["url"] == created["webhook_url"] and len(secret) >= 32
    assert set(call.params["allowed_updates"]) >= {"message", "edited_message",
                                                   "callback_query", "my_chat_member"}
    shown = (await api.get(f"/v1/integrations/{created['id']}", headers=owner.headers)).text
    assert token not in shown and secret not in shown and "secrets" not in shown
    # Another org sees nothing of it.
    stranger = await register(api)
    assert (await api.get(f"/v1/integrations/{created['id']}",
                          headers=stranger.headers)).status_code == 404


async def test_a_token_telegram_refuses_is_a_422_and_stores_nothing(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram) -> None:
    resp = await api.post("/v1/integrations", headers=owner.headers, json={
        "type": "telegram", "name": "Bot", "config": {
            "bot_token": f"123456:{'x' * 35}", "mode": "webhook", "api_base_url": fake.url}})
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["details"]["field"] == "config.bot_token"
    malformed = await api.post("/v1/integrations", headers=owner.headers, json={
        "type": "telegram", "name": "Bot", "config": {"bot_token": "nope", "mode": "webhook"}})
    assert malformed.status_code == 422
    listed = (await api.get("/v1/integrations", headers=owner.headers)).json()
    assert listed["total"] == 0


async def test_the_webhook_checks_its_secret_then_stores_once(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram) -> None:
    created, _, secret = await connect(api, owner, fake)
    update = tg.private_text("Hello, do you ship to Lisbon?")
    for wrong in (None, "", secret[:-1] + ("A" if secret[-1] != "A" else "B")):
        refused = await post_update(api, created["id"], update, wrong)
        assert refused.status_code == 401, refused.text
    assert (await api.get("/v1/chats?channel=telegram",
                          headers=owner.headers)).json()["total"] == 0
    assert (await post_update(api, created["id"], update, secret)).status_code == 200
    again = await post_update(api, created["id"], update, secret)  # Telegram retried
    assert again.status_code == 200
    chat = await chat_of(api, owner)
    assert chat["channel_thread_id"] == str(update["message"]["chat"]["id"])
    (message,) = await history(api, owner, chat["id"])
    assert message["content"] == "Hello, do you ship to Lisbon?" and message["is_incoming"]
    contact = (await api.get(f"/v1/contacts/{chat['contact_id']}", headers=owner.headers)).json()
    assert contact["first_name"].startswith("Ada") and contact["source"] == "telegram"
    bad = await api.post(f"/v1/channels/telegram/{created['id']}/webhook", content=b"{nope",
                         headers={SECRET_HEADER: secret, "content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "malformed_json"
    unknown = await post_update(api, created["id"], {"update_id": 9, "poll": {"id": "1"}},
                                secret)
    assert unknown.status_code == 200  # acknowledged, never a 500
    assert (await post_update(api, str(uuid.uuid4()), update, secret)).status_code == 404


async def test_an_edit_is_a_revision_beside_the_original(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram) -> None:
    created, _, secret = await connect(api, owner, fake)
    original = tg.private_text("Meet at 10?")
    assert (await post_update(api, created["id"], original, secret)).status_code == 200
    edit = tg.edited_message(original, "Meet at 11?")
    assert (await post_update(api, created["id"], edit, secret)).status_code == 200
    assert (await post_update(api, created["id"], edit, secret)).status_code == 200
    chat = await chat_of(api, owner)
    (message,) = await history(api, owner, chat["id"])
    assert message["content"] == "Meet at 10?"
    assert [r["content"] for r in message["revisions"]] == ["Meet at 11?"]
    assert message["edited_at"] is not None


async def test_a_blocked_bot_fails_sends_fast_and_replies_are_split(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram) -> None:
    first = tg.private_text("Can you send the full terms?")
    created, token, secret, chat = await opened(api, owner, fake, first)
    long_text = " ".join(f"clause-{n}" for n in range(1200))  # 13,289 characters
    sent = await api.post(f"/v1/chats/{chat['id']}/messages", headers=owner.headers,
                          json={"content": long_text})
    assert sent.status_code == 202, sent.status_code

    async def delivered() -> bool:
        rows = await history(api, owner, chat["id"])
        return any(r["id"] == sent.json()["id"] and r["status"] == "sent" for r in rows)

    await eventually(delivered, what="the reply sent")
    parts = [c.params["text"] for c in fake.calls_of(token, "sendMessage")]
    assert len(long_text) == 13_289
    assert len(parts) == 4 and all(len(p) <= 4096 for p in parts)
    assert " ".join(parts) == long_text  # in order, cut between words
    # The user blocks the bot: Telegram says so, and sends stop at once.
    blocked = tg.my_chat_member("kicked", of=first["message"]["from"])
    assert (await post_update(api, created["id"], blocked, secret)).status_code == 200
    refused = await api.post(f"/v1/chats/{chat['id']}/messages", headers=owner.headers,
                             json={"content": "are you there?"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "recipient_unreachable"
    assert (await chat_of(api, owner))["unreachable_reason"]
    assert len(fake.calls_of(token, "sendMessage")) == 4


async def test_switching_a_bot_off_deletes_its_webhook(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram) -> None:
    created, token, _ = await connect(api, owner, fake)
    off = await api.patch(f"/v1/integrations/{created['id']}", headers=owner.headers,
                          json={"is_active": False})
    assert off.status_code == 200, off.text
    assert len(fake.calls_of(token, "deleteWebhook")) == 1
    on = await api.patch(f"/v1/integrations/{created['id']}", headers=owner.headers,
                         json={"is_active": True})
    assert on.status_code == 200
    assert len(fake.calls_of(token, "setWebhook")) == 2
    rotate = await api.post(f"/v1/integrations/{created['id']}/rotate-secret",
                            headers=owner.headers)
    assert rotate.status_code == 422  # a bot has no signing secret
    assert (await api.delete(f"/v1/integrations/{created['id']}",
                             headers=owner.headers)).status_code == 204
    assert len(fake.calls_of(token, "deleteWebhook")) == 2


async def test_a_group_is_one_chat_with_each_member_a_contact(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram) -> None:
    created, _, secret = await connect(api, owner, fake)
    texts = tg.group_texts()
    for update in texts:
        assert (await post_update(api, created["id"], update, secret)).status_code == 200
    chat = await chat_of(api, owner)
    assert chat["title"] == "Sales team" and chat["channel_thread_id"] == str(
        texts[0]["message"]["chat"]["id"])
    rows = list(reversed(await history(api, owner, chat["id"])))
    assert [r["content"] for r in rows] == [u["message"]["text"] for u in texts]
    senders = [r["sender_id"] for r in rows]
    assert len(set(senders)) == 3
    contacts = [(await api.get(f"/v1/contacts/{s}", headers=owner.headers)).json()
                for s in senders]
    assert [c["first_name"] for c in contacts] == ["Grace Hopper", "Alan Turing", "Ляля"]
    assert [c["telegram_username"] for c in contacts] == ["grace", "alan_t", None]
    # Grace renames herself on Telegram; Alan's name was edited in the CRM.
    edited = await api.patch(f"/v1/contacts/{senders[1]}", headers=owner.headers,
                             json={"first_name": "Alan M."})
    assert edited.status_code == 200, edited.text
    group = texts[0]["message"]["chat"]
    grace = tg.user(201, "Grace B.", "Hopper", "amazing_grace")
    alan = tg.user(202, "Alan", "Turing", "alan_t")
    for who in (grace, alan):
        later = tg.update("message", tg.message(group, who, f"later from {who['first_name']}"))
        assert (await post_update(api, created["id"], later, secret)).status_code == 200
    renamed = (await api.get(f"/v1/contacts/{senders[0]}", headers=owner.headers)).json()
    assert renamed["first_name"] == "Grace B. Hopper"
    assert renamed["telegram_username"] == "amazing_grace"
    kept = (await api.get(f"/v1/contacts/{senders[1]}", headers=owner.headers)).json()
    assert kept["first_name"] == "Alan M."


async def test_a_reply_names_the_message_it_answers(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram) -> None:
    created, _, secret = await connect(api, owner, fake)
    question = tg.private_text("Which plan?")
    answer = tg.reply(question, "The Pro one")
    for update in (question, answer):
        assert (await post_update(api, created["id"], update, secret)).status_code == 200
    chat = await chat_of(api, owner)
    newest, oldest = await history(api, owner, chat["id"])
    assert newest["metadata"]["reply_to"]["message_id"] == oldest["id"]


async def test_files_are_kept_as_attachments_and_fetched_within_the_cap(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram) -> None:
    created, _, secret = await connect(api, owner, fake)
    pdf = b"%PDF-1.7 price list " + bytes(range(256)) * 40
    document = tg.document("price list.pdf", file_id=fake.add_file(pdf, "documents/file_7.pdf"))
    huge = tg.document("backup.zip", file_id=fake.add_file(
        b"PK", "documents/file_8.zip", reported_size=25 * 1024 * 1024))
    picture = tg.photo(caption="Our shop front")  # ids Telegram no longer has
    for update in (document, huge, picture):
        assert (await post_update(api, created["id"], update, secret)).status_code == 200
    chat = await chat_of(api, owner)

    async def settled() -> list[dict[str, Any]] | None:
        rows = await history(api, owner, chat["id"])
        files = [a for r in rows for a in r["attachments"]]
        done = len(files) == 3 and all(a["stored"] or a["error"] for a in files)
        return rows if done else None

    rows = await eventually(settled, what="the files fetched")
    everything = {a["name"]: a for r in rows for a in r["attachments"]}
    stored = everything["price list.pdf"]
    assert stored["stored"] and stored["kind"] == "document", everything
    assert stored["mime_type"] == "application/pdf"
    got = await api.get(f"/v1/attachments/{stored['id']}", headers=owner.headers)
    assert got.status_code == 200 and got.content == pdf
    too_big = everything["backup.zip"]
    assert not too_big["stored"] and "too_large" in too_big["error"], too_big
    (shop,) = [r for r in rows if r["content"] == "Our shop front"]
    assert shop["attachments"][0]["kind"] == "photo" and shop["attachments"][0]["error"]
    missing = await api.get(f"/v1/attachments/{too_big['id']}", headers=owner.headers)
    assert missing.status_code == 404 and "too_large" in missing.json()["error"]["message"]
    stranger = await register(api)
    assert (await api.get(f"/v1/attachments/{stored['id']}",
                          headers=stranger.headers)).status_code == 404


async def test_buttons_topics_channels_and_odd_input_are_handled(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram) -> None:
    created, token, secret = await connect(api, owner, fake)
    press = tg.callback_query("plan:pro")
    topic = tg.topic_message("Question about the demo", thread=17)
    post = tg.channel_post("New release is out")
    emoji = tg.private_text("x" * 10_000, sender=tg.user(404, "🦄🦄", language_code=None))
    for update in (press, topic, post, emoji):
        assert (await post_update(api, created["id"], update, secret)).status_code == 200
    (answered,) = fake.calls_of(token, "answerCallbackQuery")
    assert answered.params["callback_query_id"] == press["callback_query"]["id"]
    listed = (await api.get("/v1/chats?channel=telegram&limit=10",
                            headers=owner.headers)).json()["data"]
    by_thread = {c["channel_thread_id"]: c for c in listed}
    chat_id = topic["message"]["chat"]["id"]
    assert f"{chat_id}:17" in by_thread  # a forum topic is a thread of its own
    assert by_thread[f"{chat_id}:17"]["title"] == "Support"
    assert str(post["channel_post"]["chat"]["id"]) in by_thread
    pressed = await history(api, owner, by_thread[str(press["callback_query"]["from"]["id"])]["id"])
    assert pressed[0]["content"] == "plan:pro"
    (long,) = await history(api, owner, by_thread["404"]["id"])
    assert len(long["content"]) == 10_000  # kept whole: only replies are split
    contact = (await api.get(f"/v1/contacts/{long['sender_id']}", headers=owner.headers)).json()
    assert contact["first_name"] == "🦄🦄" and contact["telegram_username"] is None


async def test_a_telegram_contact_merged_into_a_crm_contact_stays_merged(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram) -> None:
    created, _, secret = await connect(api, owner, fake)
    crm = (await api.post("/v1/contacts", headers=owner.headers, json={
        "first_name": "Ada", "last_name": "King", "email": "ada@example.com",
        "tags": ["lead"]})).json()
    sender = tg.user(777, "Ada", "Lovelace", "ada_l")
    first = tg.private_text("Hi, it's Ada", sender=sender)
    assert (await post_update(api, created["id"], first, secret)).status_code == 200
    chat = await chat_of(api, owner)
    telegram_contact = chat["contact_id"]
    stranger = await register(api)
    crossed = await api.post(f"/v1/contacts/{telegram_contact}/merge",
                             headers=stranger.headers, json={"into": crm["id"]})
    assert crossed.status_code == 404  # another org's ids are not there
    merged = await api.post(f"/v1/contacts/{telegram_contact}/merge", headers=owner.headers,
                            json={"into": crm["id"]})
    assert merged.status_code == 200, merged.text
    kept = merged.json()
    assert kept["id"] == crm["id"] and kept["last_name"] == "King"  # its own values win
    assert kept["telegram_username"] == "ada_l" and kept["email"] == "ada@example.com"
    assert (await api.get(f"/v1/contacts/{telegram_contact}",
                          headers=owner.headers)).status_code == 404
    assert (await chat_of(api, owner))["contact_id"] == crm["id"]
    # She writes again: the same chat, the kept contact, no new contact.
    again = tg.private_text("Any news?", sender=sender)
    assert (await post_update(api, created["id"], again, secret)).status_code == 200
    newest, oldest = await history(api, owner, chat["id"])
    assert newest["sender_id"] == oldest["sender_id"] == crm["id"]
    listed = (await api.get("/v1/contacts", headers=owner.headers)).json()
    assert listed["total"] == 1
    itself = await api.post(f"/v1/contacts/{crm['id']}/merge", headers=owner.headers,
                            json={"into": crm["id"]})
    assert itself.status_code == 422


async def test_a_revoked_token_fails_the_send_and_shows_on_the_integration(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram) -> None:
    created, token, secret = await connect(api, owner, fake)
    assert (await post_update(api, created["id"], tg.private_text("hi"), secret)).status_code \
        == 200
    chat = await chat_of(api, owner)
    fake.fail(token, "sendMessage", 401, "Unauthorized")  # the owner revoked the token
    sent = await api.post(f"/v1/chats/{chat['id']}/messages", headers=owner.headers,
                          json={"content": "hello?"})
    assert sent.status_code == 202

    async def failing() -> dict[str, Any] | None:
        shown = (await api.get(f"/v1/integrations/{created['id']}",
                               headers=owner.headers)).json()
        return shown if shown.get("error") else None

    shown = await eventually(failing, what="the integration marked failing")
    assert "refused" in shown["error"] and shown["error_at"]
    (row,) = [r for r in await history(api, owner, chat["id"]) if r["id"] == sent.json()["id"]]
    assert row["status"] == "failed"  # final: no retry with a token that cannot work


async def test_a_reply_is_threaded_at_telegram(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram) -> None:
    question = tg.private_text("Do you have it in blue?")
    created, token, secret, chat = await opened(api, owner, fake, question)
    (incoming,) = await history(api, owner, chat["id"])
    sent = await api.post(f"/v1/chats/{chat['id']}/messages", headers=owner.headers,
                          json={"content": "Yes, in blue and green.", "reply_to": incoming["id"]})
    assert sent.status_code == 202, sent.text
    await eventually(lambda: fake.calls_of(token, "sendMessage"), what="the reply sent")
    (call,) = fake.calls_of(token, "sendMessage")
    assert call.params["reply_parameters"]["message_id"] == question["message"]["message_id"]
    other = await connect(api, await register(api), fake)
    elsewhere = await api.post(f"/v1/chats/{chat['id']}/messages", headers=owner.headers,
                               json={"content": "x", "reply_to": other[0]["id"]})
    assert elsewhere.status_code == 422  # not a message of this chat


async def test_a_photo_with_a_caption_is_an_attachment_with_its_file(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram) -> None:
    created, _, secret = await connect(api, owner, fake)
    jpeg = b"\xff\xd8\xff\xe0" + b"JFIF shop front" * 500
    file_id = fake.add_file(jpeg, "photos/file_3.jpg")
    picture = tg.photo(caption="Our shop front")
    picture["message"]["photo"][-1]["file_id"] = file_id  # the largest size: the one kept
    assert (await post_update(api, created["id"], picture, secret)).status_code == 200
    chat = await chat_of(api, owner)

    async def fetched() -> dict[str, Any] | None:
        (row,) = await history(api, owner, chat["id"])
        found = row["attachments"]
        return row if found and found[0]["stored"] else None

    row = await eventually(fetched, what="the photo fetched")
    assert row["content"] == "Our shop front"
    (photo,) = row["attachments"]
    assert photo["kind"] == "photo" and photo["size"] == len(jpeg)
    got = await api.get(f"/v1/attachments/{photo['id']}", headers=owner.headers)
    assert got.status_code == 200 and got.content == jpeg


async def test_a_bot_connects_to_one_integration_only(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram) -> None:
    _, token, _ = await connect(api, owner, fake)
    for org in (owner, await register(api)):
        again = await api.post("/v1/integrations", headers=org.headers, json={
            "type": "telegram", "name": "Same bot",
            "config": {"bot_token": token, "mode": "polling", "api_base_url": fake.url}})
        assert again.status_code == 409, again.text
        assert "connected already" in again.json()["error"]["message"]


async def test_a_split_reply_retried_midway_sends_each_part_once(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram) -> None:
    created, token, secret, chat = await opened(api, owner, fake, tg.private_text("Terms?"))
    long_text = " ".join(f"term-{n}" for n in range(1500))  # four parts
    fake.delay(token, "sendMessage", 0)  # the first part goes out...
    fake.fail(token, "sendMessage", 429, retry_after=1)  # ...the second is flooded
    sent = await api.post(f"/v1/chats/{chat['id']}/messages", headers=owner.headers,
                          json={"content": long_text})
    assert sent.status_code == 202

    async def delivered() -> bool:
        rows = await history(api, owner, chat["id"])
        return any(r["id"] == sent.json()["id"] and r["status"] == "sent" for r in rows)

    await eventually(delivered, what="the reply sent")
    texts = [c.params["text"] for c in fake.calls_of(token, "sendMessage")]
    assert len(texts) == 5, [t[:12] for t in texts]  # four parts and one retry
    first, flooded, *rest = texts
    assert flooded == rest[0]  # the second part again, the first not
    assert " ".join([first, *rest]) == long_text


async def test_a_file_a_dying_host_left_unfetched_is_fetched_later(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram, db: Database) -> None:
    content = b"%PDF-1.7 contract " * 100
    document = tg.document("contract.pdf", file_id=fake.add_file(content, "documents/c.pdf"))
    created, _, secret, chat = await opened(api, owner, fake, document)

    async def stored() -> dict[str, Any] | None:
        (row,) = await history(api, owner, chat["id"])
        return row["attachments"][0] if row["attachments"][0]["stored"] else None

    first = await eventually(stored, what="the file fetched")
    # As a host killed mid-fetch leaves it: a reference, no file, no error,
    # stored long enough ago that its chat is not about to fetch it.
    async with db.tenant_tx(owner.org_id) as conn:
        await conn.execute(
            "UPDATE message_attachments SET stored_at = NULL, file_url = 'telegram-file:x',"
            " created_at = localtimestamp - interval '10 minutes' WHERE id = $1",
            uuid.UUID(first["id"]))
    await eventually(stored, timeout=30, what="the sweeper's nudge fetching it again")
    got = await api.get(f"/v1/attachments/{first['id']}", headers=owner.headers)
    assert got.status_code == 200 and got.content == content


async def test_a_bot_telegram_refuses_can_still_be_switched_off_and_deleted(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram) -> None:
    """Switching off or deleting does not depend on Telegram's answer (the
    token revoked); a switch to polling, which needs the webhook gone, does."""
    off, off_token, off_secret = await connect(api, owner, fake)
    gone, gone_token, _ = await connect(api, owner, fake)
    for token in (off_token, gone_token):
        fake.fail(token, "deleteWebhook", 401, "Unauthorized", times=5)
    polling = await api.patch(f"/v1/integrations/{off['id']}", headers=owner.headers,
                              json={"config": {"mode": "polling"}})
    assert polling.status_code == 502 and polling.json()["error"]["code"] == "provider_error"
    kept = (await api.get(f"/v1/integrations/{off['id']}", headers=owner.headers)).json()
    assert kept["config"]["mode"] == "webhook" and kept["is_active"] is True
    switched = await api.patch(f"/v1/integrations/{off['id']}", headers=owner.headers,
                               json={"is_active": False})
    assert switched.status_code == 200 and switched.json()["is_active"] is False
    refused = await post_update(api, off["id"], tg.private_text("still there?"), off_secret)
    assert refused.status_code == 404  # what Telegram still posts finds nothing
    assert (await api.delete(f"/v1/integrations/{gone['id']}",
                             headers=owner.headers)).status_code == 204
    assert (await api.get(f"/v1/integrations/{gone['id']}",
                          headers=owner.headers)).status_code == 404
    assert len(fake.calls_of(gone_token, "deleteWebhook")) == 1  # it was asked, once
