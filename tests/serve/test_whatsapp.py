"""A WhatsApp number through the running engine, with the engine's Graph API
client talking to a fake Graph API server and notifications built and signed
as Meta sends them: connecting a number, the webhook (signature checked on
the raw body before anything is read or stored, 200 only after COMMIT,
redeliveries harmless, routing by phone number id across orgs), statuses,
reactions, the 24-hour window for every kind of sender, templates, read
receipts and refusals from Meta."""
from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from actors.refs import ChatRef
from actors.runtime.client import ActorSystem
from core.errors import WindowClosed
from storage.db import Database
from tests.conftest import Account, register
from tests.fakes import whatsapp_notifications as wa
from tests.fakes.whatsapp import FakeGraph, Number
from tests.serve.messaging import Client
from tests.serve.whatsapp_numbers import APP_HOOK, APP_SECRET, connect, hook, now, post, says
from tests.waiting import eventually


def person(name: str = "Sheena Nelson", **ids: Any) -> dict[str, Any]:
    """A WhatsApp user of their own (a fresh wa_id unless given)."""
    ids.setdefault("wa_id", str(10**10 + uuid.uuid4().int % 9 * 10**10 // 9
                                + uuid.uuid4().int % 10**9))
    return wa.user(name=name, **ids)


async def chats_of(api: httpx.AsyncClient, owner: Account) -> list[dict[str, Any]]:
    resp = await api.get("/v1/chats?channel=whatsapp", headers=owner.headers)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["data"])


async def history(api: httpx.AsyncClient, owner: Account, chat_id: str) -> list[dict[str, Any]]:
    resp = await api.get(f"/v1/chats/{chat_id}/messages", headers=owner.headers)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["data"])


async def opened(api: httpx.AsyncClient, owner: Account, fake: FakeGraph,
                 who: dict[str, Any] | None = None
                 ) -> tuple[dict[str, Any], Number, dict[str, Any], dict[str, Any]]:
    """A number whose first message opened a chat: (integration, number,
    the person, the chat)."""
    integration, number = await connect(api, owner, fake)
    who = who or person()
    resp = await post(api, hook(integration), says("Hi there", who, number))
    assert resp.status_code == 200, resp.text
    (chat,) = await chats_of(api, owner)
    return integration, number, who, chat


async def reply(api: httpx.AsyncClient, owner: Account, chat_id: str,
                body: dict[str, Any]) -> httpx.Response:
    return await api.post(f"/v1/chats/{chat_id}/messages", headers=owner.headers, json=body)


async def stored(db: Database, owner: Account, message_id: str) -> dict[str, Any]:
    async with db.tenant_tx(owner.org_id) as conn:
        row = await conn.fetchrow("SELECT status, external_id, metadata FROM messages"
                                  " WHERE id = $1", uuid.UUID(message_id))
    assert row is not None
    return dict(row)


async def settled(db: Database, owner: Account, message_id: str,
                  status: str = "sent") -> dict[str, Any]:
    """The message once its status is `status` (read from Postgres)."""
    async def done() -> dict[str, Any] | None:
        row = await stored(db, owner, message_id)
        return row if row["status"] == status else None

    found: dict[str, Any] = await eventually(done, timeout=30, what=f"{message_id} {status}")
    return found


