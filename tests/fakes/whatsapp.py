"""Meta's Graph API for WhatsApp on loopback, for the connector's tests.

Routes (any version `v<digits>.<digits>`): `GET /{v}/{phone_number_id}`,
`POST /{v}/{phone_number_id}/messages` (text, template, read receipt),
`GET /{v}/{waba_id}/message_templates` (cursor-paged), `GET /{v}/{media_id}`
and the media's own `GET /media/{media_id}` (standing in for Meta's CDN).
Every call needs the Bearer token of a number added with `add_number`
(else 401 with Meta's OAuthException); every call is recorded; faults are
scripted per object id and kind of call (`fail`, `delay`, `drop`,
`answer`). The
server runs in its own thread: shared state is behind one lock."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.fakes.serving import serve_in_thread

KINDS = ("messages", "phone", "templates", "media", "download")
VERSION = re.compile(r"v\d+\.\d+")
MESSAGE_TYPES = frozenset({"text", "template", "image", "document", "audio", "video",
                           "sticker", "reaction", "interactive", "location", "contacts"})


@dataclass
class Call:
    kind: str
    id: str
    payload: Any
    at: float = field(default_factory=time.monotonic)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Number:
    phone_number_id: str
    access_token: str
    waba_id: str
    display_phone_number: str
    verified_name: str


@dataclass
class Fault:
    status: int | None = None  # answer Meta's error envelope ...
    code: int = 0
    message: str = ""
    subcode: int | None = None
    details: str | None = None
    retry_after: int | None = None
    delay: float = 0.0  # ... after waiting this long (then answer normally when no status)
    drop: bool = False  # or cut the connection mid-answer
    raw: Response | None = None  # or answer this, whatever it is


@dataclass
class Media:
    content: bytes
    mime_type: str
    reported_size: int | None
    sha256: str


class _Dropped(Response):
    """Promises a body it never finishes: the client sees the peer hang up."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", b"1000")]})
        await send({"type": "http.response.body", "body": b'{"messaging_', "more_body": True})


def _digits(count: int) -> str:
    return str(secrets.randbelow(9 * 10 ** (count - 1)) + 10 ** (count - 1))


def error(status: int, code: int, message: str, *, type_: str = "OAuthException",
          subcode: int | None = None, details: str | None = None,
          retry_after: int | None = None) -> JSONResponse:
    """Meta's error envelope."""
    body: dict[str, Any] = {"message": message, "type": type_, "code": code,
                            "fbtrace_id": base64.b64encode(secrets.token_bytes(15)).decode()}
    if subcode is not None:
        body["error_subcode"] = subcode
    if details is not None:
        body["error_data"] = {"messaging_product": "whatsapp", "details": details}
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _bad_token() -> JSONResponse:
    return error(401, 190, "Invalid OAuth access token - Cannot parse access token")


def _no_object(method: str, object_id: str) -> JSONResponse:
    return error(400, 100, f"Unsupported {method} request. Object with ID '{object_id}' does"
                 " not exist, cannot be loaded due to missing permissions, or does not support"
                 " this operation. Please read the Graph API documentation at"
                 " https://developers.facebook.com/docs/graph-api", type_="GraphMethodException",
                 subcode=33)


def _invalid(message: str) -> JSONResponse:
    return error(400, 100, f"(#100) {message}")


def _cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"cursor:{index}".encode()).decode().rstrip("=")


