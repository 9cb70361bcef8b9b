"""A chat's detail tells whether WhatsApp's 24-hour customer service window
is open (free text) or closed (only a template), and when it closes."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from tests.conftest import Account
from tests.fakes import whatsapp_notifications as wa
from tests.fakes.whatsapp import FakeGraph
from tests.serve.messaging import make_inbox, message, post_inbound
from tests.serve.test_whatsapp import chats_of, opened, person
from tests.serve.whatsapp_numbers import hook, post


async def detail(api: httpx.AsyncClient, owner: Account, chat_id: str) -> dict[str, object]:
    resp = await api.get(f"/v1/chats/{chat_id}", headers=owner.headers)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def utc(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


async def test_the_window_is_open_for_a_day_after_the_contact_wrote(
        api: httpx.AsyncClient, owner: Account, fake_graph: FakeGraph) -> None:
    integration, number, _, chat = await opened(api, owner, fake_graph)
    window = (await detail(api, owner, chat["id"]))["whatsapp_window"]
    assert isinstance(window, dict) and window["open"] is True
    closes = utc(window["closes_at"])
    assert closes - utc(chat["last_inbound_at"]) == timedelta(hours=24)
    assert closes > datetime.now(UTC)
    # Someone whose last message is older than a day: closed, and since when.
    late = person("Late Writer")
    old = wa.notification(wa.incoming(late, wa.text("Hello from last week", late),
                                      phone_number_id=number.phone_number_id))
    assert (await post(api, hook(integration), old)).status_code == 200
    (stale,) = [c for c in await chats_of(api, owner) if c["id"] != chat["id"]]
    window = (await detail(api, owner, stale["id"]))["whatsapp_window"]
    assert isinstance(window, dict) and window["open"] is False
    closed = utc(window["closes_at"])
    assert closed < datetime.now(UTC)
    assert utc(stale["last_inbound_at"]) + timedelta(hours=24) == closed
    # The send check agrees: free text is refused, as the window says.
    resp = await api.post(f"/v1/chats/{stale['id']}/messages", headers=owner.headers,
                          json={"content": "Still interested?"})
    assert resp.status_code == 409, resp.text
    assert resp.json()["error"]["code"] == "outside_customer_service_window"


async def test_other_channels_have_no_window(api: httpx.AsyncClient, owner: Account) -> None:
    inbox = await make_inbox(api, owner)
    chat_id = (await post_inbound(api, inbox, message(thread="w"))).json()["chat_id"]
    assert (await detail(api, owner, chat_id))["whatsapp_window"] is None