async def test_connecting_a_number_checks_it_at_meta_and_keeps_its_secrets(
        api: httpx.AsyncClient, owner: Account, fake_graph: FakeGraph) -> None:
    integration, number = await connect(api, owner, fake_graph, verify_token="vt-" + "9" * 20)
    config = integration["config"]
    assert config["phone_number_id"] == number.phone_number_id
    assert config["display_phone_number"] == number.display_phone_number
    assert integration["webhook_url"].endswith(hook(integration))
    assert integration["app_webhook_url"].endswith(APP_HOOK)
    shown = (await api.get(f"/v1/integrations/{integration['id']}", headers=owner.headers)).text
    for secret in (number.access_token, APP_SECRET, "vt-" + "9" * 20, "secrets", "lookup"):
        assert secret not in shown
    stranger = await register(api)
    assert (await api.get(f"/v1/integrations/{integration['id']}",
                          headers=stranger.headers)).status_code == 404
    # Meta refuses the token, or knows no such number: 422 naming it, nothing stored.
    other = fake_graph.add_number()
    for field, config_ in (
            ("config.access_token", {"access_token": "EAAG-wrong",
                                     "phone_number_id": other.phone_number_id}),
            ("config.phone_number_id", {"access_token": other.access_token,
                                        "phone_number_id": "999000111222333"})):
        resp = await api.post("/v1/integrations", headers=owner.headers, json={
            "type": "whatsapp", "name": "x", "config": {
                **config_, "app_secret": APP_SECRET, "verify_token": "v",
                "api_base_url": fake_graph.url}})
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["details"]["field"] == field
    listed = (await api.get("/v1/integrations", headers=owner.headers)).json()
    assert listed["total"] == 1
    # One number is one integration, in any org.
    twice = await api.post("/v1/integrations", headers=stranger.headers, json={
        "type": "whatsapp", "name": "again", "config": {
            "access_token": number.access_token, "app_secret": APP_SECRET,
            "verify_token": "v", "phone_number_id": number.phone_number_id,
            "api_base_url": fake_graph.url}})
    assert twice.status_code == 409, twice.text


async def test_meta_verifies_the_callback_urls_with_the_verify_token(
        api: httpx.AsyncClient, owner: Account, fake_graph: FakeGraph) -> None:
    token = f"verify-{uuid.uuid4().hex}"
    integration, _ = await connect(api, owner, fake_graph, verify_token=token)
    for path in (hook(integration), APP_HOOK):
        ok = await api.get(path, params={"hub.mode": "subscribe", "hub.verify_token": token,
                                         "hub.challenge": "1158201444"})
        assert ok.status_code == 200 and ok.text == "1158201444", (path, ok.text)
        assert ok.headers["content-type"].startswith("text/plain")
        wrong = await api.get(path, params={"hub.mode": "subscribe",
                                            "hub.verify_token": token + "x",
                                            "hub.challenge": "1"})
        assert wrong.status_code == 403, wrong.text
        assert wrong.json()["error"]["code"] == "forbidden"


async def test_a_first_message_opens_a_chat_once_and_only_when_signed(
        api: httpx.AsyncClient, owner: Account, fake_graph: FakeGraph, db: Database) -> None:
    integration, number = await connect(api, owner, fake_graph)
    who = person("Ada Lovelace")
    body = wa.encode(says("Do you ship to Lisbon?", who, number))
    for secret in (None, "not-the-app-secret"):
        refused = await post(api, hook(integration), body, secret)
        assert refused.status_code == 401, refused.text
        assert (await post(api, APP_HOOK, body, secret)).status_code == 401
    assert await chats_of(api, owner) == []
    assert (await post(api, hook(integration), body)).status_code == 200
    for path in (hook(integration), APP_HOOK):  # Meta redelivers, to either URL
        assert (await post(api, path, body)).status_code == 200
    (chat,) = await chats_of(api, owner)
    assert chat["channel_thread_id"] == who["wa_id"]
    (message,) = await history(api, owner, chat["id"])
    assert message["content"] == "Do you ship to Lisbon?" and message["is_incoming"]
    contact = (await api.get(f"/v1/contacts/{chat['contact_id']}", headers=owner.headers)).json()
    assert contact["first_name"] == "Ada Lovelace" and contact["source"] == "whatsapp"
    assert contact["phone"] == "+" + who["wa_id"]
    # The profile name is kept current.
    renamed = dict(who, profile={"name": "Ada King"})
    assert (await post(api, hook(integration), says("Still there?", renamed,
                                                    number))).status_code == 200
    contact = (await api.get(f"/v1/contacts/{chat['contact_id']}", headers=owner.headers)).json()
    assert contact["first_name"] == "Ada King"
    # Bad input: malformed JSON (signed) is a 400, an unknown number a 200 with
    # nothing stored, a huge body a 413.
    junk = b'{"object": "whatsapp_business_account", "entry": [}'
    bad = await post(api, hook(integration), junk)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "malformed_json"
    stray = wa.notification(wa.incoming(who, wa.text("hi", who, timestamp=now()),
                                        phone_number_id="123456789012345"))
    assert (await post(api, APP_HOOK, stray, "any-secret")).status_code == 200
    huge = await post(api, hook(integration), b"{" + b" " * (300 * 1024) + b"}")
    assert huge.status_code == 413, huge.text
    assert len(await history(api, owner, chat["id"])) == 2
    async with db.system_tx() as conn:
        strays = await conn.fetchval(
            "SELECT count(*) FROM messages WHERE content = 'hi' AND metadata->>'thread_id' = $1",
            who["wa_id"])
    assert strays == 0


