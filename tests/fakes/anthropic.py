"""Anthropic's Messages API on loopback: `POST /v1/messages`, in the
documented wire shape, for the real `anthropic` SDK pointed at it with
`base_url=fake.url`.

Every request needs a key from `new_key()`, as `x-api-key` or as
`Authorization: Bearer` (which the SDK sends; else 401
`authentication_error`), and an `anthropic-version` header. The request is
checked where a client mapping could go wrong, as the API does: `system` is
a top-level parameter (no `system` role), the first message is the user's,
text blocks are not empty, and every `tool_use` of an assistant message is
answered by a `tool_result` in the very NEXT message (a user message, the
results first), so one assistant turn's results split over two user
messages is a 400 `invalid_request_error`. Answers come from the key's
script (tests.fakes.llm_script): a tool call's arguments given as a dict are
the block's `input`; given as a string they are parsed when they are a JSON
object and otherwise sent as that raw string (the real API never does; it
is how a malformed call is scripted). Usage is characters / 4 in and out."""
from __future__ import annotations

import json
from itertools import count
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.llm_script import (
    DEFAULT_REPLY,
    Hang,
    ScriptedServer,
    Status,
    tokens,
    wait_out,
)

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large",
               429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


def error(code: int, message: str, *, retry_after: float | None = None) -> JSONResponse:
    headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else None
    kind = ERROR_TYPES.get(code, "api_error" if code >= 500 else "invalid_request_error")
    return JSONResponse({"type": "error", "error": {"type": kind, "message": message},
                         "request_id": "req_fake"}, status_code=code, headers=headers)


def _blocks(content: Any) -> list[dict[str, Any]] | None:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(b, dict) for b in content):
        return content
    return None


def _problem(body: dict[str, Any]) -> str | None:
    """What the Messages API would refuse in this request, or None."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        return "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    if messages[0].get("role") != "user":
        return "messages: first message must use the \"user\" role"
    pending: list[str] = []  # tool_use ids the next message must answer
    for i, message in enumerate(messages):
        role, blocks = message.get("role"), _blocks(message.get("content"))
        if role not in ("user", "assistant"):
            return (f"messages.{i}.role: Input should be 'user' or 'assistant'"
                    + (" (use the top-level system parameter)" if role == "system" else ""))
        if blocks is None:
            return f"messages.{i}.content: Input should be a string or a list of blocks"
        if any(b.get("type") == "text" and not b.get("text") for b in blocks):
            return f"messages.{i}: text content blocks must be non-empty"
        results = [b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"]
        if pending:
            missing = [p for p in pending if p not in results]
            if role != "user" or missing:
                return (f"messages.{i}: `tool_use` ids were found without `tool_result` blocks"
                        f" immediately after: {', '.join(missing or pending)}. Each `tool_use`"
                        " block must have a corresponding `tool_result` block in the next"
                        " message.")
        kinds = [b.get("type") for b in blocks]
        if results and (role != "user" or kinds[:len(results)] != ["tool_result"] * len(
                results) or any(r not in pending for r in results)):
            return (f"messages.{i}: unexpected `tool_use_id` found in `tool_result` blocks;"
                    " each `tool_result` must answer a `tool_use` of the previous message"
                    " and come first in the content")
        pending = [b.get("id", "") for b in blocks if b.get("type") == "tool_use"] \
            if role == "assistant" else []
    if pending:
        return "messages: the conversation ends with `tool_use` blocks that have no results"
    for i, tool in enumerate(body.get("tools") or ()):
        if not tool.get("name") or not isinstance(tool.get("input_schema"), dict):
            return f"tools.{i}: a tool needs a name and an input_schema"
    return None


class FakeAnthropic(ScriptedServer):
    name = "fake anthropic"
    key_prefix = "sk-ant-test-"

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self._ids = count(1)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/messages", self.messages, methods=["POST"])])

    async def messages(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return error(400, "There was an error parsing the body of your request")
        known, answer = self._take(_key(request), body)
        if not known:
            return error(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return error(400, "anthropic-version: header is required")
        problem = _problem(body)
        if problem is not None:
            return error(400, problem)
        if isinstance(answer, Hang):
            await wait_out(request, answer.seconds)
        elif isinstance(answer, Status):
            default = {429: "Number of request tokens has exceeded your per-minute rate limit",
                       500: "Internal server error", 529: "Overloaded"}
            return error(answer.code, answer.message or default.get(answer.code, "error"),
                         retry_after=answer.retry_after)
        content: list[dict[str, Any]]
        if isinstance(answer, list):
            content = [{"type": "tool_use", "id": f"toolu_{next(self._ids):08d}",
                        "name": name, "input": _input(args)} for name, args in answer]
            stop = "tool_use"
        else:
            content = [{"type": "text", "text": answer if isinstance(answer, str)
                        else DEFAULT_REPLY}]
            stop = "end_turn"
        prompt = tokens(len(json.dumps(body["messages"])) + len(json.dumps(body.get("system")))
                        + len(json.dumps(body.get("tools"))))
        return JSONResponse({
            "id": f"msg_{next(self._ids):010d}", "type": "message", "role": "assistant",
            "model": body["model"], "content": content, "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": prompt, "output_tokens": tokens(len(json.dumps(content))),
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        })


def _key(request: Request) -> str | None:
    # The API takes the key as `x-api-key` or, as this SDK sends it, a Bearer token.
    auth = request.headers.get("authorization", "")
    return request.headers.get("x-api-key") or (auth[7:] if auth.startswith("Bearer ")
                                                 else None)


def _input(args: dict[str, Any] | str) -> Any:
    if isinstance(args, dict):
        return args
    try:
        parsed = json.loads(args)
    except ValueError:
        return args
    return parsed if isinstance(parsed, dict) else args
