"""What a mailbox's messages become, through the running engine and a real
Dovecot: the text part chosen, HTML made readable, encoded headers decoded,
attachments kept as files, a bounce marking our message failed instead of
opening a chat, an auto-reply flagged; and bad mail stored as best it can
be without ever blocking the mailbox."""
from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import httpx

from channels.email import VISIBLE_MAX
from storage.db import Database
from tests.conftest import Account
from tests.peers.dovecot import Dovecot
from tests.peers.smtp import SmtpPeer
from tests.serve.mailboxes import chats_of, connect, inbound_count, mail, person
from tests.waiting import eventually


def message(sender: str, to: str, subject: str) -> EmailMessage:
    built = EmailMessage()
    built["From"], built["To"], built["Subject"] = sender, to, subject
    built["Message-ID"] = make_msgid(domain="client.test")
    return built


async def count_is(db: Database, owner: Account, count: int) -> bool:
    return await inbound_count(db, owner) >= count


async def only_message(db: Database, owner: Account) -> dict[str, Any]:
    (chat,) = await chats_of(db, owner)
    (stored,) = chat["messages"]
    return {**stored, "title": chat["title"]}


async def test_the_text_part_html_and_encoded_headers(
        api: httpx.AsyncClient, owner: Account, db: Database, dovecot: Dovecot,
        smtp_peer: SmtpPeer) -> None:
    _, box = await connect(api, owner, dovecot, smtp_peer)
    both = message(person(), box.address, "Both parts")
    both.set_content("The plain part.")
    both.add_alternative("<p>The <b>HTML</b> part.</p>", subtype="html")
    dovecot.append(box, both.as_bytes())
    await eventually(lambda: count_is(db, owner, 1), what="stored")
    assert (await only_message(db, owner))["content"] == "The plain part."

    html = message(person(), box.address, "HTML only")
    html.set_content("<html><body><h1>Offer</h1><p>First line.</p><ul><li>one</li>"
                     "<li>two</li></ul><p>See <a href='https://x.test/p'>the page</a>.</p>"
                     "</body></html>", subtype="html")
    latin = (b"From: =?ISO-8859-1?Q?Jos=E9_Garc=EDa?= <jose@client.test>\r\n"
             b"To: " + box.address.encode() + b"\r\n"
             b"Subject: =?ISO-8859-1?Q?Pr=E9sentation_du_caf=E9?=\r\n"
             b"Message-ID: <latin-1@client.test>\r\nMIME-Version: 1.0\r\n"
             b"Content-Type: text/plain; charset=ISO-8859-1\r\n"
             b"Content-Transfer-Encoding: 8bit\r\n\r\nCaf\xe9 cr\xe8me, s'il vous pla\xeet.\r\n")
    dovecot.append(box, html.as_bytes())
    dovecot.append(box, latin)
    await eventually(lambda: count_is(db, owner, 3), what="all three stored")
    by_title = {c["title"]: c for c in await chats_of(db, owner)}
    converted = by_title["HTML only"]["messages"][0]["content"]
    for piece in ("Offer", "First line.", "one", "two", "https://x.test/p"):
        assert piece in converted
    assert "<" not in converted
    latin_chat = by_title["Présentation du café"]
    assert latin_chat["messages"][0]["content"] == "Café crème, s'il vous plaît."
    assert latin_chat["messages"][0]["metadata"]["sender"]["name"] == "José García"


async def test_an_attachment_is_kept_as_a_file_and_served(
        api: httpx.AsyncClient, owner: Account, db: Database, dovecot: Dovecot,
        smtp_peer: SmtpPeer) -> None:
    _, box = await connect(api, owner, dovecot, smtp_peer)
    with_file = message(person(), box.address, "The contract")
    with_file.set_content("Contract attached.")
    pdf = b"%PDF-1.4 " + bytes(range(256)) * 40
    with_file.add_attachment(pdf, maintype="application", subtype="pdf",
                             filename="contract v2.pdf")
    dovecot.append(box, with_file.as_bytes())
    await eventually(lambda: count_is(db, owner, 1), what="stored")
    stored = await only_message(db, owner)
    resp = await api.get(f"/v1/chats/{stored['chat_id']}/messages", headers=owner.headers)
    assert resp.status_code == 200, resp.text
    (listed,) = resp.json()["data"]
    (attachment,) = listed["attachments"]
    assert attachment["name"] == "contract v2.pdf" and attachment["stored"]
    assert attachment["mime_type"] == "application/pdf" and attachment["size"] == len(pdf)
    got = await api.get(f"/v1/attachments/{attachment['id']}", headers=owner.headers)
    assert got.status_code == 200 and got.content == pdf