async def test_a_sender_is_matched_to_a_crm_contact_by_phone_and_known_by_both_ids(
        api: httpx.AsyncClient, owner: Account, fake_graph: FakeGraph) -> None:
    created = await api.post("/v1/contacts", headers=owner.headers, json={
        "first_name": "Grace", "last_name": "Hopper", "phone": "+1 (650) 555-0199"})
    assert created.status_code == 201, created.text
    who = person("Grace H", wa_id="16505550199", user_id="US.13491208655302741918")
    _, number, _, chat = await opened(api, owner, fake_graph, who)
    assert chat["contact_id"] == created.json()["id"]
    # Later the user hides their phone: known by the business-scoped id alone,
    # they are still the same contact.
    integration = (await api.get("/v1/integrations", headers=owner.headers)).json()["data"][0]
    hidden = wa.user(wa_id=None, name="Grace H", user_id="US.13491208655302741918")
    assert (await post(api, hook(integration), says("hello again", hidden,
                                                    number))).status_code == 200
    chats = await chats_of(api, owner)
    assert {c["contact_id"] for c in chats} == {created.json()["id"]}


async def test_two_numbers_in_one_notification_land_in_their_own_orgs(
        api: httpx.AsyncClient, owner: Account, fake_graph: FakeGraph) -> None:
    other = await register(api)
    _, mine = await connect(api, owner, fake_graph)
    _, theirs = await connect(api, other, fake_graph)
    ada, bob = person("Ada"), person("Bob")
    body = wa.notification(
        wa.incoming(ada, wa.text("to the first", ada, timestamp=now()),
                    phone_number_id=mine.phone_number_id),
        wa.entry(wa.incoming(bob, wa.text("to the second", bob, timestamp=now()),
                             phone_number_id=theirs.phone_number_id)))
    assert (await post(api, APP_HOOK, body)).status_code == 200
    (first,) = await chats_of(api, owner)
    (second,) = await chats_of(api, other)
    assert first["channel_thread_id"] == ada["wa_id"]
    assert second["channel_thread_id"] == bob["wa_id"]
    # A number whose integration has another app secret makes the whole
    # notification unverifiable: nothing of it is stored.
    third = await register(api)
    _, elsewhere = await connect(api, third, fake_graph, app_secret="another-app-" + "1" * 20)
    mixed = wa.notification(
        wa.incoming(ada, wa.text("mixed", ada, timestamp=now()),
                    phone_number_id=mine.phone_number_id),
        wa.incoming(bob, wa.text("mixed", bob, timestamp=now()),
                    phone_number_id=elsewhere.phone_number_id))
    assert (await post(api, APP_HOOK, mixed)).status_code == 401
    assert len(await history(api, owner, first["id"])) == 1
    assert await chats_of(api, third) == []


