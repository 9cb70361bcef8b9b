"""The WhatsApp channel: a business phone number's chats, through Meta's
Cloud API (the Graph API), with httpx.

Meta POSTs notifications signed with `X-Hub-Signature-256` (an HMAC of the
raw body under the app secret; `check_signature`) after a GET handshake
that echoes `hub.challenge` when `hub.verify_token` is ours (`challenge`).
Outbound, every call carries the integration's access token as a Bearer
header; Meta's error envelope becomes a `ChannelError` at one place
(`channel_error`)."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import mimetypes
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Protocol
from urllib.parse import urlsplit

import httpx
import msgspec

from channels.base import (
    BASE_URL_MESSAGE,
    CREDENTIALS_REFUSED,
    WINDOW_CLOSED,
    ChannelError,
    server_root,
)
from channels.downloads import stream_to
from channels.telegram import split_text
from core.errors import Forbidden, Invalid, Unauthorized
from core.messages import Attachment, OutboundMessage, Receipt
from storage.integrations import Integration

__all__ = ("CHANNEL", "DEFAULT_API_BASE", "DEFAULT_API_VERSION", "MAX_TEXT", "SECRET_FIELDS",
           "Pacer", "PhoneNumber", "WhatsAppConfig", "WhatsAppConnector", "challenge",
           "channel_error", "check_signature", "parse_config")

CHANNEL = "whatsapp"
DEFAULT_API_BASE = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v23.0"
MAX_TEXT = 4096
SIGNATURE_HEADER = "x-hub-signature-256"
MAX_TEMPLATE_PAGES = 10

ID_PATTERN = r"^[0-9]{1,32}\Z"  # \Z: `$` would let a newline end it
VERSION_PATTERN = r"^v\d{1,3}\.\d{1,2}\Z"
# Printable ASCII without spaces: what goes into a header or a comparison.
SECRET_PATTERN = r"^[!-~]{1,2048}\Z"
MEDIA_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}\Z"  # no '/', '.' or '?': it is a path segment


class WhatsAppConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    access_token: Annotated[str, msgspec.Meta(pattern=SECRET_PATTERN)]
    app_secret: Annotated[str, msgspec.Meta(pattern=SECRET_PATTERN)]
    verify_token: Annotated[str, msgspec.Meta(pattern=SECRET_PATTERN)]
    phone_number_id: Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
    waba_id: Annotated[str, msgspec.Meta(pattern=ID_PATTERN)] | None = None
    api_base_url: str | None = DEFAULT_API_BASE
    api_version: Annotated[str, msgspec.Meta(pattern=VERSION_PATTERN)] = DEFAULT_API_VERSION

    def __repr__(self) -> str:  # settings get logged; their secrets must not
        shown = ", ".join(f"{name}={'***' if name in SECRET_FIELDS else repr(value)}"
                          for name, value in msgspec.structs.asdict(self).items())
        return f"WhatsAppConfig({shown})"


SECRET_FIELDS = ("access_token", "app_secret", "verify_token")

_CONFIG_MESSAGES = {
    "access_token": "access_token must be the token Meta issued (printable characters, no"
                    " spaces)",
    "app_secret": "app_secret must be the app's secret from the Meta app dashboard"
                  " (printable characters, no spaces)",
    "verify_token": "verify_token must be 1 to 2048 printable characters without spaces",
    "phone_number_id": "phone_number_id must be the number's id in Meta's API (digits)",
    "waba_id": "waba_id must be the WhatsApp Business Account's id (digits)",
    "api_base_url": BASE_URL_MESSAGE,
    "api_version": "api_version must look like v23.0",
}


def parse_config(data: Mapping[str, Any]) -> WhatsAppConfig:
    """A WhatsApp integration's settings, checked; `Invalid` names the field
    (and never echoes a secret: msgspec's messages are not passed on)."""
    try:
        config = msgspec.convert(dict(data), WhatsAppConfig)
    except msgspec.ValidationError as exc:
        text = str(exc)
        found = re.search(r"at `\$\.([A-Za-z_]+)", text) or re.search(
            r"missing required field `([A-Za-z_]+)`", text)
        name = found.group(1) if found else None
        if name in _CONFIG_MESSAGES:
            message = _CONFIG_MESSAGES[name]
            if "missing required field" in text:
                message = f"{name} is required"
            raise Invalid(message, field=f"config.{name}") from None
        unknown = re.search(r"unknown field `([A-Za-z0-9_]{1,64})`", text)
        raise Invalid(f"unknown WhatsApp setting {unknown.group(1)!r}" if unknown
                      else "invalid WhatsApp settings", field="config") from None
    return msgspec.structs.replace(config, api_base_url=api_base(config.api_base_url))


def api_base(url: str | None) -> str:
    """The Graph API's root, without a trailing slash."""
    return server_root(url, DEFAULT_API_BASE)


def check_signature(app_secret: str, headers: Mapping[str, str], body: bytes) -> None:
    """Raise `Unauthorized` unless `X-Hub-Signature-256` is the HMAC-SHA256
    of the raw `body` under the app secret."""
    got = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER), None)
    if got is None:
        raise Unauthorized("missing X-Hub-Signature-256")
    expected = "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    # Compared as bytes: compare_digest refuses str with non-ASCII characters.
    if not app_secret or not hmac.compare_digest(got.strip().lower().encode(),
                                                 expected.encode()):
        raise Unauthorized("wrong X-Hub-Signature-256")


