"""Email through the running engine, against a real Dovecot (IMAP) and an
aiosmtpd server on loopback (tests/peers), one WebSocket subscriber of the
org counting `message.received` frames.

1. backfill: a mailbox connected and idle, switched off; 5,000 messages
   (500 correspondents, ten messages each, every one answering the last)
   written into its maildir; switched on: figure: messages fetched,
   parsed, stored and delivered to the subscriber per second, from the
   switch to the last frame.
2. IDLE arrival: 200 messages, one at a time, each submitted over SMTP to
   the aiosmtpd server, which writes it into the maildir (the clock starts
   there); figure: p99 of the time from that write to its WebSocket frame.
3. SMTP replies: 1,000 replies POSTed at once over 100 of the backfilled
   conversations; figure: replies the SMTP server received per second,
   from the first POST to the last received.

Last line: {"backfill_msgs_per_s", "idle_p99_ms", "smtp_sends_per_s"}.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# This file has the name of the standard library's `email` package (and
# bench/telegram.py that of the Bot API client's): the folder stays off the
# path, here and in the Ray workers.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

from email.message import EmailMessage  # noqa: E402
from email.utils import format_datetime  # noqa: E402

import aiosmtplib  # noqa: E402
import httpx  # noqa: E402

from bench.realtime import cpu_note, seed  # noqa: E402
from bench.subscribers import Subscriber  # noqa: E402
from core.security import issue_access_token  # noqa: E402
from core.settings import load_settings  # noqa: E402
from serve.stack import Stack, free_port  # noqa: E402
from tests.peers.dovecot import Dovecot, MailUser  # noqa: E402
from tests.peers.smtp import Received, SmtpPeer  # noqa: E402


def letter(sender: str, to: str, subject: str, text: str, message_id: str,
           parent: str | None, when: datetime) -> bytes:
    message = EmailMessage()
    message["From"] = f"Buyer <{sender}>"
    message["To"] = to
    message["Subject"] = subject if parent is None else f"Re: {subject}"
    message["Date"] = format_datetime(when)
    message["Message-ID"] = message_id
    if parent is not None:
        message["In-Reply-To"] = parent
        message["References"] = parent
    message.set_content(f"{text}\n\nBest regards,\nA buyer\n")
    message.add_alternative(f"<p>{text}</p><p>Best regards,<br>A buyer</p>", subtype="html")
    return message.as_bytes()


async def wait_for(predicate: Any, timeout: float, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


async def switch(api: httpx.AsyncClient, headers: dict[str, str], integration: str,
                 on: bool) -> None:
    resp = await api.patch(f"/v1/integrations/{integration}", headers=headers,
                           json={"is_active": on})
    resp.raise_for_status()


async def backfill(api: httpx.AsyncClient, headers: dict[str, str], sub: Subscriber,
                   dovecot: Dovecot, box: MailUser, integration: str, people: int,
                   each: int) -> float:
    await switch(api, headers, integration, False)
    when = datetime.now(UTC) - timedelta(hours=1)
    for p in range(people):
        sender = f"buyer{p}-{uuid.uuid4().hex[:6]}@client.test"
        parent = None
        for n in range(each):
            message_id = f"<b{p}-{n}-{uuid.uuid4().hex[:8]}@client.test>"
            dovecot.deliver(box, letter(sender, box.address, f"Order {p}", f"message {n}",
                                        message_id, parent, when))
            parent = message_id
    total = people * each
    base = sub.count
    started = time.perf_counter()
    await switch(api, headers, integration, True)
    done = await wait_for(lambda: sub.count - base >= total, timeout=240, step=0.05)
    got = sub.count - base
    elapsed = (sub.last_at if done else time.perf_counter()) - started
    print(f"backfill: {got:,} of {total:,} delivered in {elapsed:.1f} s", flush=True)
    return got / elapsed


async def idle_latency(sub: Subscriber, smtp: SmtpPeer, box: MailUser, dovecot: Dovecot,
                       count: int) -> list[float]:
    written: dict[str, float] = {}
    lock = threading.Lock()

    def deliver(received: Received) -> None:
        dovecot.deliver(box, received.raw)
        with lock:
            written[str(received.message["Subject"])] = time.perf_counter()
    smtp.deliver_to(deliver)
    login = smtp.add_user()
    latencies: list[float] = []
    client = aiosmtplib.SMTP(hostname=smtp.host, port=smtp.port, use_tls=False,
                             start_tls=False)
    await client.connect()
    await client.login(*login)
    try:
        for n in range(count):
            subject = f"idle-{n}-{uuid.uuid4().hex[:8]}"
            message = EmailMessage()
            message["From"] = f"idle{n}@client.test"
            message["To"] = box.address
            message["Subject"] = subject
            message["Message-ID"] = f"<{subject}@client.test>"
            message.set_content(f"arrival {n}")
            await client.send_message(message)
            if not await wait_for(lambda s=subject: sub.seen_subject(s), timeout=10):
                print(f"idle: {subject} never arrived", flush=True)
                latencies.append(10.0)
                continue
            latencies.append(sub.subject_at(subject) - written[subject])
            await asyncio.sleep(0.05)
    finally:
        smtp.deliver_to(None)
        await client.quit()
    return latencies


async def replies(api: httpx.AsyncClient, headers: dict[str, str], smtp: SmtpPeer,
                  count: int, chats: int) -> float:
    listed = await api.get("/v1/chats", headers=headers,
                           params={"channel": "email", "limit": chats})
    listed.raise_for_status()
    ids = [c["id"] for c in listed.json()["data"]][:chats]
    base = len(smtp.received)
    started = time.perf_counter()
    sends = [api.post(f"/v1/chats/{ids[n % len(ids)]}/messages", headers=headers,
                      json={"content": f"reply {n}"}) for n in range(count)]
    for resp in await asyncio.gather(*sends):
        resp.raise_for_status()
    done = await wait_for(lambda: len(smtp.received) - base >= count, timeout=120)
    elapsed = time.perf_counter() - started
    got = len(smtp.received) - base
    print(f"smtp: {got:,} of {count:,} replies received in {elapsed:.1f} s"
          f"{'' if done else ' (timed out)'}", flush=True)
    return got / elapsed


class MailSubscriber(Subscriber):
    """The org's frames, with when each subject's message arrived."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.arrived: dict[str, float] = {}

    def on_frame(self, frame: dict[str, Any]) -> None:
        if frame.get("event_type") == "message.received":
            subject = (((frame.get("data") or {}).get("data") or {}).get("email") or {}).get(
                "subject")
            if subject:
                self.arrived[subject] = time.perf_counter()

    def seen_subject(self, subject: str) -> bool:
        return subject in self.arrived

    def subject_at(self, subject: str) -> float:
        return self.arrived[subject]


