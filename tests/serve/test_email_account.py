"""Connecting a mailbox: both servers are logged in to before anything is
stored; a refused password names its server; hosts the engine may not reach
are refused; one mailbox folder feeds one integration; the passwords are
sealed and never shown, and another org cannot see the integration."""
from __future__ import annotations

from typing import Any

import httpx

from serve.stack import free_port
from storage.db import Database
from tests.conftest import Account, register
from tests.peers.dovecot import Dovecot
from tests.peers.smtp import SmtpPeer
from tests.serve.mailboxes import config, connect


async def create(api: httpx.AsyncClient, owner: Account, body: dict[str, Any]) -> httpx.Response:
    return await api.post("/v1/integrations", headers=owner.headers,
                          json={"type": "email", "name": "Inbox", "config": body})


async def count(api: httpx.AsyncClient, owner: Account) -> int:
    resp = await api.get("/v1/integrations", headers=owner.headers)
    return int(resp.json()["total"])


async def test_a_refused_password_names_its_server_and_stores_nothing(
        api: httpx.AsyncClient, owner: Account, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    box = dovecot.add_user()
    good = config(dovecot, smtp_peer, box, smtp_peer.add_user())
    wrong_imap = {**good, "imap": {**good["imap"], "password": "not-it"}}
    resp = await create(api, owner, wrong_imap)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["details"]["field"] == "config.imap.password" and "IMAP" in error["message"]
    assert "not-it" not in resp.text
    wrong_smtp = {**good, "smtp": {**good["smtp"], "password": "nope-either"}}
    resp = await create(api, owner, wrong_smtp)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["details"]["field"] == "config.smtp.password"
    closed = {**good, "imap": {**good["imap"], "port": free_port()}}
    resp = await create(api, owner, closed)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["details"]["field"] == "config.imap.host"
    assert await count(api, owner) == 0


async def test_hosts_the_engine_may_not_reach_are_refused(
        api: httpx.AsyncClient, owner: Account, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    good = config(dovecot, smtp_peer, dovecot.add_user(), smtp_peer.add_user())
    for host in ("10.1.2.3", "169.254.169.254", "::1"):
        resp = await create(api, owner, {**good, "smtp": {**good["smtp"], "host": host}})
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["details"]["field"] == "config.smtp.host"
    assert await count(api, owner) == 0


async def test_bad_settings_are_clear_errors(
        api: httpx.AsyncClient, owner: Account, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    good = config(dovecot, smtp_peer, dovecot.add_user(), smtp_peer.add_user())
    for bad in ({**good, "imap": {**good["imap"], "tls": "maybe"}},
                {**good, "imap": {**good["imap"], "port": 0}},
                {**good, "address": "no-at-sign"},
                {**good, "reply_domain": "not a domain"},
                {**good, "extra": 1},
                {k: v for k, v in good.items() if k != "smtp"}):
        resp = await create(api, owner, bad)
        assert resp.status_code == 422, (bad, resp.text)
        assert "error" in resp.json()
    assert await count(api, owner) == 0


async def test_passwords_are_sealed_and_one_folder_feeds_one_integration(
        api: httpx.AsyncClient, owner: Account, db: Database, dovecot: Dovecot,
        smtp_peer: SmtpPeer) -> None:
    integration, box = await connect(api, owner, dovecot, smtp_peer)
    assert integration["config"]["imap"]["username"] == box.address
    shown = await api.get(f"/v1/integrations/{integration['id']}", headers=owner.headers)
    assert box.password not in shown.text and "password" not in shown.text
    assert db.system is not None
    async with db.system.acquire() as conn:
        raw = await conn.fetchval("SELECT config::text FROM integrations WHERE id = $1::uuid",
                                  integration["id"])
    assert box.password not in raw  # sealed at rest
    again = config(dovecot, smtp_peer, box, smtp_peer.add_user())
    stranger = await register(api)
    resp = await create(api, stranger, again)
    assert resp.status_code == 409, resp.text
    assert (await api.get(f"/v1/integrations/{integration['id']}",
                          headers=stranger.headers)).status_code == 404


async def test_only_a_mailbox_takes_new_passwords(
        api: httpx.AsyncClient, owner: Account) -> None:
    inbox = await api.post("/v1/integrations", headers=owner.headers,
                           json={"type": "api", "name": "API inbox"})
    resp = await api.patch(f"/v1/integrations/{inbox.json()['id']}", headers=owner.headers,
                           json={"config": {"smtp": {"password": "x"}}})
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["details"]["field"] == "config"