async def test_statuses_never_move_back_and_a_failure_keeps_its_code(
        api: httpx.AsyncClient, owner: Account, fake_graph: FakeGraph, db: Database) -> None:
    integration, number, who, chat = await opened(api, owner, fake_graph)
    sent = await reply(api, owner, chat["id"], {"content": "Yes, we do."})
    assert sent.status_code == 202, sent.text
    row = await settled(db, owner, sent.json()["id"])
    wamid = row["external_id"]
    assert wamid.startswith("wamid.")
    assert fake_graph.sent(number.phone_number_id)[-1]["to"] == who["wa_id"]
    at = int(time.time())
    # read arrives before delivered: the status ends at read, once each
    body = wa.notification(wa.outgoing(wa.status(wamid, "read", who, at + 2),
                                       wa.status(wamid, "delivered", who, at + 1),
                                       phone_number_id=number.phone_number_id))
    assert (await post(api, hook(integration), body)).status_code == 200
    row = await stored(db, owner, sent.json()["id"])
    assert row["status"] == "read" and "read_at" in row["metadata"]
    second = await reply(api, owner, chat["id"], {"content": "Anything else?"})
    wamid2 = (await settled(db, owner, second.json()["id"]))["external_id"]
    failure = wa.notification(wa.outgoing(
        wa.failed(wamid2, 131026, "Message undeliverable", recipient=who),
        phone_number_id=number.phone_number_id))
    assert (await post(api, hook(integration), failure)).status_code == 200
    row = await stored(db, owner, second.json()["id"])
    assert row["status"] == "failed"
    assert row["metadata"]["provider_error"]["code"] == "131026"
    assert "undeliverable" in row["metadata"]["provider_error"]["title"].lower()
    async with db.tenant_tx(owner.org_id) as conn:
        events = await conn.fetch(
            "SELECT payload->>'status' AS status FROM events WHERE chat_id = $1"
            " AND event_type = 'message.status.updated'", uuid.UUID(chat["id"]))
    # sent (our receipt) and read for the first (never delivered after read),
    # sent and failed for the second
    assert sorted(e["status"] for e in events) == ["failed", "read", "sent", "sent"]


async def test_a_status_that_comes_before_our_receipt_waits_for_it(
        api: httpx.AsyncClient, owner: Account, fake_graph: FakeGraph, db: Database) -> None:
    integration, number, who, chat = await opened(api, owner, fake_graph)
    fake_graph.stall(number.phone_number_id, 2.0)
    sent = await reply(api, owner, chat["id"], {"content": "On its way"})

    async def accepted() -> str | None:
        wamids = fake_graph.wamids.get(number.phone_number_id, [])
        return wamids[-1] if wamids else None

    wamid = await eventually(accepted, timeout=15, what="Meta accepting the send")
    # Meta posts the status while its answer to our send is still on the way.
    early = wa.notification(wa.outgoing(wa.status(wamid, "delivered", who, int(time.time())),
                                        phone_number_id=number.phone_number_id))
    assert (await post(api, hook(integration), early)).status_code == 200
    assert (await stored(db, owner, sent.json()["id"]))["status"] == "pending"
    row = await settled(db, owner, sent.json()["id"], "delivered")
    assert row["external_id"] == wamid