def challenge(expected_verify_token: str, params: Mapping[str, str]) -> str:
    """The subscription handshake: `hub.challenge` back when the mode is
    `subscribe` and the verify token is ours; `Forbidden` otherwise."""
    token = params.get("hub.verify_token") or ""
    matches = hmac.compare_digest(token.encode(), expected_verify_token.encode())
    if params.get("hub.mode") != "subscribe" or not expected_verify_token or not matches:
        raise Forbidden("the verification request does not match this integration")
    return params.get("hub.challenge") or ""


@dataclass(frozen=True)
class PhoneNumber:
    id: str
    display_phone_number: str | None
    verified_name: str | None


class Pacer(Protocol):
    """Meta's outbound limits, shared by every host (storage.pacing)."""

    async def wait(self, number_id: str, recipient: str) -> None:
        """Return when one more message may go from the number to `recipient`."""

    async def hold(self, number_id: str, recipient: str, seconds: float) -> None:
        """Send nothing more to `recipient` for `seconds` (Meta throttled the pair)."""


# Meta's error codes by what a caller does about them
# (developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes).
PAIR_RATE = 131056
THROTTLED = frozenset({130429, PAIR_RATE, 80007, 4, 17, 32, 613, 131048})
WINDOW = 131047
UNDELIVERABLE = 131026
REFUSED = frozenset({190, 102, 0, 10, 131005, *range(200, 300)})
TRANSIENT = frozenset({131000, 131016, 1, 2, 131057})


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    value = next((v for k, v in (headers or {}).items() if k.lower() == "retry-after"), None)
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date (Meta sends seconds): the caller's default
        return None


def channel_error(status: int, body: Any, doing: str, *,
                  headers: Mapping[str, str] | None = None) -> ChannelError:
    """The one place Meta's answers become our errors: by the envelope's
    `code` first, by the HTTP status when there is none."""
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    if not isinstance(error, dict) or not isinstance(code, int) or isinstance(code, bool):
        code, what = None, f"{doing}: HTTP {status}"
    else:
        data = error.get("error_data")
        details = data.get("details") if isinstance(data, dict) else None
        what = f"{doing}: ({code}) {error.get('message') or 'no message'}"
        if details:
            what += f" - {details}"
    if code in THROTTLED or (code is None and status == 429):
        default = 6.0 if code == PAIR_RATE else 1.0
        return ChannelError(f"throttled: {what}", retryable=True,
                            retry_after=_retry_after(headers) or default)
    if code == WINDOW:
        return ChannelError(f"outside_customer_service_window: {what}", reason=WINDOW_CLOSED)
    if code == UNDELIVERABLE:
        return ChannelError(f"undeliverable: {what}")
    if status == 401 or code in REFUSED:
        return ChannelError(f"credentials_refused: {what}", reason=CREDENTIALS_REFUSED)
    if code in TRANSIENT or status >= 500 or status in (408, 429):
        return ChannelError(f"unavailable: {what}", retryable=True,
                            retry_after=_retry_after(headers))
    return ChannelError(f"bad_request: {what}")


