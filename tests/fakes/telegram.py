"""A Telegram Bot API server on loopback, for the connector's tests.

Routes `/bot<token>/<method>` (GET or POST; query, form or JSON parameters,
as PTB sends them) and `/file/bot<token>/<path>`. Only tokens added with
`add_bot` are known (others answer 401 as Telegram does). Every call is
recorded; faults are scripted per token and method (`fail`, `delay`,
`drop`); `getUpdates` long-polls the queue `enqueue` fills, confirms by
offset and answers 409 while a webhook is set. The server runs in its own
thread: shared state is behind one lock. Update builders are in
tests.fakes.telegram_updates."""
from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.fakes.serving import serve_in_thread

# Parameters that are strings even when they look like JSON (PTB sends a str as is).
STRINGS = frozenset({"text", "url", "secret_token", "file_id", "callback_query_id", "action",
                     "caption", "description", "data", "parse_mode"})


@dataclass
class Call:
    token: str
    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


@dataclass
class Fault:
    status: int | None = None  # answer this error ...
    description: str = ""
    retry_after: int | None = None
    delay: float = 0.0  # ... after waiting this long (then answer normally when no status)
    drop: bool = False  # or cut the connection mid-answer


@dataclass
class Bot:
    token: str
    id: int
    username: str
    first_name: str
    webhook: dict[str, Any] | None = None
    updates: list[dict[str, Any]] = field(default_factory=list)
    message_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    @property
    def user(self) -> dict[str, Any]:
        return {"id": self.id, "is_bot": True, "first_name": self.first_name,
                "username": self.username}


@dataclass
class StoredFile:
    content: bytes
    file_path: str
    reported_size: int | None