async def test_a_reaction_attaches_to_its_message(
        api: httpx.AsyncClient, owner: Account, fake_graph: FakeGraph, db: Database) -> None:
    integration, number, who, chat = await opened(api, owner, fake_graph)
    sent = await reply(api, owner, chat["id"], {"content": "Our price list is attached."})
    wamid = (await settled(db, owner, sent.json()["id"]))["external_id"]
    liked = wa.message("reaction", {"message_id": wamid, "emoji": "\U0001f44d"}, who,
                       timestamp=now())
    body = wa.notification(wa.incoming(who, liked, phone_number_id=number.phone_number_id))
    for _ in range(2):  # a redelivery changes nothing
        assert (await post(api, hook(integration), body)).status_code == 200
    messages = await history(api, owner, chat["id"])
    assert len(messages) == 2  # the greeting and our reply: no message for the reaction
    row = await stored(db, owner, sent.json()["id"])
    (kept,) = row["metadata"]["reactions"].values()
    assert kept["emoji"] == "\U0001f44d"
    taken_back = wa.message("reaction", {"message_id": wamid}, who, timestamp=now())
    assert (await post(api, hook(integration), wa.notification(wa.incoming(
        who, taken_back, phone_number_id=number.phone_number_id)))).status_code == 200
    row = await stored(db, owner, sent.json()["id"])
    (kept,) = row["metadata"]["reactions"].values()
    assert kept["emoji"] is None
    async with db.tenant_tx(owner.org_id) as conn:
        count = await conn.fetchval(
            "SELECT count(*) FROM events WHERE chat_id = $1"
            " AND event_type = 'message.reaction.updated'", uuid.UUID(chat["id"]))
    assert count == 2


