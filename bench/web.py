"""The web inbox in a real headless Chromium (Debian's), against the whole
engine started here (embedded Postgres and Redis, Ray, Serve and its
HAProxy ingress).

1. first load: a signed-in user (a refresh token in the page's storage, as
   after any earlier visit) opens `/` in a fresh browser context (empty
   cache); figure: milliseconds from navigation start to the chat list
   rendered with its first chat (the page is then interactive: the list is
   built from the API and its buttons are live), the median of N loads.
2. render latency: one conversation open; inbound messages POSTed, signed,
   to the API channel one at a time at a steady rate; the page records
   (MutationObserver, `Date.now()`) when each message's element appears;
   figure: p50/p95 of rendered minus the instant just before its POST
   (browser and this process share the machine's clock).
3. shipped bytes: every JS and CSS file the inbox loads, and the widget,
   fetched through the ingress with `Accept-Encoding: gzip`; figure: KB
   (1,000 bytes) on the wire, headers excluded.

Last line: {"render_p50_ms", "render_p95_ms", "first_load_ms",
"inbox_kb_gz", "widget_kb_gz"}.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # bench/email.py
sys.path.insert(0, str(HERE.parent))

import httpx  # noqa: E402
from playwright.async_api import Browser, Page, async_playwright  # noqa: E402
from playwright.async_api import TimeoutError as PlaywrightTimeout  # noqa: E402

from bench.realtime import cpu_note  # noqa: E402
from channels import signing  # noqa: E402
from core.settings import load_settings  # noqa: E402
from serve.stack import Stack, free_port  # noqa: E402

WEB = HERE.parent / "serve" / "web"
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery"
RECORDER = """() => {
  window.__rendered = {};
  new MutationObserver((records) => {
    const now = Date.now();
    for (const record of records) for (const node of record.addedNodes) {
      if (node.nodeType !== 1) continue;
      const found = node.matches('[data-message-id]') ? [node]
        : node.querySelectorAll('[data-message-id]');
      for (const el of found) window.__rendered[el.dataset.messageId] ??= now;
    }
  }).observe(document.body, {childList: true, subtree: true});
}"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def inbound(api: httpx.AsyncClient, inbox: dict[str, str], thread: str,
                  text: str) -> dict[str, str]:
    body = json.dumps({"external_message_id": uuid.uuid4().hex, "thread_id": thread,
                       "sender": {"id": f"s-{thread}", "name": "Web Bench"},
                       "text": text}).encode()
    headers = signing.headers(inbox["secret"], "msg_" + uuid.uuid4().hex, body)
    headers["content-type"] = "application/json"
    resp = await api.post(f"/v1/channels/api/{inbox['id']}/messages", content=body,
                          headers=headers)
    resp.raise_for_status()
    return resp.json()


async def shipped(api: httpx.AsyncClient) -> tuple[float, float]:
    """Gzip bytes on the wire: the inbox's JS+CSS, and the widget."""
    async def size(path: str) -> int:
        resp = await api.get(path, headers={"Accept-Encoding": "gzip"})
        resp.raise_for_status()
        assert resp.headers.get("content-encoding") == "gzip", path
        return resp.num_bytes_downloaded

    inbox = [f"/static/{p.relative_to(WEB).as_posix()}" for p in sorted(WEB.rglob("*"))
             if p.suffix in (".js", ".css") and p.name != "widget.js"]
    total = sum([await size(p) for p in inbox])
    return total / 1000, await size("/widget.js") / 1000


async def signed_in_context(browser: Browser, refresh: str) -> Page:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    await context.add_init_script(
        "localStorage.getItem('bidi.session') || localStorage.setItem('bidi.session',"
        f" JSON.stringify({{refresh_token: {json.dumps(refresh)}}}))")
    return await context.new_page()


async def measure(stack: Stack, args: argparse.Namespace) -> dict[str, float]:
    base = stack.api_url
    async with httpx.AsyncClient(base_url=base, timeout=30) as api:
        resp = await api.post("/v1/auth/register", json={
            "email": f"web-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD,
            "name": "Web Bench", "organization_name": "Web Bench"})
        resp.raise_for_status()
        account = resp.json()
        headers = {"Authorization": f"Bearer {account['access_token']}"}
        resp = await api.post("/v1/integrations", headers=headers,
                              json={"type": "api", "name": "web bench"})
        resp.raise_for_status()
        inbox = {"id": resp.json()["id"], "secret": resp.json()["secret"]}
        # A realistic list: 30 conversations, one message each.
        chats = [(await inbound(api, inbox, f"t-{n}", f"hello {n}"))["chat_id"]
                 for n in range(30)]
        inbox_kb, widget_kb = await shipped(api)

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True,
                args=["--no-sandbox", "--disable-dev-shm-usage"])
            refresh = account["refresh_token"]
            loads: list[float] = []
            for n in range(args.loads + 1):
                page = await signed_in_context(browser, refresh)
                await page.goto(f"{base}/#/inbox")
                await page.wait_for_selector("[data-chat-id]")
                elapsed = await page.evaluate("performance.now()")
                refresh = json.loads(await page.evaluate(
                    "localStorage.getItem('bidi.session')"))["refresh_token"]
                await page.context.close()
                if n:  # the first warms the server's caches, not the browser's
                    loads.append(elapsed)

            page = await signed_in_context(browser, refresh)
            chat = chats[-1]
            thread = "t-29"
            await page.goto(f"{base}/#/inbox/{chat}")
            await page.wait_for_selector("[data-message-id]")
            await page.evaluate(RECORDER)
            posted: dict[str, float] = {}
            gap = 1 / args.rate
            for n in range(args.messages):
                started = time.time() * 1000
                answer = await inbound(api, inbox, thread, f"message {n}")
                posted[answer["id"]] = started
                await asyncio.sleep(max(0.0, gap - (time.time() * 1000 - started) / 1000))
            with contextlib.suppress(PlaywrightTimeout):  # what is missing is said below
                await page.wait_for_function("ids => ids.every((id) => id in window.__rendered)",
                                             arg=list(posted), timeout=30_000)
            rendered: dict[str, float] = await page.evaluate("window.__rendered")
            missing = len(posted.keys() - rendered.keys())
            latencies = [rendered[i] - t for i, t in posted.items() if i in rendered]
            await browser.close()
    print(f"first load: {[round(x) for x in loads]} ms; rendered {len(latencies)}"
          f"/{len(posted)} (missing {missing})", flush=True)
    if missing:
        raise SystemExit(f"{missing} messages never rendered")
    return {"render_p50_ms": statistics.median(latencies),
            "render_p95_ms": percentile(latencies, 0.95),
            "first_load_ms": statistics.median(loads),
            "inbox_kb_gz": inbox_kb, "widget_kb_gz": widget_kb}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0, help="inbound messages per second")
    parser.add_argument("--loads", type=int, default=10, help="cold first loads measured")
    args = parser.parse_args()
    print(f"machine: {cpu_note()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bidi-bench-") as tmp:
        settings = load_settings(data_dir=tmp, port=free_port(), hosts=2)
        with Stack(settings, dashboard=False) as stack:
            figures = asyncio.run(measure(stack, args))
    print(json.dumps({k: round(v, 1) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
