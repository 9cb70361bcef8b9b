"""Our replies over SMTP through the running engine, with a real SMTP
server and Dovecot: a 4xx is retried with backoff until it goes, a 5xx is
final with the server's reply kept on the message, and the sent copy lands
in the mailbox's Sent folder."""
from __future__ import annotations

import imaplib

import httpx

from storage.db import Database
from tests.conftest import Account
from tests.peers.dovecot import Dovecot, MailUser
from tests.peers.smtp import SmtpPeer
from tests.serve.mailboxes import chats_of, connect, inbound_count, mail, person, settled
from tests.waiting import eventually


async def conversation(api: httpx.AsyncClient, owner: Account, db: Database,
                       dovecot: Dovecot, smtp_peer: SmtpPeer) -> tuple[MailUser, str, str]:
    """A mailbox with one message from a new person: the box, the person, the chat id."""
    _, box = await connect(api, owner, dovecot, smtp_peer)
    ann = person()
    dovecot.append(box, mail(ann, box.address, "Hello", "Hello there")[0])

    async def one() -> bool:
        return await inbound_count(db, owner) == 1
    await eventually(one, what="the message stored")
    (chat,) = await chats_of(db, owner)
    return box, ann, chat["id"]


async def send(api: httpx.AsyncClient, owner: Account, chat_id: str, text: str) -> str:
    resp = await api.post(f"/v1/chats/{chat_id}/messages", headers=owner.headers,
                          json={"content": text})
    assert resp.status_code in (200, 201, 202), resp.text
    return str(resp.json()["id"])


async def test_a_temporary_refusal_is_retried_until_the_reply_goes(
        api: httpx.AsyncClient, owner: Account, db: Database, dovecot: Dovecot,
        smtp_peer: SmtpPeer) -> None:
    _, ann, chat_id = await conversation(api, owner, db, dovecot, smtp_peer)
    smtp_peer.fail(ann, 451, "4.3.0 Try again later", times=2)
    ours = await send(api, owner, chat_id, "Persistent reply")
    row = await eventually(lambda: settled(db, owner, ours), what="the reply settled")
    assert row["status"] == "sent" and row["delivery_attempts"] == 3
    (got,) = smtp_peer.for_rcpt(ann)
    assert "Persistent reply" in got.message.get_body(("plain",)).get_content()
    assert row["metadata"]["email"]["smtp_reply"].startswith("250")


async def test_a_permanent_refusal_is_final_with_the_servers_reply_kept(
        api: httpx.AsyncClient, owner: Account, db: Database, dovecot: Dovecot,
        smtp_peer: SmtpPeer) -> None:
    _, ann, chat_id = await conversation(api, owner, db, dovecot, smtp_peer)
    smtp_peer.fail(ann, 550, "5.1.1 No such user here")
    ours = await send(api, owner, chat_id, "Doomed reply")
    row = await eventually(lambda: settled(db, owner, ours), what="the reply settled")
    assert row["status"] == "failed" and row["delivery_attempts"] == 1
    assert "550" in row["metadata"]["error"] and "No such user here" in row["metadata"]["error"]
    assert smtp_peer.for_rcpt(ann) == []


async def test_the_sent_copy_lands_in_the_sent_folder(
        api: httpx.AsyncClient, owner: Account, db: Database, dovecot: Dovecot,
        smtp_peer: SmtpPeer) -> None:
    box, ann, chat_id = await conversation(api, owner, db, dovecot, smtp_peer)
    await send(api, owner, chat_id, "Filed reply")
    (got,) = await eventually(lambda: smtp_peer.for_rcpt(ann), what="the reply sent")

    def in_sent() -> list[bytes]:
        client = imaplib.IMAP4(dovecot.host, dovecot.port)
        try:
            client.login(box.address, box.password)
            client.select('"Sent"', readonly=True)
            _, data = client.search(None, "HEADER", "Message-ID", got.message["Message-ID"])
            return data[0].split()
        finally:
            client.logout()
    await eventually(in_sent, what="the copy in Sent")
