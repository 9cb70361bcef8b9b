"""channels.imap against a real Dovecot: login, select, sizes, fetch (whole,
partial, 30 MB), Message-IDs, IDLE, UIDVALIDITY changes, the Sent folder,
dropped connections."""
from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from channels.imap import (
    ImapAuthError,
    ImapError,
    ImapServer,
    ImapUnavailable,
    Mailbox,
    check_login,
)
from channels.imap_wire import decode_folder, encode_folder, uid_set
from tests.peers.dovecot import Dovecot, MailUser, free_port
from tests.waiting import eventually


def message(subject: str, *, body_bytes: int = 100, message_id: str | None = None) -> bytes:
    head = f"From: a@example.com\r\nTo: b@example.com\r\nSubject: {subject}\r\n"
    if message_id is not None:
        head += f"Message-ID: {message_id}\r\n"
    line = b"0123456789abcdef" * 4 + b"(unbalanced\r\n"  # parentheses inside a literal
    return head.encode() + b"\r\n" + (line * (body_bytes // len(line) + 1))[:body_bytes]


def server(dovecot: Dovecot, user: MailUser, *, password: str | None = None,
           timeout: float = 10.0) -> ImapServer:
    return ImapServer(dovecot.host, dovecot.port, "none", user.address,
                      user.password if password is None else password, timeout=timeout)


@pytest.fixture
def user(dovecot: Dovecot) -> MailUser:
    return dovecot.add_user()


@pytest.fixture
async def box(dovecot: Dovecot, user: MailUser) -> AsyncIterator[Mailbox]:
    async with await Mailbox.open(server(dovecot, user)) as opened:
        yield opened


# login

async def test_login_selects_the_inbox(dovecot: Dovecot, user: MailUser) -> None:
    selected = await check_login(server(dovecot, user))
    assert selected.exists == 0 and selected.uidvalidity > 0 and selected.uidnext == 1


async def test_a_wrong_password_is_an_auth_error(dovecot: Dovecot, user: MailUser) -> None:
    with pytest.raises(ImapAuthError, match="refused the login"):
        await check_login(server(dovecot, user, password="wrong"))


async def test_a_closed_port_is_unavailable() -> None:
    closed = ImapServer("127.0.0.1", free_port(), "none", "x@example.com", "x", timeout=5)
    with pytest.raises(ImapUnavailable, match="connect"):
        await Mailbox.open(closed)


async def test_a_silent_server_times_out() -> None:
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    started = time.monotonic()
    try:
        with pytest.raises(ImapUnavailable, match="no answer within 1 s"):
            await Mailbox.open(ImapServer("127.0.0.1", port, "none", "x", "y", timeout=1))
    finally:
        silent.close()
    assert time.monotonic() - started < 5


async def test_a_user_added_after_start_logs_in_and_a_new_password_counts(
        dovecot: Dovecot) -> None:
    first = dovecot.add_user()
    await check_login(server(dovecot, first))
    late = dovecot.add_user()  # right after another login, in the same second
    assert (await check_login(server(dovecot, late))).exists == 0
    dovecot.set_password(late.address, "changed")
    with pytest.raises(ImapAuthError):
        await check_login(server(dovecot, late))
    await check_login(server(dovecot, late, password="changed"))


# select, sizes, fetch

async def test_select_reports_uidvalidity_uidnext_and_exists(
        dovecot: Dovecot, user: MailUser, box: Mailbox) -> None:
    uids = [dovecot.append(user, message(f"m{i}")) for i in range(3)]
    selected = await box.select()
    assert selected.exists == 3 and selected.uidnext == uids[-1] + 1
    assert selected.uidvalidity == (await box.select("INBOX", readonly=False)).uidvalidity


async def test_selecting_a_missing_folder_is_refused(box: Mailbox) -> None:
    with pytest.raises(ImapError, match="EXAMINE Nowhere: NO") as caught:
        await box.select("Nowhere")
    assert not isinstance(caught.value, ImapUnavailable)
    await box.select()  # the connection is still good


async def test_sizes_after_lists_only_newer_uids(
        dovecot: Dovecot, user: MailUser, box: Mailbox) -> None:
    raws = [message(f"m{i}", body_bytes=100 * (i + 1)) for i in range(3)]
    uids = [dovecot.append(user, raw) for raw in raws]
    await box.select()
    assert await box.sizes_after(0) == [(uid, len(raw))
                                        for uid, raw in zip(uids, raws, strict=True)]
    assert await box.sizes_after(uids[0]) == [(uids[1], len(raws[1])), (uids[2], len(raws[2]))]
    assert await box.sizes_after(uids[-1]) == []  # `n:*` past the end still names the last one
    assert await box.sizes([uids[2], uids[0], 999]) == [(uids[0], len(raws[0])),
                                                        (uids[2], len(raws[2]))]


async def test_fetch_returns_the_messages_and_leaves_them_unseen(
        dovecot: Dovecot, user: MailUser, box: Mailbox) -> None:
    raws = [message(f"m{i}") for i in range(3)]
    uids = [dovecot.append(user, raw) for raw in raws]
    await box.select(readonly=False)  # SELECT would let a plain BODY[] set \Seen
    fetched = await box.fetch([uids[2], uids[0], uids[1], 4242])
    assert [(f.uid, f.raw, f.size, f.truncated) for f in fetched] == [
        (uid, raw, len(raw), False) for uid, raw in zip(uids, raws, strict=True)]
    for uid in uids:
        assert "\\Seen" not in dovecot.flags(user, uid)


async def test_fetch_of_many_uids_with_gaps(dovecot: Dovecot, user: MailUser,
                                            box: Mailbox) -> None:
    uids = [dovecot.append(user, message(f"m{i}", body_bytes=10)) for i in range(12)]
    wanted = uids[::2] * 50  # 300 entries, duplicates and gaps: a few short commands
    await box.select()
    assert [f.uid for f in await box.fetch(wanted)] == uids[::2]
    assert uid_set(range(1, 501)) == "1:500"
    assert uid_set([9, 1, 2, 3, 5, 4, 12, 13, 9]) == "1:5,9,12:13"


async def test_partial_fetch_of_a_large_message(dovecot: Dovecot, user: MailUser,
                                                box: Mailbox) -> None:
    large = message("large", body_bytes=1_000_000)
    small = message("small", body_bytes=50)
    uids = [dovecot.append(user, large), dovecot.append(user, small)]
    await box.select()
    head, whole = await box.fetch(uids, max_bytes=4096)
    assert (head.uid, head.raw, head.size, head.truncated) == (
        uids[0], large[:4096], len(large), True)
    assert (whole.raw, whole.truncated) == (small, False)


async def test_a_30_mb_message_whole_and_in_part(dovecot: Dovecot, user: MailUser,
                                                 box: Mailbox) -> None:
    huge = message("huge", body_bytes=30 * 1024 * 1024)
    uid = dovecot.append(user, huge)
    await box.select()
    [fetched] = await box.fetch([uid])
    assert fetched.size == len(huge) and not fetched.truncated
    assert fetched.raw == huge
    [prefix] = await box.fetch([uid], max_bytes=1_000_000)
    assert prefix.raw == huge[:1_000_000] and prefix.truncated


async def test_message_ids_as_written(dovecot: Dovecot, user: MailUser, box: Mailbox) -> None:
    plain = dovecot.append(user, message("a", message_id="<Plain.1@Example.COM>"))
    folded = dovecot.append(user, message("b", message_id="\r\n <folded@example.com>"))
    missing = dovecot.append(user, message("c"))
    await box.select()
    assert await box.message_ids([plain, folded, missing, 999]) == {
        plain: "<Plain.1@Example.COM>", folded: "<folded@example.com>", missing: None}


async def test_search_since(dovecot: Dovecot, user: MailUser, box: Mailbox) -> None:
    uids = [dovecot.append(user, message(f"m{i}")) for i in range(2)]
    await box.select()
    assert await box.search_since(date.today() - timedelta(days=1)) == uids
    assert await box.search_since(date.today() + timedelta(days=2)) == []


async def test_a_thousand_messages_fetch_fast(dovecot: Dovecot, user: MailUser,
                                              box: Mailbox) -> None:
    # 1,500 answer lines in one read broke aioimaplib's recursive reader
    for i in range(1500):
        dovecot.deliver(user, message(f"bulk {i}", body_bytes=5000))
    await box.select()
    sizes = await box.sizes_after(0)
    assert len(sizes) == 1500
    uids = [uid for uid, _ in sizes[:1000]]
    started = time.monotonic()
    fetched = [f for i in range(0, 1000, 200) for f in await box.fetch(uids[i:i + 200])]
    rate = len(fetched) / (time.monotonic() - started)
    assert [f.uid for f in fetched] == uids and all(b"bulk " in f.raw for f in fetched)
    assert rate >= 500, f"{rate:.0f} messages/s"


# IDLE

async def _idling(box: Mailbox, timeout: float) -> tuple[asyncio.Task[bool], float]:
    task = asyncio.ensure_future(box.idle(timeout))
    # append only once the server has accepted IDLE, so the push is what we see
    await eventually(lambda: box._protocol.has_pending_idle_command()
                     and box._protocol._idle_event.is_set(), timeout=5, what="IDLE")
    return task, time.monotonic()


async def test_idle_wakes_on_an_append_by_another_connection(
        dovecot: Dovecot, user: MailUser, box: Mailbox) -> None:
    await box.select()
    task, _ = await _idling(box, 20)
    await asyncio.to_thread(dovecot.append, user, message("pushed"))
    appended = time.monotonic()
    assert await asyncio.wait_for(task, 5) is True
    assert time.monotonic() - appended < 2
    assert [uid for uid, _ in await box.sizes_after(0)] == dovecot.uids(user)


async def test_idle_wakes_on_a_delivery_into_the_maildir(
        dovecot: Dovecot, user: MailUser, box: Mailbox) -> None:
    await box.select()
    task, _ = await _idling(box, 20)
    dovecot.deliver(user, message("delivered"))
    delivered = time.monotonic()
    assert await asyncio.wait_for(task, 5) is True
    assert time.monotonic() - delivered < 2
    [fetched] = await box.fetch([uid for uid, _ in await box.sizes_after(0)])
    assert b"Subject: delivered" in fetched.raw


async def test_idle_times_out_without_news_and_the_connection_goes_on(
        dovecot: Dovecot, user: MailUser, box: Mailbox) -> None:
    await box.select()
    started = time.monotonic()
    assert await box.idle(0.5) is False
    assert 0.5 <= time.monotonic() - started < 3
    assert await box.sizes_after(0) == []  # IDLE was ended: commands work again


async def test_new_mail_seen_by_an_earlier_command_counts_for_idle(
        dovecot: Dovecot, user: MailUser, box: Mailbox) -> None:
    await box.select()
    uid = dovecot.append(user, message("between"))
    # Dovecot reports the EXISTS with this command's answer, and never again
    await eventually(lambda: box.sizes_after(0), timeout=5, what="the new message")
    started = time.monotonic()
    assert await box.idle(10) is True
    assert time.monotonic() - started < 1
    assert await box.sizes_after(uid) == []


async def test_idle_needs_the_capability(dovecot: Dovecot, user: MailUser,
                                         box: Mailbox) -> None:
    assert box.has_idle
    await box.select()
    box.capabilities = box.capabilities - {"IDLE"}  # as a server without IDLE says
    with pytest.raises(ImapUnavailable, match="IDLE"):
        await box.idle(1)


# server events

async def test_a_new_uidvalidity_is_reported_and_the_messages_stay(
        dovecot: Dovecot, user: MailUser) -> None:
    raws = [message(f"m{i}") for i in range(2)]
    for raw in raws:
        dovecot.append(user, raw)
    before = await check_login(server(dovecot, user))
    changed = dovecot.change_uidvalidity(user)
    assert changed != before.uidvalidity
    async with await Mailbox.open(server(dovecot, user)) as box:
        after = await box.select()
        assert (after.uidvalidity, after.exists) == (changed, 2)
        uids = [uid for uid, _ in await box.sizes_after(0)]
        assert sorted(f.raw for f in await box.fetch(uids)) == sorted(raws)


async def test_a_kicked_connection_is_unavailable_at_once(
        dovecot: Dovecot, user: MailUser) -> None:
    async with await Mailbox.open(server(dovecot, user, timeout=20)) as box:
        await box.select()
        dovecot.kick(user)
        started = time.monotonic()

        async def still_answering() -> bool:  # the server may finish one more command
            await box.sizes_after(0)
            return False

        with pytest.raises(ImapUnavailable):
            await eventually(still_answering, timeout=5)
        assert time.monotonic() - started < 5
        with pytest.raises(ImapUnavailable):
            await box.select()


async def test_a_kick_during_idle_is_unavailable(dovecot: Dovecot, user: MailUser) -> None:
    async with await Mailbox.open(server(dovecot, user, timeout=20)) as box:
        await box.select()
        task, _ = await _idling(box, 60)
        dovecot.kick(user)
        with pytest.raises(ImapUnavailable):
            await asyncio.wait_for(task, 5)


# folders

async def test_special_folder_finds_sent_and_append_files_there(
        dovecot: Dovecot, user: MailUser, box: Mailbox) -> None:
    sent = await box.special_folder()
    assert sent == "Sent"
    assert await box.special_folder("\\Trash") == "Trash"
    assert await box.special_folder("\\Archive") is None
    copy = message("our reply", message_id="<reply@example.com>")
    await box.append(sent, copy)
    [uid] = dovecot.uids(user, "Sent")
    assert "\\Seen" in dovecot.flags(user, uid, "Sent")
    await box.select(sent)
    assert [f.raw for f in await box.fetch([uid])] == [copy]


async def test_folder_names_with_spaces_and_accents(
        dovecot: Dovecot, user: MailUser, box: Mailbox) -> None:
    for name in ("Old Mail", "Éléments envoyés"):
        with pytest.raises(ImapError, match="APPEND"):
            await box.append(name, message("nowhere yet"))
        dovecot.create_folder(user, name)  # doveadm: UTF-8 in, its own encoding
        await box.append(name, message(name))
        assert (await box.select(name)).exists == 1
    assert encode_folder("Entwürfe & Co") == "Entw&APw-rfe &- Co"
    assert decode_folder("~peter/mail/&U,BTFw-/&ZeVnLIqe-") == "~peter/mail/台北/日本語"


# TLS

async def test_tls_and_starttls_with_a_trusted_certificate(
        dovecot: Dovecot, user: MailUser) -> None:
    trusted = dovecot.ssl_context()
    over_tls = ImapServer(dovecot.host, dovecot.ssl_port, "ssl", user.address, user.password)
    upgraded = ImapServer(dovecot.host, dovecot.port, "starttls", user.address, user.password)
    for settings in (over_tls, upgraded):
        async with await Mailbox.open(settings, ssl_context=trusted) as box:
            assert "STARTTLS" not in box.capabilities
            assert (await box.select()).exists == 0


async def test_an_untrusted_certificate_is_refused(dovecot: Dovecot, user: MailUser) -> None:
    for tls, port in (("ssl", dovecot.ssl_port), ("starttls", dovecot.port)):
        settings = ImapServer(dovecot.host, port, tls, user.address, user.password)  # type: ignore[arg-type]
        with pytest.raises(ImapUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await Mailbox.open(settings)


async def test_a_stopped_server_leaves_no_pid_and_starts_again() -> None:
    directory = Path(tempfile.mkdtemp(prefix="bidi-dovecot-"))  # as the fixture's
    try:
        second = Dovecot.start(directory)
        pid = int((directory / "run" / "master.pid").read_text())
        second.stop()
        assert not (directory / "run" / "master.pid").exists()
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
        again = Dovecot.start(directory)
        try:
            await check_login(server(again, again.add_user()))
        finally:
            again.stop()
    finally:
        shutil.rmtree(directory)