async def test_free_text_outside_the_window_is_refused_for_every_sender_but_a_template_goes(
        api: httpx.AsyncClient, owner: Account, fake_graph: FakeGraph, db: Database,
        actors: ActorSystem, stack: Any) -> None:
    integration, number = await connect(api, owner, fake_graph)
    who = person()
    yesterday = str(int(time.time()) - 25 * 3600)
    assert (await post(api, hook(integration),
                       says("Call me", who, number, timestamp=yesterday))).status_code == 200
    (chat,) = await chats_of(api, owner)
    before = len(fake_graph.sent(number.phone_number_id))
    refused = await reply(api, owner, chat["id"], {"content": "Sure, when?"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "outside_customer_service_window"
    ws = await Client.connect(stack.ws_url, owner.access)
    try:
        await ws.send({"type": "message.send", "chat_id": chat["id"], "content": "Hello?",
                       "ref": "r1"})
        frame = await ws.wait_for(lambda f: f.get("type") == "error")
        assert frame["error"]["code"] == "outside_customer_service_window", frame
    finally:
        await ws.close()
    ref = ChatRef(actors, owner.org_id, chat["id"])
    async with db.tenant_tx(owner.org_id) as conn:
        agent = str(await conn.fetchval(
            "INSERT INTO ai_agents (organization_id, name, type, prompt_template)"
            " VALUES ($1, 'SDR', 'sdr', 'Be brief.') RETURNING id", uuid.UUID(owner.org_id)))
    with pytest.raises(WindowClosed):
        await ref.send("I am your assistant", None, agent_id=agent)
    with pytest.raises(WindowClosed):
        await ref.send("Our spring offer", None, campaign_id=str(uuid.uuid4()))
    assert len(fake_graph.sent(number.phone_number_id)) == before  # Meta never asked
    assert len(await history(api, owner, chat["id"])) == 1
    # A template is allowed at any time.
    fake_graph.add_template(number.waba_id, "order_update")
    template = {"name": "order_update", "language": "en_US", "components": [
        {"type": "body", "parameters": [{"type": "text", "text": "Ada"}]}]}
    sent = await reply(api, owner, chat["id"], {"template": template})
    assert sent.status_code == 202, sent.text
    await settled(db, owner, sent.json()["id"])
    payload = fake_graph.sent(number.phone_number_id)[-1]
    assert payload["type"] == "template" and payload["template"]["name"] == "order_update"
    assert payload["template"]["language"] == {"code": "en_US"}
    # The contact writes again: the window is open for everyone.
    assert (await post(api, hook(integration), says("Tomorrow at 10", who,
                                                    number))).status_code == 200
    assert (await reply(api, owner, chat["id"], {"content": "Booked."})).status_code == 202
    assert (await ref.send("Noted by your assistant", None,
                           agent_id=agent))["status"] == "pending"


async def test_templates_are_listed_from_the_business_account_and_cached(
        api: httpx.AsyncClient, owner: Account, fake_graph: FakeGraph) -> None:
    integration, number = await connect(api, owner, fake_graph)
    fake_graph.add_template(number.waba_id, "welcome", language="pt_PT")
    path = f"/v1/integrations/{integration['id']}/templates"
    first = await api.get(path, headers=owner.headers)
    assert first.status_code == 200, first.text
    assert [t["name"] for t in first.json()["data"]] == ["welcome"]
    fake_graph.add_template(number.waba_id, "reminder")
    cached = await api.get(path, headers=owner.headers)
    assert [t["name"] for t in cached.json()["data"]] == ["welcome"]
    fresh = await api.get(path, headers=owner.headers, params={"refresh": "true"})
    assert [t["name"] for t in fresh.json()["data"]] == ["welcome", "reminder"]
    stranger = await register(api)
    assert (await api.get(path, headers=stranger.headers)).status_code == 404


async def test_opening_the_chat_marks_it_read_at_whatsapp(
        api: httpx.AsyncClient, owner: Account, fake_graph: FakeGraph) -> None:
    integration, number, who, chat = await opened(api, owner, fake_graph)
    last = says("And the price?", who, number)
    wamid = last["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    assert (await post(api, hook(integration), last)).status_code == 200
    read = await api.post(f"/v1/chats/{chat['id']}/read", headers=owner.headers)
    assert read.status_code == 200 and read.json()["changed"]

    async def told() -> bool:
        return wamid in fake_graph.reads(number.phone_number_id)

    await eventually(told, timeout=15, what="the read receipt")


async def test_meta_refusals_become_clear_states(
        api: httpx.AsyncClient, owner: Account, fake_graph: FakeGraph, db: Database) -> None:
    integration, number, _, chat = await opened(api, owner, fake_graph)
    pid = number.phone_number_id
    fake_graph.fail(pid, "messages", 400, 131047, "Re-engagement message")
    closed = await reply(api, owner, chat["id"], {"content": "Are you there?"})
    row = await settled(db, owner, closed.json()["id"], "failed")
    assert "outside_customer_service_window" in row["metadata"]["error"]
    fake_graph.fail(pid, "messages", 400, 130429, "Rate limit hit", retry_after=0)
    throttled = await reply(api, owner, chat["id"], {"content": "Retried later"})
    await settled(db, owner, throttled.json()["id"], "sent")
    fake_graph.fail(pid, "messages", 401, 190, "Error validating access token")
    refused = await reply(api, owner, chat["id"], {"content": "With a revoked token"})
    await settled(db, owner, refused.json()["id"], "failed")

    async def shown() -> dict[str, Any] | None:
        got = (await api.get(f"/v1/integrations/{integration['id']}",
                             headers=owner.headers)).json()
        return got if got["error"] else None

    failing = await eventually(shown, timeout=15, what="the integration's error")
    assert "credentials_refused" in failing["error"]


async def test_an_image_is_an_attachment_whose_file_is_fetched(
        api: httpx.AsyncClient, owner: Account, fake_graph: FakeGraph) -> None:
    integration, number = await connect(api, owner, fake_graph)
    who = person()
    media = fake_graph.add_media(b"\xff\xd8\xff jpeg bytes", "image/jpeg")
    image = wa.message("image", {"id": media, "mime_type": "image/jpeg", "caption": "Our shop"},
                       who, timestamp=now())
    assert (await post(api, hook(integration), wa.notification(wa.incoming(
        who, image, phone_number_id=number.phone_number_id)))).status_code == 200
    (chat,) = await chats_of(api, owner)

    async def fetched() -> dict[str, Any] | None:
        (message,) = await history(api, owner, chat["id"])
        (attachment,) = message["attachments"]
        return attachment if attachment["stored"] or attachment["error"] else None

    attachment = await eventually(fetched, timeout=20, what="the image fetched")
    assert attachment["kind"] == "image"
    body = await api.get(f"/v1/attachments/{attachment['id']}", headers=owner.headers)
    assert body.status_code == 200, body.text
