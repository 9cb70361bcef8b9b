"""WhatsApp's outbound limits through the running engine, measured on the
fake Graph API's clock (its recorded call times): replies to many users of
one number go out at the number's cap (the session stack's settings: 20/s
per number), not faster and not much slower."""
from __future__ import annotations

import asyncio
import uuid

import httpx

from storage.db import Database
from tests.conftest import Account
from tests.fakes import whatsapp_notifications as wa
from tests.fakes.whatsapp import FakeGraph
from tests.serve.whatsapp_numbers import connect, hook, now, post
from tests.waiting import eventually

USERS = 60
CAP = 20.0  # tests/conftest.py: whatsapp_number_per_second


async def test_replies_to_many_users_go_out_at_the_numbers_cap(
        api: httpx.AsyncClient, owner: Account, fake_graph: FakeGraph, db: Database) -> None:
    integration, number = await connect(api, owner, fake_graph)
    first = 30_000_000_000 + uuid.uuid4().int % 10**9 * 10
    people = [wa.user(wa_id=str(first + n), name=f"User {n}") for n in range(USERS)]
    body = wa.notification(*(wa.incoming(p, wa.text("hello", p, timestamp=now()),
                                         phone_number_id=number.phone_number_id)
                             for p in people))
    assert (await post(api, hook(integration), body)).status_code == 200
    async with db.tenant_tx(owner.org_id) as conn:
        chats = [str(r["id"]) for r in await conn.fetch(
            "SELECT id FROM chats WHERE integration_id = $1", uuid.UUID(integration["id"]))]
    assert len(chats) == USERS
    sends = [api.post(f"/v1/chats/{chat}/messages", headers=owner.headers,
                      json={"content": "Thanks for writing!"}) for chat in chats]
    for resp in await asyncio.gather(*sends):
        assert resp.status_code == 202, resp.text

    async def all_out() -> bool:
        return len(fake_graph.sent(number.phone_number_id)) >= USERS

    await eventually(all_out, timeout=60, what=f"{USERS} replies at Meta")
    times = sorted(c.at for c in fake_graph.calls_of(number.phone_number_id, "messages"))
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert abs(rate - CAP) / CAP <= 0.10, f"{rate:.2f}/s against a cap of {CAP}/s"

