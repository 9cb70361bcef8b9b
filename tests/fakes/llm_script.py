"""What the fake language-model servers (tests.fakes.openai, tests.fakes.anthropic)
share: API keys, per-key scripts of answers, recorded requests, and the
thread the server runs in.

A script is a queue of answers per API key, so tests running side by side
never take each other's answers. An answer is text (`"Hello"`), a list of
tool calls (`[("get_contact", {}), ("add_note", '{"bad json')]`: a dict is
sent as JSON, a str exactly as written, so malformed arguments are possible),
or a failure: `status(429, retry_after=1)`, `status(500)`, `hang(5)` (answer
nothing for that long, then the default reply). Each request takes the next
answer of its key; once the script is used up the key gets `DEFAULT_REPLY`.

Handlers run on the server's event loop in its thread; tests read from
theirs: the shared state is behind one lock, held only for dict and deque
operations so a benchmark can drive hundreds of requests a second."""
from __future__ import annotations

import asyncio
import math
import secrets
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.requests import Request

from tests.fakes.serving import serve_in_thread

DEFAULT_REPLY = "Hello! How can I help you today?"


@dataclass(frozen=True)
class Status:
    """Answer an error of this HTTP status (with `Retry-After` when given)."""

    code: int
    retry_after: float | None = None
    message: str = ""


@dataclass(frozen=True)
class Hang:
    """Send nothing for `seconds`, then the default reply."""

    seconds: float


ToolCallScript = tuple[str, "dict[str, Any] | str"]
Answer = str | list[ToolCallScript] | Status | Hang


def status(code: int, *, retry_after: float | None = None, message: str = "") -> Status:
    return Status(code, retry_after, message)


def hang(seconds: float) -> Hang:
    return Hang(seconds)


async def wait_out(request: Request, seconds: float) -> None:
    """Hang for `seconds`, or until the client gives up and hangs up: a
    handler must not outlive its caller (nor be cut off at shutdown)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end and not await request.is_disconnected():
        await asyncio.sleep(min(0.05, max(0.0, end - loop.time())))


def tokens(chars: int) -> int:
    """The fakes' token count: a quarter of the characters, at least one."""
    return max(1, math.ceil(chars / 4))


class ScriptedServer:
    """Keys, scripts and recorded requests; subclasses add the routes (`app()`)."""

    name = "fake llm"
    key_prefix = "sk-"

    def __init__(self, port: int) -> None:
        self.port = port
        self._lock = threading.Lock()
        self._keys: set[str] = set()
        self._scripts: dict[tuple[str, str], deque[Answer]] = {}
        self._requests: dict[str, list[dict[str, Any]]] = {}
        self._server: uvicorn.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def new_key(self) -> str:
        """A fresh API key the server accepts (any other key gets 401)."""
        key = f"{self.key_prefix}{secrets.token_urlsafe(24)}"
        with self._lock:
            self._keys.add(key)
        return key

    def script(self, key: str, *answers: Answer, endpoint: str = "chat") -> None:
        """Queue answers for the next requests made with `key` to `endpoint`
        (`chat`: completions or messages; `embeddings`): an engine that embeds
        between two completions does not take the completions' answers."""
        with self._lock:
            if key not in self._keys:
                raise KeyError(f"unknown key {key[:8]}...: use new_key()")
            self._scripts.setdefault((key, endpoint), deque()).extend(answers)

    def requests(self, key: str) -> list[dict[str, Any]]:
        """The JSON bodies received with `key` (accepted or not), oldest first."""
        with self._lock:
            return list(self._requests.get(key, ()))

    def _take(self, key: str | None, body: dict[str, Any],
              endpoint: str = "chat") -> tuple[bool, Answer | None]:
        """Records the request; (is the key known, the endpoint's next
        scripted answer or None)."""
        with self._lock:
            if key is None:
                return False, None
            self._requests.setdefault(key, []).append(body)
            if key not in self._keys:
                return False, None
            queue = self._scripts.get((key, endpoint))
            return True, (queue.popleft() if queue else None)

    def app(self) -> Any:
        raise NotImplementedError

    def start(self) -> ScriptedServer:
        self._server = serve_in_thread(self.app(), self.port, self.name)
        return self

    def stop(self) -> None:
        if self._server is not None:
            # Hanging handlers must not hold the shutdown up.
            self._server.force_exit = True
            self._server.should_exit = True
            self._server = None
