"""Email conversations through the running engine, with a real Dovecot and
a real SMTP server: an exchange threads by In-Reply-To, References and our
reply token, scoped to the contact; our replies carry the headers that keep
them in the thread, as the SMTP server received them."""
from __future__ import annotations

from typing import Any

import httpx

from storage.db import Database
from tests.conftest import Account, register
from tests.peers.dovecot import Dovecot
from tests.peers.smtp import SmtpPeer
from tests.serve.mailboxes import (
    REPLY_DOMAIN,
    chats_of,
    connect,
    inbound_count,
    mail,
    person,
    settled,
)
from tests.waiting import eventually


def brackets(message_id: str) -> str:
    return message_id if message_id.startswith("<") else f"<{message_id}>"


async def has_inbound(db: Database, owner: Account, count: int) -> bool:
    return await inbound_count(db, owner) >= count


async def reply(api: httpx.AsyncClient, owner: Account, chat_id: str, text: str) -> dict[str, Any]:
    resp = await api.post(f"/v1/chats/{chat_id}/messages", headers=owner.headers,
                          json={"content": text})
    assert resp.status_code in (200, 201, 202), resp.text
    return resp.json()  # type: ignore[no-any-return]


async def test_a_five_message_exchange_threads_exactly_right(
        api: httpx.AsyncClient, owner: Account, db: Database, dovecot: Dovecot,
        smtp_peer: SmtpPeer) -> None:
    integration, box = await connect(api, owner, dovecot, smtp_peer)
    ann, bob = person(), person()

    # 1. Ann writes.
    first, first_id = mail(ann, box.address, "Pricing for 40 seats", "What would 40 seats cost?",
                           name="Ann Buyer")
    dovecot.append(box, first)
    await eventually(lambda: has_inbound(db, owner, 1), what="the first message stored")
    (chat,) = await chats_of(db, owner)
    assert chat["title"] == "Pricing for 40 seats" and chat["contact"] == ann

    # 2. We answer: the SMTP server receives a reply in the thread.
    ours = await reply(api, owner, chat["id"], "40 seats are $4,000 a month.")
    got = await eventually(lambda: smtp_peer.for_rcpt(ann), what="our reply received")
    answer = got[0].message
    assert answer["In-Reply-To"] == brackets(first_id)
    assert answer["References"].split() == [brackets(first_id)]
    assert answer["Subject"] == "Re: Pricing for 40 seats"
    reply_to = str(answer["Reply-To"])
    assert reply_to.startswith("reply+") and reply_to.endswith("@" + REPLY_DOMAIN)
    assert answer["From"].addresses[0].addr_spec == box.address
    assert answer.is_multipart()
    kinds = [part.get_content_type() for part in answer.iter_parts()]
    assert kinds == ["text/plain", "text/html"]
    assert "$4,000" in answer.get_body(("plain",)).get_content()
    our_id = answer["Message-ID"]
    stored = await eventually(lambda: settled(db, owner, ours["id"]), what="our reply sent")
    assert stored["status"] == "sent" and brackets(stored["external_id"]) == our_id

    # 3. Ann answers our reply, quoting it.
    second, second_id = mail(
        ann, box.address, "Re: Pricing for 40 seats",
        "Sounds good. Can we start in May?\n\nOn Tue, Ann's client wrote:\n> 40 seats are"
        " $4,000 a month.\n", in_reply_to=our_id, references=[brackets(first_id), our_id])
    dovecot.append(box, second)
    # 4. Ann again, a new subject, answering her own last message.
    third, _ = mail(ann, box.address, "Contract question", "Who signs on your side?",
                    in_reply_to=second_id, references=[brackets(first_id), our_id, second_id])
    dovecot.append(box, third)
    # 5. Bob, a stranger, quotes Ann's Message-ID: he must not join her thread.
    fourth, _ = mail(bob, box.address, "Re: Pricing for 40 seats", "Me too, same price?",
                     in_reply_to=second_id, references=[brackets(first_id)])
    dovecot.append(box, fourth)
    # and Bob quoting a Message-ID nobody here knows opens a thread too.
    fifth, _ = mail(bob, box.address, "Re: elsewhere", "Following up.",
                    in_reply_to="<never-seen@elsewhere.test>")
    dovecot.append(box, fifth)
    await eventually(lambda: has_inbound(db, owner, 5), what="all five inbound stored")

    chats = {c["id"]: c for c in await chats_of(db, owner)}
    ann_chat = chats.pop(chat["id"])
    assert [m["content"] for m in ann_chat["messages"]] == [
        "What would 40 seats cost?", "40 seats are $4,000 a month.",
        "Sounds good. Can we start in May?", "Who signs on your side?"]
    # the chat shows the new text; the whole body is kept beside it
    quoted = ann_chat["messages"][2]["metadata"]
    assert "> 40 seats are" in quoted["body"]
    assert sorted(len(c["messages"]) for c in chats.values()) == [1, 1]
    assert {c["contact"] for c in chats.values()} == {bob}

    # Our next reply answers Ann's last message, with the whole chain.
    await reply(api, owner, chat["id"], "Our CEO signs.")
    both = await eventually(lambda: len(smtp_peer.for_rcpt(ann)) >= 2 and smtp_peer.for_rcpt(ann),
                            what="the second reply received")
    last = both[1].message
    assert last["Subject"] == "Re: Contract question"
    refs = last["References"].split()
    assert refs[0] == brackets(first_id) and refs[-1] == last["In-Reply-To"]
    assert our_id in refs and brackets(second_id) in refs


