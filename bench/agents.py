"""AI agent turns through the running engine, with a zero-latency fake LLM
(tests/fakes/openai.py, in a thread of this script) behind the real OpenAI
SDK over HTTP, and agent memory search in pgvector.

1. saturation: 2,000 API-channel chats, each with a draft-mode agent
   assigned; one inbound message to each, POSTed as fast as the load
   generator goes; figure: drafts delivered to a WebSocket subscriber per
   second (each a full turn: the chat actor, a run slot, the org's token
   count, the prompt's facts, one completion, the draft committed and
   relayed), from the first POST to the last draft frame.
2. steady: 50 turns a second for 8 s over 400 other chats; figure: p99 of
   the time from the inbound POST's answer (the message committed, i.e.
   `message.received`) to its draft's WebSocket frame.
3. memory: bench/memory.py's phase (100,000 memories of one org; HNSW
   search against the exact scan in the same run; recall@10 over 200
   queries; the index build time).

Last line: {"agent_turns_per_s", "agent_overhead_p99_ms", "memory_p95_ms",
"memory_recall_at_10", "exact_p95_ms", "index_build_s"}.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

# bench/ holds email.py and telegram.py, which would shadow the standard
# library's `email` and the Bot API client's `telegram`: off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from bench.memory import memory_phase  # noqa: E402
from bench.realtime import cpu_note, seed  # noqa: E402
from bench.subscribers import Subscriber  # noqa: E402
from channels import signing  # noqa: E402
from core.security import issue_access_token  # noqa: E402
from core.settings import load_settings  # noqa: E402
from serve.stack import Stack, free_port  # noqa: E402
from tests.fakes.openai import FakeOpenAI  # noqa: E402


class Drafts(Subscriber):
    """The org's frames: when each chat's draft arrived."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.drafted: dict[str, float] = {}

    async def _read(self) -> None:
        import websockets

        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame.get("event_type") == "message.created" \
                        and (frame.get("data") or {}).get("ai_draft"):
                    self.drafted.setdefault(frame["data"]["chat_id"], time.perf_counter())
        except websockets.ConnectionClosed:
            pass


def signed(inbox: dict[str, str], thread: str, text: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"external_message_id": uuid.uuid4().hex, "thread_id": thread,
                       "sender": {"id": f"s-{thread}", "name": "Bench Buyer"},
                       "text": text}).encode()
    headers = signing.headers(inbox["secret"], "msg_" + uuid.uuid4().hex, body)
    headers["content-type"] = "application/json"
    return body, headers


async def chats_with_agent(api: httpx.AsyncClient, headers: dict[str, str],
                           inbox: dict[str, str], agent: str, count: int) -> list[tuple[str, str]]:
    """`count` chats of the inbox, each with one message and the agent assigned."""
    made: list[tuple[str, str]] = []
    sem = asyncio.Semaphore(32)

    async def one(n: int) -> None:
        thread = f"b-{uuid.uuid4().hex[:10]}"
        async with sem:
            body, hdrs = signed(inbox, thread, "hello")
            resp = await api.post(f"/v1/channels/api/{inbox['id']}/messages", content=body,
                                  headers=hdrs)
            resp.raise_for_status()
            chat = resp.json()["chat_id"]
            resp = await api.patch(f"/v1/chats/{chat}", headers=headers,
                                   json={"assigned_agent_id": agent})
            resp.raise_for_status()
        made.append((thread, chat))
    await asyncio.gather(*(one(n) for n in range(count)))
    return made


async def post_turn(api: httpx.AsyncClient, inbox: dict[str, str], thread: str) -> float:
    body, hdrs = signed(inbox, thread, "How much for 40 seats, and can we start in May?")
    resp = await api.post(f"/v1/channels/api/{inbox['id']}/messages", content=body,
                          headers=hdrs)
    resp.raise_for_status()
    return time.perf_counter()