def _recipient(thread_id: str) -> dict[str, str]:
    """A wa_id (digits) goes in `to`; a business-scoped user id in `recipient`."""
    if re.fullmatch(r"[0-9]{1,32}", thread_id):
        return {"to": thread_id}
    if re.fullmatch(r"[A-Za-z0-9._-]{1,128}", thread_id):
        return {"recipient": thread_id}
    raise ChannelError(f"not a WhatsApp recipient: {thread_id!r}")


def _template(template: Mapping[str, Any]) -> dict[str, Any]:
    name, language = template.get("name"), template.get("language")
    components = template.get("components") or []
    if not isinstance(name, str) or not name or not isinstance(language, str) or not language \
            or not isinstance(components, list):
        raise ChannelError("not a template: it needs a name, a language code and a list"
                           " of components")
    body: dict[str, Any] = {"name": name, "language": {"code": language}}
    if components:
        body["components"] = components
    return body


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class _Account:
    """An integration's coordinates in the Graph API, checked before use."""

    root: str  # {base}/{version}
    token: str
    number_id: str
    waba_id: str | None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class _Answer:
    """One Graph API answer, read but not yet judged."""

    status: int
    body: Any
    headers: Mapping[str, str]

    @property
    def error(self) -> dict[str, Any]:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return error if isinstance(error, dict) else {}

    @property
    def code(self) -> int | None:
        code = self.error.get("code")
        return code if isinstance(code, int) and not isinstance(code, bool) else None

    def checked(self, doing: str) -> dict[str, Any]:
        if not 200 <= self.status < 300:
            raise channel_error(self.status, self.body, doing, headers=self.headers)
        if not isinstance(self.body, dict):
            raise ChannelError(f"{doing}: Meta answered {self.status} without a JSON object")
        return self.body