class _Dropped(Response):
    """Promises a body it never finishes: the client sees the peer hang up."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", b"1000")]})
        await send({"type": "http.response.body", "body": b'{"ok":', "more_body": True})


def _error(status: int, description: str, retry_after: int | None = None) -> JSONResponse:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return JSONResponse(body, status_code=status)


def _ok(result: Any) -> JSONResponse:
    return JSONResponse({"ok": True, "result": result})


def _value(key: str, raw: str) -> Any:
    if key in STRINGS:
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


class FakeTelegram:
    def __init__(self, port: int) -> None:
        self.port = port
        self.calls: list[Call] = []
        self._bots: dict[str, Bot] = {}
        self._files: dict[str, StoredFile] = {}
        self._faults: dict[tuple[str, str], deque[Fault]] = {}
        self._lock = threading.Lock()
        self._waiters: set[asyncio.Event] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ids = itertools.count(7_000_000_001)
        self._server: uvicorn.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- what tests set up ------------------------------------------------

    def add_bot(self, username: str = "bidi_test_bot", first_name: str = "Bidi") -> str:
        """A new known bot; returns its token."""
        bot_id = next(self._ids)
        token = f"{bot_id}:{secrets.token_urlsafe(27)}"
        with self._lock:
            self._bots[token] = Bot(token, bot_id, username, first_name)
        return token

    def bot(self, token: str) -> Bot:
        with self._lock:
            return self._bots[token]

    def enqueue(self, token: str, *updates: dict[str, Any]) -> None:
        with self._lock:
            queue = self._bots[token].updates
            queue.extend(updates)
            # Telegram hands updates out in update_id order (ids increase
            # sequentially): keep the queue so, and confirming drops a prefix.
            queue.sort(key=lambda u: u["update_id"])
            waiters, loop = list(self._waiters), self._loop
        for waiter in waiters:
            if loop is not None:
                loop.call_soon_threadsafe(waiter.set)

    def add_file(self, content: bytes, file_path: str = "documents/file_0.pdf", *,
                 reported_size: int | None = -1) -> str:
        """A downloadable file; returns its file_id. getFile reports its true
        size unless `reported_size` says otherwise (None: no size at all)."""
        file_id = f"BQACAgIAAx{secrets.token_urlsafe(24)}"
        size = len(content) if reported_size == -1 else reported_size
        with self._lock:
            self._files[file_id] = StoredFile(content, file_path, size)
        return file_id

    def fail(self, token: str, method: str, status: int, description: str = "", *,
             times: int = 1, retry_after: int | None = None) -> None:
        """The next `times` calls of `method` answer `status` (429 with
        `parameters.retry_after` when given)."""
        default = {400: "Bad Request: chat not found", 403:
                   "Forbidden: bot was blocked by the user", 409:
                   "Conflict: terminated by other getUpdates request; make sure that only"
                   " one bot instance is running", 429: "Too Many Requests: retry after"
                   f" {retry_after}"}
        self._script(token, method, times, Fault(status, description or default.get(
            status, "Internal Server Error"), retry_after))

    def delay(self, token: str, method: str, seconds: float, *, times: int = 1) -> None:
        self._script(token, method, times, Fault(delay=seconds))

    def drop(self, token: str, method: str, *, times: int = 1) -> None:
        self._script(token, method, times, Fault(drop=True))

    def _script(self, token: str, method: str, times: int, fault: Fault) -> None:
        with self._lock:
            self._faults.setdefault((token, method.lower()), deque()).extend([fault] * times)

    def calls_of(self, token: str, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls
                    if c.token == token and c.method.lower() == method.lower()]

    # -- the server -------------------------------------------------------

    def start(self) -> FakeTelegram:
        app = Starlette(routes=[
            Route("/bot{token}/{method}", self.handle, methods=["GET", "POST"]),
            Route("/file/bot{token}/{path:path}", self.download, methods=["GET"]),
        ])
        self._server = serve_in_thread(app, self.port, "fake telegram")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True

    async def _params(self, request: Request) -> dict[str, Any]:
        params: dict[str, Any] = {k: _value(k, v) for k, v in request.query_params.items()}
        if request.method == "POST":
            kind = request.headers.get("content-type", "")
            if kind.startswith("application/json"):
                body = await request.body()
                params.update(json.loads(body) if body else {})
            else:  # PTB posts urlencoded forms when it uploads nothing
                form = parse_qsl((await request.body()).decode(), keep_blank_values=True)
                params.update({k: _value(k, v) for k, v in form})
        return params

    async def handle(self, request: Request) -> Response:
        self._loop = asyncio.get_running_loop()
        token, method = request.path_params["token"], request.path_params["method"]
        params = await self._params(request)
        with self._lock:
            self.calls.append(Call(token, method, params))
            bot = self._bots.get(token)
            faults = self._faults.get((token, method.lower()))
            fault = faults.popleft() if faults else None
        if bot is None:
            return _error(401, "Unauthorized")
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.drop:
                return _Dropped()
            if fault.status is not None:
                return _error(fault.status, fault.description, fault.retry_after)
        answer = getattr(self, f"_{method.lower()}", None)
        if answer is None:
            return _error(404, "Not Found")
        return await answer(bot, params)  # type: ignore[no-any-return]

    async def _getme(self, bot: Bot, _: dict[str, Any]) -> Response:
        return _ok({**bot.user, "can_join_groups": True, "can_read_all_group_messages": False,
                    "supports_inline_queries": False})

    async def _setwebhook(self, bot: Bot, params: dict[str, Any]) -> Response:
        url = params.get("url", "")
        if not str(url).startswith("https://"):
            return _error(400, "Bad Request: bad webhook: An HTTPS URL must be provided for"
                          " webhook")
        with self._lock:
            bot.webhook = {"url": url, "secret_token": params.get("secret_token"),
                           "allowed_updates": params.get("allowed_updates")}
        return _ok(True)

    async def _deletewebhook(self, bot: Bot, _: dict[str, Any]) -> Response:
        with self._lock:
            bot.webhook = None
        return _ok(True)

    async def _getwebhookinfo(self, bot: Bot, _: dict[str, Any]) -> Response:
        with self._lock:
            hook, pending = bot.webhook, len(bot.updates)
        info: dict[str, Any] = {"url": hook["url"] if hook else "",
                                "has_custom_certificate": False, "pending_update_count": pending}
        if hook and hook.get("allowed_updates"):
            info["allowed_updates"] = hook["allowed_updates"]
        return _ok(info)

    async def _getupdates(self, bot: Bot, params: dict[str, Any]) -> Response:
        offset, limit = int(params.get("offset") or 0), int(params.get("limit") or 100)
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        while True:
            wake = asyncio.Event()
            with self._lock:
                if bot.webhook is not None:
                    return _error(409, "Conflict: can't use getUpdates method while webhook"
                                  " is active; use deleteWebhook to delete the webhook first")
                if offset:  # confirmed: gone for good, as on Telegram
                    del bot.updates[:bisect.bisect_left(bot.updates, offset,
                                                        key=lambda u: u["update_id"])]
                ready = bot.updates[:max(1, min(limit, 100))]
                if not ready:
                    self._waiters.add(wake)
            if ready:
                return _ok(ready)
            left = deadline - time.monotonic()
            try:
                if left > 0:
                    await asyncio.wait_for(wake.wait(), left)
            except TimeoutError:
                pass
            finally:
                with self._lock:
                    self._waiters.discard(wake)
            if left <= 0 or not wake.is_set():
                return _ok([])

    async def _sendmessage(self, bot: Bot, params: dict[str, Any]) -> Response:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "Bad Request: message text is empty")
        if len(text.encode("utf-16-le")) // 2 > 4096:
            return _error(400, "Bad Request: message is too long")
        chat_id = params["chat_id"]
        chat = ({"id": chat_id, "type": "private", "first_name": "User"}
                if isinstance(chat_id, int) and chat_id > 0
                else {"id": chat_id, "type": "supergroup", "title": "Group"})
        message: dict[str, Any] = {"message_id": next(bot.message_ids), "from": bot.user,
                                   "chat": chat, "date": int(time.time()), "text": text}
        if "message_thread_id" in params:
            message |= {"message_thread_id": params["message_thread_id"],
                        "is_topic_message": True}
        reply = params.get("reply_parameters")
        if isinstance(reply, dict):
            message["reply_to_message"] = {"message_id": reply["message_id"], "chat": chat,
                                           "date": int(time.time())}
        return _ok(message)

    async def _sendchataction(self, bot: Bot, params: dict[str, Any]) -> Response:
        return _ok(True)

    async def _answercallbackquery(self, bot: Bot, params: dict[str, Any]) -> Response:
        return _ok(True)

    async def _getfile(self, bot: Bot, params: dict[str, Any]) -> Response:
        with self._lock:
            stored = self._files.get(str(params.get("file_id")))
        if stored is None:
            return _error(400, "Bad Request: invalid file_id")
        result: dict[str, Any] = {"file_id": params["file_id"], "file_unique_id": "AgADxyz",
                                  "file_path": stored.file_path}
        if stored.reported_size is not None:
            result["file_size"] = stored.reported_size
        return _ok(result)

    async def download(self, request: Request) -> Response:
        token, path = request.path_params["token"], request.path_params["path"]
        with self._lock:
            self.calls.append(Call(token, "file", {"path": path}))
            known = token in self._bots
            stored = next((f for f in self._files.values() if f.file_path == path), None)
        if not known:
            return _error(401, "Unauthorized")
        if stored is None:
            return _error(404, "Not Found: file not found")
        return Response(stored.content, media_type="application/octet-stream")