async def test_a_bounce_marks_our_message_failed_and_opens_no_chat(
        api: httpx.AsyncClient, owner: Account, db: Database, dovecot: Dovecot,
        smtp_peer: SmtpPeer) -> None:
    _, box = await connect(api, owner, dovecot, smtp_peer)
    ann = person()
    dovecot.append(box, mail(ann, box.address, "Question", "Are you there?")[0])
    await eventually(lambda: count_is(db, owner, 1), what="stored")
    (chat,) = await chats_of(db, owner)
    resp = await api.post(f"/v1/chats/{chat['id']}/messages", headers=owner.headers,
                          json={"content": "Yes we are."})
    ours = resp.json()["id"]
    (got,) = await eventually(lambda: smtp_peer.for_rcpt(ann), what="our reply sent")
    our_id = got.message["Message-ID"]
    dsn = dsn_for(box.address, ann, got.raw, our_id)
    dovecot.append(box, dsn)

    async def failed() -> dict[str, Any] | None:
        async with db.tenant_tx(owner.org_id) as conn:
            row = await conn.fetchrow("SELECT status, metadata FROM messages"
                                      " WHERE id = $1::uuid", ours)
        return dict(row) if row is not None and row["status"] == "failed" else None
    row = await eventually(failed, what="our message marked failed")
    assert "5.1.1" in row["metadata"]["error"] and "user unknown" in row["metadata"]["error"]
    assert len(await chats_of(db, owner)) == 1  # no chat with the mailer daemon
    assert await inbound_count(db, owner) == 1


def dsn_for(to: str, recipient: str, original: bytes, original_id: str) -> bytes:
    """A delivery status notification (RFC 3464) as a mail server sends it."""
    boundary = "dsn-boundary-1"
    headers = original.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in original \
        else original.split(b"\n\n", 1)[0]
    return (
        f"From: Mail Delivery System <MAILER-DAEMON@mx.client.test>\r\n"
        f"To: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <dsn-{original_id.strip('<>')}>\r\nAuto-Submitted: auto-replied\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"'
        f"\r\n\r\n--{boundary}\r\nContent-Type: text/plain\r\n\r\n"
        f"I'm sorry to have to inform you that your message could not be delivered.\r\n"
        f"\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx.client.test\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: user unknown\r\n"
        f"\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    ).encode() + headers + f"\r\n\r\n--{boundary}--\r\n".encode()


async def test_an_auto_reply_is_stored_flagged(
        api: httpx.AsyncClient, owner: Account, db: Database, dovecot: Dovecot,
        smtp_peer: SmtpPeer) -> None:
    _, box = await connect(api, owner, dovecot, smtp_peer)
    dovecot.append(box, mail(person(), box.address, "Out of office", "Back on Monday.",
                             headers={"Auto-Submitted": "auto-replied"})[0])
    await eventually(lambda: count_is(db, owner, 1), what="stored")
    stored = await only_message(db, owner)
    assert stored["metadata"]["data"]["auto_submitted"] == "auto-replied"


async def test_bad_mail_is_stored_as_best_it_can_be_and_never_blocks_the_mailbox(
        api: httpx.AsyncClient, owner: Account, db: Database, dovecot: Dovecot,
        smtp_peer: SmtpPeer) -> None:
    _, box = await connect(api, owner, dovecot, smtp_peer)
    to = box.address.encode()
    broken = (b"From: broken@client.test\r\nTo: " + to + b"\r\nSubject: broken\r\n"
              b"Message-ID: <broken@client.test>\r\nMIME-Version: 1.0\r\n"
              b'Content-Type: multipart/mixed; boundary="never-closed"\r\n\r\n'
              b"--never-closed\r\nContent-Type: text/plain\r\n\r\nthe broken one\r\n")
    unknown = (b"From: charset@client.test\r\nTo: " + to + b"\r\nSubject: charset\r\n"
               b"Message-ID: <charset@client.test>\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: text/plain; charset=x-unknown-charset\r\n\r\n"
               b"unknown charset \xe9t\xe9\r\n")
    long_line = (b"From: long@client.test\r\nTo: " + to + b"\r\nSubject: long\r\n"
                 b"Message-ID: <long@client.test>\r\n\r\n" + b"a" * (2 * 1024 * 1024) + b"\r\n")
    no_id = b"From: noid@client.test\r\nTo: " + to + b"\r\nSubject: no id\r\n\r\nno id here\r\n"
    big = message("big@client.test", box.address, "big")
    big.set_content("a very large file follows")
    big.add_attachment(b"\x00\x01" * (15 * 1024 * 1024), maintype="application",
                       subtype="octet-stream", filename="huge.bin")
    after = mail(person(), box.address, "after", "the one after them all")[0]
    for raw in (broken, unknown, long_line, no_id, big.as_bytes(), after):
        dovecot.append(box, raw)
    await eventually(lambda: count_is(db, owner, 6), timeout=60, what="all six stored")
    by_title = {c["title"]: c["messages"][0] for c in await chats_of(db, owner)}
    assert "the broken one" in by_title["broken"]["content"]
    assert by_title["charset"]["content"].startswith("unknown charset")
    assert by_title["charset"]["metadata"]["data"]["defects"]
    long = by_title["long"]
    assert long["content"][:3] == "aaa" and len(long["content"]) <= VISIBLE_MAX + 100
    assert len(long["metadata"]["body"]) > len(long["content"])
    assert by_title["no id"]["content"] == "no id here"
    assert by_title["big"]["content"] == "a very large file follows"
    resp = await api.get(f"/v1/chats/{by_title['big']['chat_id']}/messages",
                         headers=owner.headers)
    (attachment,) = resp.json()["data"][0]["attachments"]
    assert not attachment["stored"] and attachment["error"] in ("too_large", "truncated")
    assert by_title["after"]["content"] == "the one after them all"