class WhatsAppConnector:
    """Sends, read receipts, templates and media of WhatsApp integrations.

    `api_base_url` (a test fake) is used for integrations whose config does
    not name one. With a `pacer`, every message sent (each part of a split
    one) waits for its slot. One pooled httpx client, made on first use."""

    def __init__(self, api_base_url: str | None = None, *, read_timeout: float = 15.0,
                 pacer: Pacer | None = None) -> None:
        self.api_base_url = api_base(api_base_url)
        self.read_timeout = read_timeout
        self.pacer = pacer
        self._http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.read_timeout, connect=5.0),
                limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
                follow_redirects=False)
        return self._http

    def _root(self, base: str | None, version: str | None) -> str:
        version = version or DEFAULT_API_VERSION
        if not re.fullmatch(VERSION_PATTERN, version):
            raise Invalid(_CONFIG_MESSAGES["api_version"], field="config.api_version")
        return f"{api_base(base) if base else self.api_base_url}/{version}"

    def _account(self, integration: Integration) -> _Account:
        config, stored = integration.config, integration.secrets
        try:
            root = self._root(config.get("api_base_url"), config.get("api_version"))
            token, number, waba = (stored.get("access_token") or "",
                                   str(config.get("phone_number_id") or ""),
                                   config.get("waba_id"))
            for name, value, pattern in (("access_token", token, SECRET_PATTERN),
                                         ("phone_number_id", number, ID_PATTERN)):
                if not re.fullmatch(pattern, value):
                    raise Invalid(_CONFIG_MESSAGES[name], field=f"config.{name}")
            if waba is not None and not re.fullmatch(ID_PATTERN, str(waba)):
                raise Invalid(_CONFIG_MESSAGES["waba_id"], field="config.waba_id")
        except Invalid as exc:  # stored settings that cannot work: no attempt will
            raise ChannelError(f"integration {integration.id}: {exc.message}") from None
        return _Account(root, token, number, str(waba) if waba is not None else None)

    async def _request(self, method: str, url: str, doing: str, auth: Mapping[str, str], *,
                       json: Any = None, params: Mapping[str, Any] | None = None) -> _Answer:
        try:
            response = await self._client().request(method, url, headers=auth, json=json,
                                                    params=params)
        except httpx.HTTPError as exc:
            raise ChannelError(f"network: {doing}: {type(exc).__name__}",
                               retryable=True) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        return _Answer(response.status_code, body, response.headers)

    async def _call(self, method: str, url: str, doing: str, auth: Mapping[str, str], *,
                    json: Any = None, params: Mapping[str, Any] | None = None
                    ) -> dict[str, Any]:
        """Meta's answer as a JSON object; `ChannelError` for anything else."""
        return (await self._request(method, url, doing, auth, json=json,
                                    params=params)).checked(doing)

    async def phone_number(self, config: WhatsAppConfig) -> PhoneNumber:
        """Whose number the settings name; `Invalid` when Meta refuses the
        token or does not know the number (for this token)."""
        if not re.fullmatch(ID_PATTERN, config.phone_number_id):
            raise Invalid(_CONFIG_MESSAGES["phone_number_id"], field="config.phone_number_id")
        url = f"{self._root(config.api_base_url, config.api_version)}/{config.phone_number_id}"
        answer = await self._request("GET", url, "getPhoneNumber",
                                     {"Authorization": f"Bearer {config.access_token}"},
                                     params={"fields": "display_phone_number,verified_name"})
        # Not by `type`: Meta calls most of its errors OAuthException.
        if answer.code == 100 and answer.status in (400, 404):
            raise Invalid("Meta knows no phone number with this id (for this access token)",
                          field="config.phone_number_id")
        if answer.status == 401 or answer.code in (190, 102):
            raise Invalid("the access token was refused by Meta", field="config.access_token")
        found = answer.checked("getPhoneNumber")
        return PhoneNumber(id=str(found.get("id") or config.phone_number_id),
                           display_phone_number=found.get("display_phone_number"),
                           verified_name=found.get("verified_name"))

    # -- outbound ---------------------------------------------------------

    async def send(self, integration: Integration, message: OutboundMessage) -> Receipt:
        account = self._account(integration)
        head: dict[str, Any] = {"messaging_product": "whatsapp",
                                "recipient_type": "individual",
                                **_recipient(message.thread_id)}
        if message.template is not None:
            bodies = [{"type": "template", "template": _template(message.template)}]
        else:
            bodies = [{"type": "text", "text": {"body": part, "preview_url": False}}
                      for part in split_text(message.text, MAX_TEXT)]
        if not bodies:
            raise ChannelError("nothing to send: the text is empty")
        url = f"{account.root}/{account.number_id}/messages"
        sent_id: str | None = None
        for index, body in enumerate(bodies):
            if index < message.sent_parts:  # a retry: these went out before
                continue
            payload = {**head, **body}
            if index == 0 and message.reply_to_external_id:
                payload["context"] = {"message_id": message.reply_to_external_id}
            doing = "sendMessage" if len(bodies) == 1 else \
                f"sendMessage (part {index + 1} of {len(bodies)})"
            if self.pacer is not None:
                await self.pacer.wait(account.number_id, message.thread_id)
            answer: _Answer | None = None
            try:
                answer = await self._request("POST", url, doing, account.auth, json=payload)
                sent = answer.checked(doing)
            except ChannelError as error:
                error.sent_parts = index
                if self.pacer is not None and answer is not None \
                        and answer.code == PAIR_RATE and error.retry_after:
                    # The user's later messages wait too, not only this one's retry.
                    await self.pacer.hold(account.number_id, message.thread_id,
                                          error.retry_after)
                raise
            sent_id = self._message_id(sent)
            if sent_id is None:
                raise ChannelError(f"{doing}: Meta answered without a message id",
                                   sent_parts=index)
        if sent_id is None:  # every part went out before: nothing to name
            raise ChannelError("nothing was sent: every part went out already")
        # The last part's id: what statuses and replies refer to.
        return Receipt(external_id=sent_id, sent_at=datetime.now(UTC), unique_in_thread=True)

    @staticmethod
    def _message_id(answer: Mapping[str, Any]) -> str | None:
        messages = answer.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[0], dict):
            found = messages[0].get("id")
            return found if isinstance(found, str) and found else None
        return None

    async def mark_read(self, integration: Integration, external_id: str) -> None:
        account = self._account(integration)
        await self._call("POST", f"{account.root}/{account.number_id}/messages", "markRead",
                         account.auth, json={"messaging_product": "whatsapp",
                                             "status": "read", "message_id": external_id})

    async def templates(self, integration: Integration) -> list[dict[str, Any]]:
        """The business account's message templates (at most ten pages of 100)."""
        account = self._account(integration)
        if account.waba_id is None:
            raise ChannelError(f"integration {integration.id} has no waba_id: its templates"
                               " cannot be listed")
        url = f"{account.root}/{account.waba_id}/message_templates"
        found: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 100}
        for _ in range(MAX_TEMPLATE_PAGES):
            page = await self._call("GET", url, "listTemplates", account.auth, params=params)
            data = page.get("data")
            found += [t for t in data if isinstance(t, dict)] if isinstance(data, list) else []
            paging = _object(page.get("paging"))
            after = _object(paging.get("cursors")).get("after")
            if not paging.get("next") or not isinstance(after, str) or not after:
                break
            params = {"limit": 100, "after": after}
        return found

    async def download(self, integration: Integration, media_id: str, dest_dir: Path,
                       max_bytes: int) -> Attachment:
        """The media into `dest_dir` under a fresh name; `ChannelError` (final)
        when Meta says, or the bytes show, it is over `max_bytes`, or when
        the bytes are not the ones Meta hashed."""
        account = self._account(integration)
        if not re.fullmatch(MEDIA_ID_PATTERN, media_id):
            raise ChannelError(f"not a WhatsApp media id: {media_id!r}")
        info = await self._call("GET", f"{account.root}/{media_id}", "getMedia", account.auth)
        url, mime, digest = info.get("url"), info.get("mime_type"), info.get("sha256")
        declared = info.get("file_size")
        # Meta's docs show the size as a string; answers carry a number.
        size = int(declared) if isinstance(declared, int | str) and \
            str(declared).isdigit() else None
        if size is not None and size > max_bytes:
            raise ChannelError(f"file_too_large: {size} bytes, over {max_bytes}")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise ChannelError("getMedia gave no http(s) url (the media is not downloadable)")
        mime = mime if isinstance(mime, str) and mime else None
        suffix = mimetypes.guess_extension(mime.partition(";")[0].strip()) if mime else None
        suffix = suffix if suffix and re.fullmatch(r"\.[A-Za-z0-9]{1,10}", suffix) else ""
        dest = Path(dest_dir) / f"{secrets.token_hex(16)}{suffix}"
        # On Meta's CDN, not the Graph API: the URL is used as given, with the token.
        written = await stream_to(self._client(), url, dest, max_bytes, headers=account.auth)
        if isinstance(digest, str) and digest:
            actual = await asyncio.to_thread(_sha256_of, dest)
            if not hmac.compare_digest(actual.encode(), digest.strip().lower().encode()):
                dest.unlink(missing_ok=True)
                raise ChannelError(f"checksum mismatch: media {media_id} is not the file Meta"
                                   " hashed")
        return Attachment(url=str(dest), mime_type=mime, size=written, provider_id=media_id,
                          name=None)

    async def __aenter__(self) -> WhatsAppConnector:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