async def saturation(api: httpx.AsyncClient, inbox: dict[str, str], sub: Drafts,
                     chats: list[tuple[str, str]]) -> float:
    sem = asyncio.Semaphore(64)
    started = time.perf_counter()

    async def one(thread: str) -> None:
        async with sem:
            await post_turn(api, inbox, thread)
    await asyncio.gather(*(one(t) for t, _ in chats))
    wanted = {c for _, c in chats}
    deadline = time.monotonic() + 120
    while not wanted <= sub.drafted.keys() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    got = wanted & sub.drafted.keys()
    last = max(sub.drafted[c] for c in got)
    print(f"saturation: {len(got)} of {len(wanted)} drafts in {last - started:.1f} s",
          flush=True)
    return len(got) / (last - started)


async def steady(api: httpx.AsyncClient, inbox: dict[str, str], sub: Drafts,
                 chats: list[tuple[str, str]], rate: float) -> list[float]:
    committed: dict[str, float] = {}
    tasks = []
    started = time.perf_counter()
    for n, (thread, chat) in enumerate(chats):
        due = started + n / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))

        async def one(thread: str = thread, chat: str = chat) -> None:
            committed[chat] = await post_turn(api, inbox, thread)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    deadline = time.monotonic() + 60
    while not committed.keys() <= sub.drafted.keys() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    latencies = sorted((sub.drafted[c] - t) * 1000 for c, t in committed.items()
                       if c in sub.drafted)
    print(f"steady: {len(latencies)} of {len(chats)} drafts at {rate:.0f}/s; p50"
          f" {latencies[len(latencies) // 2]:.1f} ms, p99"
          f" {latencies[int(len(latencies) * 0.99) - 1]:.1f} ms", flush=True)
    return latencies


async def measure(stack: Stack, fake: FakeOpenAI, args: argparse.Namespace) -> dict[str, float]:
    settings = stack.settings
    org, user, integration, secret = await seed(settings)
    inbox = {"id": integration, "secret": secret}
    token = issue_access_token(settings.jwt_secret.get_secret_value(), user, org, "owner",
                               ttl=3600)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=120,
                                 limits=httpx.Limits(max_connections=64)) as api:
        key = fake.new_key()
        resp = await api.post("/v1/integrations", headers=headers, json={
            "type": "openai", "name": "bench", "config": {"api_key": key,
                                                          "base_url": fake.url + "/v1"}})
        resp.raise_for_status()
        resp = await api.post("/v1/agents", headers=headers, json={
            "name": "Bench SDR", "type": "sdr", "model": "gpt-4o-mini", "tools": [],
            "guardrails": {"max_tokens_per_org_per_day": 10**9,
                           "max_concurrent_runs": 64}})
        resp.raise_for_status()
        agent = resp.json()["id"]
        burst = await chats_with_agent(api, headers, inbox, agent, args.saturation)
        paced = await chats_with_agent(api, headers, inbox, agent,
                                       int(args.rate * args.steady_seconds))
        sub = Drafts(f"{stack.ws_url}?token={token}")
        await sub.start()
        turns = await saturation(api, inbox, sub, burst)
        latencies = await steady(api, inbox, sub, paced, args.rate)
        await sub.close()
    return {"agent_turns_per_s": turns,
            "agent_overhead_p99_ms": latencies[int(len(latencies) * 0.99) - 1]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--saturation", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--steady-seconds", type=float, default=8.0)
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    print(f"machine: {cpu_note()}", flush=True)
    fake = FakeOpenAI(free_port()).start()
    try:
        with tempfile.TemporaryDirectory(prefix="bidi-bench-") as tmp:
            settings = load_settings(data_dir=tmp, port=free_port(), rate_per_minute=10**9,
                                     rate_burst=10**9, pool_size=20, ai_runs_per_minute=10**6,
                                     outbound_allow_networks="127.0.0.1/32")  # the fake
            with Stack(settings, dashboard=False) as stack:
                figures = asyncio.run(measure(stack, fake, args))
                running = stack.settings  # the embedded Postgres's URL, once started
                assert running.database_url is not None
                figures.update(asyncio.run(memory_phase(
                    running.database_url, running.app_db_password.get_secret_value(),
                    count=args.memories, queries=args.queries)))
    finally:
        fake.stop()
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