async def test_the_reply_token_threads_a_reply_without_headers_and_cannot_be_forged(
        api: httpx.AsyncClient, owner: Account, db: Database, dovecot: Dovecot,
        smtp_peer: SmtpPeer) -> None:
    integration, box = await connect(api, owner, dovecot, smtp_peer)
    ann, eve = person(), person()
    first, _ = mail(ann, box.address, "Demo", "Can I get a demo?")
    dovecot.append(box, first)
    await eventually(lambda: has_inbound(db, owner, 1), what="the first message stored")
    (chat,) = await chats_of(db, owner)
    await reply(api, owner, chat["id"], "Sure, Thursday?")
    (got,) = await eventually(lambda: smtp_peer.for_rcpt(ann), what="our reply received")
    token_address = str(got.message["Reply-To"])

    # A client that drops In-Reply-To and References, writing to the token address.
    bare, _ = mail(ann, token_address, "Thursday works", "Thursday 10am.")
    dovecot.append(box, bare)
    # Eve writes to the same token address: the token is not hers.
    stolen, _ = mail(eve, token_address, "Thursday works", "Let me in.")
    dovecot.append(box, stolen)
    # A token with a forged MAC names nothing.
    forged_address = token_address.split("@")[0][:-12] + "0" * 12 + "@" + REPLY_DOMAIN
    forged, _ = mail(ann, forged_address, "Forged", "Forged token.")
    dovecot.append(box, forged)
    await eventually(lambda: has_inbound(db, owner, 4), what="all four inbound stored")
    chats = {c["id"]: c for c in await chats_of(db, owner)}
    assert [m["content"] for m in chats.pop(chat["id"])["messages"]] == [
        "Can I get a demo?", "Sure, Thursday?", "Thursday 10am."]
    assert sorted((c["contact"], [m["content"] for m in c["messages"]])
                  for c in chats.values()) == sorted(
        [(eve, ["Let me in."]), (ann, ["Forged token."])])


async def test_another_orgs_mailbox_never_threads_into_ours(
        api: httpx.AsyncClient, owner: Account, db: Database, dovecot: Dovecot,
        smtp_peer: SmtpPeer) -> None:
    _, box = await connect(api, owner, dovecot, smtp_peer)
    other = await register(api, "Other org")
    _, their_box = await connect(api, other, dovecot, smtp_peer)
    ann = person()
    first, first_id = mail(ann, box.address, "Hello", "Hello ours")
    dovecot.append(box, first)
    await eventually(lambda: has_inbound(db, owner, 1), what="ours stored")
    # The same person answers the same Message-ID into the other org's mailbox.
    theirs, _ = mail(ann, their_box.address, "Re: Hello", "Hello theirs",
                     in_reply_to=brackets(first_id))
    dovecot.append(their_box, theirs)
    await eventually(lambda: has_inbound(db, other, 1), what="theirs stored")
    assert [[m["content"] for m in c["messages"]] for c in await chats_of(db, owner)] == [
        ["Hello ours"]]
    assert [[m["content"] for m in c["messages"]] for c in await chats_of(db, other)] == [
        ["Hello theirs"]]
