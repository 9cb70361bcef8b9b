"""A large CSV import commits in bounded chunks, each with its audit rows and
events, so no single long transaction holds back the event log's commit
fence (and with it every organization's realtime events); the response
still reports the totals and each refused row."""
from __future__ import annotations

import httpx

from serve.routers.contacts import IMPORT_CHUNK
from storage.db import Database
from tests.conftest import Account

ROWS = 2 * IMPORT_CHUNK + 201


async def test_a_large_import_commits_chunk_by_chunk(
        api: httpx.AsyncClient, owner: Account, db: Database) -> None:
    lines = ["first_name,email,tags"]
    lines += [f"Person {i},p{i}@example.com,imported;batch" for i in range(ROWS)]
    lines.insert(3, "Bad,not-an-email,")  # row 4: refused before any insert
    lines.append("Again,p7@example.com,")  # the last row: a duplicate email
    resp = await api.post("/v1/contacts/import", content="\n".join(lines).encode(),
                          headers={**owner.headers, "content-type": "text/csv"}, timeout=120)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["imported"], body["failed"]) == (ROWS, 2)
    assert [e["row"] for e in body["errors"]] == [4, ROWS + 3]
    assert "email" in body["errors"][0]["errors"][0]
    assert body["errors"][1]["errors"] == ["a contact with this email exists"]

    async with db.tenant_tx(owner.org_id) as conn:
        per_xid = [r["n"] for r in await conn.fetch(
            "SELECT count(*) AS n FROM events WHERE event_type = 'contact.created'"
            " GROUP BY xid ORDER BY xid")]
        audited = await conn.fetchval(
            "SELECT count(*) FROM audit_logs WHERE action = 'contact.create'")
        stored = await conn.fetchval("SELECT count(*) FROM contacts")
    # Chunks of IMPORT_CHUNK rows (the refused ones included), one transaction each.
    assert per_xid == [IMPORT_CHUNK, IMPORT_CHUNK, ROWS - 2 * IMPORT_CHUNK]
    assert audited == stored == ROWS