def _index(cursor: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return int(text.removeprefix("cursor:")) if text.startswith("cursor:") else None
    except ValueError:
        return None


class FakeGraph:
    def __init__(self, port: int) -> None:
        self.port = port
        self.calls: list[Call] = []
        self._numbers: dict[str, Number] = {}
        self._templates: dict[str, list[dict[str, Any]]] = {}
        self._media: dict[str, Media] = {}
        self._faults: dict[tuple[str, str], deque[Fault]] = {}
        self._sent: dict[str, list[dict[str, Any]]] = {}
        # Sends whose answer is withheld after their wamid is made (a status
        # can then come before the engine has its receipt), and the wamids.
        self._stalls: dict[str, deque[float]] = {}
        self.wamids: dict[str, list[str]] = {}
        self._reads: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- what tests set up ------------------------------------------------

    def add_number(self, *, display_phone_number: str = "15550001111",
                   verified_name: str = "Bidi Test", waba_id: str | None = None,
                   access_token: str | None = None) -> Number:
        number = Number(phone_number_id=_digits(15),
                        access_token=access_token or f"EAAG{secrets.token_urlsafe(48)}",
                        waba_id=waba_id or _digits(15),
                        display_phone_number=display_phone_number,
                        verified_name=verified_name)
        with self._lock:
            self._numbers[number.phone_number_id] = number
        return number

    def add_template(self, waba_id: str, name: str, language: str = "en_US",
                     status: str = "APPROVED", category: str = "UTILITY",
                     components: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        template = {"name": name, "language": language, "status": status,
                    "category": category, "id": _digits(16),
                    "components": components if components is not None else [
                        {"type": "BODY", "text": "Hello {{1}}, your order is ready."}]}
        with self._lock:
            self._templates.setdefault(waba_id, []).append(template)
        return template

    def add_media(self, content: bytes, mime_type: str = "image/jpeg", *,
                  reported_size: int | None = None, sha256: str | None = None) -> str:
        """A downloadable media object; returns its id. Its metadata gives
        the true size and hash unless told otherwise."""
        media_id = _digits(16)
        with self._lock:
            self._media[media_id] = Media(
                content, mime_type, len(content) if reported_size is None else reported_size,
                sha256 or hashlib.sha256(content).hexdigest())
        return media_id

    def fail(self, id_: str, kind: str, status: int, code: int, message: str = "", *,
             times: int = 1, retry_after: int | None = None, subcode: int | None = None,
             details: str | None = None) -> None:
        """The next `times` calls of `kind` on `id_` (a phone number id, a
        WABA id or a media id) answer this error."""
        self._script(id_, kind, times, Fault(status, code, message or f"error {code}",
                                             subcode, details, retry_after))

    def delay(self, id_: str, kind: str, seconds: float, *, times: int = 1) -> None:
        self._script(id_, kind, times, Fault(delay=seconds))

    def stall(self, phone_number_id: str, seconds: float, *, times: int = 1) -> None:
        """The next `times` sends are accepted (their wamid in `wamids` at
        once) but answered only `seconds` later."""
        with self._lock:
            self._stalls.setdefault(phone_number_id, deque()).extend([seconds] * times)

    def drop(self, id_: str, kind: str, *, times: int = 1) -> None:
        self._script(id_, kind, times, Fault(drop=True))

    def answer(self, id_: str, kind: str, status: int, body: bytes | dict[str, Any], *,
               times: int = 1) -> None:
        """The next `times` calls answer this, envelope or not (a proxy's
        HTML page, a 200 that lacks what it should carry)."""
        raw = JSONResponse(body, status_code=status) if isinstance(body, dict) else \
            Response(body, status_code=status, media_type="text/html")
        self._script(id_, kind, times, Fault(raw=raw))

    def _script(self, id_: str, kind: str, times: int, fault: Fault) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        with self._lock:
            self._faults.setdefault((id_, kind), deque()).extend([fault] * times)

    def calls_of(self, id_: str, kind: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.id == id_ and c.kind == kind]

    def sent(self, phone_number_id: str) -> list[dict[str, Any]]:
        """The messages the number accepted (not its read receipts), in order."""
        with self._lock:
            return list(self._sent.get(phone_number_id, ()))

    def reads(self, phone_number_id: str) -> list[str]:
        with self._lock:
            return list(self._reads.get(phone_number_id, ()))

    # -- the server -------------------------------------------------------

    def start(self) -> FakeGraph:
        app = Starlette(routes=[
            Route("/media/{media_id}", self.download, methods=["GET"]),
            Route("/{version}/{object_id}", self.get_object, methods=["GET"]),
            Route("/{version}/{object_id}/messages", self.messages, methods=["POST"]),
            Route("/{version}/{object_id}/message_templates", self.templates,
                  methods=["GET"]),
        ])
        self._server = serve_in_thread(app, self.port, "fake graph")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True

    async def _enter(self, request: Request, kind: str, object_id: str,
                     payload: Any) -> tuple[Number | None, Response | None]:
        """Record the call, check its token, play its scripted fault: the
        number the token belongs to, or the answer to give instead."""
        headers = {k.lower(): v for k, v in request.headers.items()}
        auth = headers.get("authorization", "")
        with self._lock:
            self.calls.append(Call(kind, object_id, payload, headers=headers))
            owner = next((n for n in self._numbers.values()
                          if auth == f"Bearer {n.access_token}"), None)
            faults = self._faults.get((object_id, kind))
            fault = faults.popleft() if faults and owner is not None else None
        if owner is None:
            return None, _bad_token()
        if "version" in request.path_params and \
                not VERSION.fullmatch(request.path_params["version"]):
            return None, error(400, 2500, f"Unknown path components: {request.url.path}")
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.drop:
                return None, _Dropped()
            if fault.raw is not None:
                return None, fault.raw
            if fault.status is not None:
                return None, error(fault.status, fault.code, fault.message,
                                   subcode=fault.subcode, details=fault.details,
                                   retry_after=fault.retry_after)
        return owner, None

    async def get_object(self, request: Request) -> Response:
        object_id = request.path_params["object_id"]
        with self._lock:
            kind = "media" if object_id in self._media else "phone"
        owner, answer = await self._enter(request, kind, object_id,
                                          dict(request.query_params))
        if answer is not None or owner is None:
            return answer or _bad_token()
        if kind == "media":
            return self._media_info(object_id)
        if owner.phone_number_id != object_id:
            return _no_object("get", object_id)
        known = {"id": owner.phone_number_id, "display_phone_number":
                 owner.display_phone_number, "verified_name": owner.verified_name,
                 "quality_rating": "GREEN", "code_verification_status": "VERIFIED",
                 "platform_type": "CLOUD_API", "throughput": {"level": "STANDARD"}}
        asked = request.query_params.get("fields")
        names = [f.strip() for f in asked.split(",")] if asked else list(known)
        unknown = [n for n in names if n not in known]
        if unknown:
            return _invalid(f"Tried accessing nonexisting field ({unknown[0]}) on node type"
                            " (WhatsAppBusinessPhoneNumber)")
        return JSONResponse({n: known[n] for n in [*names, "id"]})

    def _media_info(self, media_id: str) -> Response:
        with self._lock:
            media = self._media[media_id]
        info: dict[str, Any] = {"messaging_product": "whatsapp",
                                "url": f"{self.url}/media/{media_id}",
                                "mime_type": media.mime_type, "sha256": media.sha256,
                                "id": media_id}
        if media.reported_size is not None:
            info["file_size"] = media.reported_size
        return JSONResponse(info)

    async def download(self, request: Request) -> Response:
        media_id = request.path_params["media_id"]
        owner, answer = await self._enter(request, "download", media_id, None)
        if answer is not None or owner is None:
            return answer or _bad_token()
        with self._lock:
            media = self._media.get(media_id)
        if media is None:
            return error(404, 100, "(#100) Media not found")
        return Response(media.content, media_type=media.mime_type)

    async def messages(self, request: Request) -> Response:
        object_id = request.path_params["object_id"]
        try:
            payload = json.loads(await request.body())
        except ValueError:
            payload = None
        owner, answer = await self._enter(request, "messages", object_id, payload)
        if answer is not None or owner is None:
            return answer or _bad_token()
        if owner.phone_number_id != object_id:
            return _no_object("post", object_id)
        if not isinstance(payload, dict):
            return _invalid("The request body must be a JSON object")
        if payload.get("messaging_product") != "whatsapp":
            return _invalid("The parameter messaging_product is required.")
        if payload.get("status") == "read":
            return self._read(owner, payload)
        problem = self._problem(owner, payload)
        if problem is not None:
            return problem
        with self._lock:
            self._sent.setdefault(owner.phone_number_id, []).append(payload)
        to, recipient = payload.get("to"), payload.get("recipient")
        contact = {"input": to, "wa_id": to} if to else {"input": recipient,
                                                         "user_id": recipient}
        wamid = "wamid." + base64.b64encode(b"\x15\x02\x00\x11\x18\x12"
                                            + secrets.token_bytes(24)).decode()
        with self._lock:
            self.wamids.setdefault(owner.phone_number_id, []).append(wamid)
            stalls = self._stalls.get(owner.phone_number_id)
            stall = stalls.popleft() if stalls else 0.0
        if stall:
            await asyncio.sleep(stall)
        return JSONResponse({"messaging_product": "whatsapp", "contacts": [contact],
                             "messages": [{"id": wamid}]})

    def _read(self, owner: Number, payload: dict[str, Any]) -> Response:
        message_id = payload.get("message_id")
        if not isinstance(message_id, str) or not message_id.startswith("wamid."):
            return _invalid("Invalid parameter message_id")
        with self._lock:
            self._reads.setdefault(owner.phone_number_id, []).append(message_id)
        return JSONResponse({"success": True})

    def _problem(self, owner: Number, payload: dict[str, Any]) -> Response | None:
        """Why Meta would refuse this send, or None."""
        if ("to" in payload) == ("recipient" in payload):
            return _invalid("Exactly one of the parameters to or recipient is required.")
        if payload.get("recipient_type", "individual") != "individual":
            return _invalid("Invalid parameter recipient_type")
        kind = payload.get("type", "text")
        if kind not in MESSAGE_TYPES:
            return _invalid(f"Invalid parameter type: {kind}")
        context = payload.get("context")
        if context is not None and not (isinstance(context, dict)
                                        and isinstance(context.get("message_id"), str)):
            return _invalid("Invalid parameter context")
        if kind == "text":
            text = payload.get("text")
            body = text.get("body") if isinstance(text, dict) else None
            if not isinstance(body, str) or not body.strip():
                return _invalid("The parameter text['body'] is required.")
            if len(body) > 4096:
                return _invalid("Param text['body'] must be at most 4096 characters long.")
        if kind == "template":
            return self._template_problem(owner, payload.get("template"))
        return None

    def _template_problem(self, owner: Number, template: Any) -> Response | None:
        language = template.get("language") if isinstance(template, dict) else None
        if not isinstance(template, dict) or not isinstance(template.get("name"), str) \
                or not isinstance(language, dict) or not isinstance(language.get("code"), str):
            return _invalid("The parameter template['name'] and template['language']['code']"
                            " are required.")
        with self._lock:
            known = [t for t in self._templates.get(owner.waba_id, ())
                     if t["name"] == template["name"] and t["language"] == language["code"]
                     and t["status"] == "APPROVED"]
        if not known:
            return error(404, 132001, "Template name does not exist in the translation",
                         details=f"template name ({template['name']}) does not exist in"
                         f" {language['code']}")
        return None

    async def templates(self, request: Request) -> Response:
        waba_id = request.path_params["object_id"]
        params = dict(request.query_params)
        owner, answer = await self._enter(request, "templates", waba_id, params)
        if answer is not None or owner is None:
            return answer or _bad_token()
        if owner.waba_id != waba_id:
            return _no_object("get", waba_id)
        try:
            limit = max(1, int(params.get("limit", 25)))
        except ValueError:
            return _invalid("Param limit must be an integer")
        start = 0
        if "after" in params:
            after = _index(params["after"])
            if after is None:
                return _invalid("Invalid cursor")
            start = after + 1
        with self._lock:
            every = list(self._templates.get(waba_id, ()))
        page = every[start:start + limit]
        body: dict[str, Any] = {"data": page}
        if page:
            last = start + len(page) - 1
            body["paging"] = {"cursors": {"before": _cursor(start), "after": _cursor(last)}}
            if last + 1 < len(every):
                body["paging"]["next"] = (
                    f"{self.url}{request.url.path}?limit={limit}&after={_cursor(last)}")
        return JSONResponse(body)
