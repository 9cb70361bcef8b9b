"""OpenAI's REST API on loopback: `POST /v1/chat/completions` and
`POST /v1/embeddings`, in the documented wire shapes, for the real `openai`
SDK pointed at it with `base_url=fake.url + "/v1"`.

Every request needs `Authorization: Bearer <a key from new_key()>` (else 401
with OpenAI's `invalid_api_key` error body). Chat requests are checked the
way OpenAI checks them where a client mapping could go wrong: known roles,
every `tool` message answers a `tool_calls` id of an earlier assistant
message, and function tools carry a name and parameters (400
`invalid_request_error` otherwise). Answers come from the key's script
(tests.fakes.llm_script); usage is counted as characters / 4 in and out.
Embeddings are deterministic unit vectors of the requested size, seeded by
the text's SHA-256, returned as floats or base64 float32 as asked."""
from __future__ import annotations

import base64
import hashlib
import json
import random
import struct
import time
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

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
EMBEDDING_SIZES = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072,
                   "text-embedding-ada-002": 1536}
ERROR_TYPES = {400: ("invalid_request_error", None), 401: ("invalid_request_error",
               "invalid_api_key"), 429: ("requests", "rate_limit_exceeded"),
               500: ("server_error", None), 503: ("server_error", None)}


def error(code: int, message: str, *, retry_after: float | None = None) -> JSONResponse:
    kind, err_code = ERROR_TYPES.get(code, ("server_error" if code >= 500
                                            else "invalid_request_error", None))
    headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else None
    return JSONResponse({"error": {"message": message, "type": kind, "param": None,
                                   "code": err_code}}, status_code=code, headers=headers)


def vector(text: str, size: int) -> list[float]:
    """A unit vector that depends only on (text, size)."""
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    raw = [rng.gauss(0.0, 1.0) for _ in range(size)]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    return [x / norm for x in raw]


def _chat_problem(body: dict[str, Any]) -> str | None:
    """What OpenAI would refuse in this chat request, or None."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    call_ids: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ROLES:
            return f"Invalid value for 'messages[{i}].role'"
        if role == "assistant":
            call_ids.update(c["id"] for c in message.get("tool_calls") or ())
            if message.get("content") is None and not message.get("tool_calls"):
                return f"messages[{i}]: an assistant message needs content or tool_calls"
        elif role == "tool":
            if message.get("tool_call_id") not in call_ids:
                return (f"Invalid parameter: messages with role 'tool' must be a response to"
                        f" a preceeding message with 'tool_calls' (messages[{i}])")
            if not isinstance(message.get("content"), str):
                return f"messages[{i}].content must be a string"
        elif not isinstance(message.get("content"), str | list):
            return f"messages[{i}].content must be a string or an array"
    for i, tool in enumerate(body.get("tools") or ()):
        function = tool.get("function") if tool.get("type") == "function" else None
        if not isinstance(function, dict) or not function.get("name") \
                or not isinstance(function.get("parameters", {}), dict):
            return f"Invalid 'tools[{i}]': a function tool needs a name and parameters"
    return None


class FakeOpenAI(ScriptedServer):
    name = "fake openai"
    key_prefix = "sk-test-"

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self._ids = count(1)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/embeddings", self.embeddings, methods=["POST"]),
        ])

    @staticmethod
    def _key(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else None

    async def _failure(self, request: Request, answer: Status | Hang | None) -> Response | None:
        if isinstance(answer, Hang):
            await wait_out(request, answer.seconds)
        elif isinstance(answer, Status):
            default = {429: "Rate limit reached for requests", 500: "The server had an error"
                       " while processing your request. Sorry about that!"}
            return error(answer.code, answer.message or default.get(answer.code, "error"),
                         retry_after=answer.retry_after)
        return None

    async def chat(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return error(400, "We could not parse the JSON body of your request.")
        key = self._key(request)
        known, answer = self._take(key, body)
        if not known:
            return error(401, "Incorrect API key provided. You can find your API key at"
                         " https://platform.openai.com/account/api-keys.")
        problem = _chat_problem(body)
        if problem is not None:
            return error(400, problem)
        if isinstance(answer, Status | Hang) and (failed := await self._failure(request, answer)):
            return failed
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None,
                                   "annotations": []}
        if isinstance(answer, list):
            message["tool_calls"] = [
                {"id": f"call_{next(self._ids):06d}", "type": "function",
                 "function": {"name": name, "arguments": args if isinstance(args, str)
                              else json.dumps(args)}} for name, args in answer]
            finish, out = "tool_calls", json.dumps(message["tool_calls"])
        else:
            message["content"] = answer if isinstance(answer, str) else DEFAULT_REPLY
            finish, out = "stop", message["content"]
        prompt = tokens(len(json.dumps(body["messages"])) + len(json.dumps(body.get("tools"))))
        completion = tokens(len(out))
        return JSONResponse({
            "id": f"chatcmpl-{next(self._ids):08d}", "object": "chat.completion",
            "created": int(time.time()), "model": body["model"], "system_fingerprint": None,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
        })

    async def embeddings(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return error(400, "We could not parse the JSON body of your request.")
        known, answer = self._take(self._key(request), body, "embeddings")
        if not known:
            return error(401, "Incorrect API key provided.")
        model, texts = body.get("model"), body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if model not in EMBEDDING_SIZES:
            return error(404, f"The model `{model}` does not exist")
        if not isinstance(texts, list) or not texts or len(texts) > 2048 \
                or not all(isinstance(t, str) and t for t in texts):
            return error(400, "'input' must be a non-empty string or an array of 1 to 2048"
                         " non-empty strings")
        size = body.get("dimensions", EMBEDDING_SIZES[model])
        if not isinstance(size, int) or not 1 <= size <= EMBEDDING_SIZES[model]:
            return error(400, f"This model does not support dimensions={size}")
        if isinstance(answer, Status | Hang) and (failed := await self._failure(request, answer)):
            return failed
        base64_out = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(texts):
            vec = vector(text, size)
            data.append({"object": "embedding", "index": i, "embedding": base64.b64encode(
                struct.pack(f"<{size}f", *vec)).decode() if base64_out else vec})
        used = tokens(sum(len(t) for t in texts))
        return JSONResponse({"object": "list", "data": data, "model": model,
                             "usage": {"prompt_tokens": used, "total_tokens": used}})