async def measure(stack: Stack, dovecot: Dovecot, smtp: SmtpPeer,
                  args: argparse.Namespace) -> dict[str, float]:
    settings = stack.settings
    org, user, _, _ = await seed(settings)
    token = issue_access_token(settings.jwt_secret.get_secret_value(), user, org, "owner",
                               ttl=3600)
    headers = {"Authorization": f"Bearer {token}"}
    box = dovecot.add_user()
    sub = MailSubscriber(f"{stack.ws_url}?token={token}")
    await sub.start()
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=120) as api:
        login = smtp.add_user()
        resp = await api.post("/v1/integrations", headers=headers, json={
            "type": "email", "name": "Bench inbox", "config": {
                "address": box.address,
                "imap": {"host": dovecot.host, "port": dovecot.port, "tls": "none",
                         "username": box.address, "password": box.password},
                "smtp": {"host": smtp.host, "port": smtp.port, "tls": "none",
                         "username": login[0], "password": login[1]}}})
        resp.raise_for_status()
        integration = resp.json()["id"]
        rate = await backfill(api, headers, sub, dovecot, box, integration, args.people,
                              args.each)
        latencies = await idle_latency(sub, smtp, box, dovecot, args.idle)
        p50 = statistics.median(latencies) * 1000
        p99 = sorted(latencies)[max(0, int(len(latencies) * 0.99) - 1)] * 1000
        print(f"idle: {len(latencies)} arrivals, p50 {p50:.1f} ms, p99 {p99:.1f} ms",
              flush=True)
        sends = await replies(api, headers, smtp, args.replies, args.reply_chats)
    await sub.close()
    return {"backfill_msgs_per_s": rate, "idle_p99_ms": p99, "smtp_sends_per_s": sends}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=500)
    parser.add_argument("--each", type=int, default=10)
    parser.add_argument("--idle", type=int, default=200)
    parser.add_argument("--replies", type=int, default=1000)
    parser.add_argument("--reply-chats", type=int, default=100)
    args = parser.parse_args()
    print(f"machine: {cpu_note()}", flush=True)
    # Dovecot's own users must get into its folder: not a 0700 temporary one.
    mail_dir = Path(tempfile.mkdtemp(prefix="bidi-bench-dovecot-"))
    with tempfile.TemporaryDirectory(prefix="bidi-bench-") as tmp:
        dovecot = Dovecot.start(mail_dir)
        smtp = SmtpPeer.start()
        try:
            settings = load_settings(data_dir=tmp, port=free_port(),
                                     rate_per_minute=10**9, rate_burst=10**9, pool_size=20,
                                     outbound_allow_networks="127.0.0.1/32")  # the peers
            with Stack(settings, dashboard=False) as stack:
                figures = asyncio.run(measure(stack, dovecot, smtp, args))
        finally:
            smtp.stop()
            dovecot.stop()
            shutil.rmtree(mail_dir, ignore_errors=True)
    print(json.dumps({k: round(v, 2) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
