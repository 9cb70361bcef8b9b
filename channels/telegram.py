"""The Telegram channel: a bot's chats, through the Bot API.

Webhook mode: Telegram POSTs each Update with the secret token we gave
`setWebhook` in `X-Telegram-Bot-Api-Secret-Token`. Polling mode:
`getUpdates` after the stored offset. A bot uses one mode at a time
(getUpdates answers 409 while a webhook is set). python-telegram-bot is the
client, one `telegram.Bot` per token and API server; its errors are turned
into `ChannelError`s at one place (`channel_error`). Parsing lives in
channels.telegram_updates."""
from __future__ import annotations

import hmac
import logging
import mimetypes
import re
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, Protocol
from urllib.parse import urlsplit

import httpx
import msgspec
import telegram
from telegram import error as tg
from telegram.request import HTTPXRequest

from channels.base import (
    BASE_URL_MESSAGE,
    CONFLICT,
    CREDENTIALS_REFUSED,
    ChannelError,
    server_root,
)
from channels.downloads import stream_to
from channels.telegram_updates import (
    ALLOWED_UPDATES,
    CHANNEL,
    callback_ids,
    check,
    decode,
    merge,
    parse_update,
)
from core.errors import Invalid, Unauthorized
from core.messages import Attachment, Batch, OutboundMessage, Receipt
from storage.integrations import Integration

__all__ = ("ALLOWED_UPDATES", "CHANNEL", "MAX_TEXT", "BotInfo", "TelegramConfig",
           "TelegramConnector", "callback_ids", "channel_error", "new_secret_token",
           "parse_config", "split_text")

log = logging.getLogger(__name__)

MAX_TEXT = 4096
DEFAULT_API_BASE = "https://api.telegram.org"
SECRET_HEADER = "x-telegram-bot-api-secret-token"
TOKEN_PATTERN = r"^[0-9]+:[A-Za-z0-9_-]{35,}\Z"  # \Z: `$` would let a newline end it
POLL_LIMIT = 100
POLL_GRACE = 10.0  # the read timeout of a long poll is its `timeout` plus this


class TelegramConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    bot_token: Annotated[str, msgspec.Meta(pattern=TOKEN_PATTERN)]
    mode: Literal["webhook", "polling"] = "webhook"
    api_base_url: str | None = DEFAULT_API_BASE


_CONFIG_MESSAGES = {
    "bot_token": "bot_token must be the token @BotFather gave: digits, a colon and 35 or"
                 " more letters, digits, '_' or '-'",
    "mode": "mode must be 'webhook' or 'polling'",
    "api_base_url": BASE_URL_MESSAGE,
}


def parse_config(data: Mapping[str, Any]) -> TelegramConfig:
    """A Telegram integration's settings, checked; `Invalid` names the field
    (and never echoes the token)."""
    try:
        config = msgspec.convert(dict(data), TelegramConfig)
    except msgspec.ValidationError as exc:
        found = re.search(r"at `\$\.([A-Za-z_]+)", str(exc))
        name = found.group(1) if found else None
        if name in _CONFIG_MESSAGES:
            raise Invalid(_CONFIG_MESSAGES[name], field=f"config.{name}") from None
        if "missing required field" in str(exc):
            raise Invalid("bot_token is required", field="config.bot_token") from None
        raise Invalid(f"invalid Telegram settings: {exc}", field="config") from None
    return msgspec.structs.replace(config, api_base_url=api_base(config.api_base_url))


def api_base(url: str | None) -> str:
    """The Bot API server's root, without a trailing slash."""
    return server_root(url, DEFAULT_API_BASE)


def new_secret_token() -> str:
    """A webhook secret: 43 characters of A-Za-z0-9_- (Telegram allows 1-256)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class BotInfo:
    id: int
    username: str | None
    name: str


def _seconds(exc: tg.RetryAfter) -> float:
    # `retry_after` warns (int now, timedelta later); the timedelta is the truth.
    delay = getattr(exc, "_retry_after", None)
    if delay is not None and hasattr(delay, "total_seconds"):
        return float(delay.total_seconds())
    value = exc.retry_after
    return float(value.total_seconds() if hasattr(value, "total_seconds") else value)


def channel_error(exc: tg.TelegramError, doing: str) -> ChannelError:
    """The one place PTB's errors become ours. Order matters: BadRequest
    and TimedOut are NetworkErrors in PTB."""
    what = f"{doing}: {exc.message}"
    if isinstance(exc, tg.RetryAfter):
        return ChannelError(f"rate_limited: {what}", retryable=True, retry_after=_seconds(exc))
    if isinstance(exc, tg.Forbidden):  # blocked, kicked, or never started by the user
        return ChannelError(f"bot_blocked: {what}", unreachable=True)
    if isinstance(exc, tg.ChatMigrated):
        return ChannelError(f"chat_migrated: {doing}: the group is now the supergroup"
                            f" {exc.new_chat_id}")
    if isinstance(exc, tg.InvalidToken):
        return ChannelError(f"token_refused: {doing}: the bot token was refused by Telegram",
                            reason=CREDENTIALS_REFUSED)
    if isinstance(exc, tg.Conflict):
        return ChannelError(f"conflict: {what} (a webhook is set, or another process polls"
                            " this bot)", retryable=True, reason=CONFLICT)
    if isinstance(exc, tg.BadRequest):
        return ChannelError(f"bad_request: {what}")
    return ChannelError(f"{type(exc).__name__}: {what}", retryable=True)


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """`text` in parts of at most `limit` UTF-16 code units (how Telegram
    counts: an emoji outside the BMP is two). A part ends at the last
    newline of its window when that is past its middle, else at the last
    space or newline (the whitespace at a cut is dropped); only a window
    without either is cut mid-word, and never between a character and its
    combining mark, variation selector, skin tone or zero-width joiner.
    No part is empty or only whitespace."""
    parts: list[str] = []
    rest = text
    while (fits := _fit(rest, limit)) < len(rest):
        window = rest[:fits + 1]  # a cut right after the window's end is fine too
        newline = window.rfind("\n")
        cut = newline if newline > fits // 2 else max(newline, window.rfind(" "))
        if cut > 0:
            head, rest = rest[:cut], rest[cut + 1:]
        else:
            cut = max(fits, 1)  # a character wider than `limit` goes alone
            while cut > 1 and _joined(rest[cut - 1], rest[cut]):
                cut -= 1
            head, rest = rest[:cut], rest[cut:]
        if head.strip():
            parts.append(head)
    if rest.strip():
        parts.append(rest)
    return parts


def _fit(text: str, limit: int) -> int:
    """How many characters of `text` fit in `limit` UTF-16 code units."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


def _joined(before: str, after: str) -> bool:
    """Whether a cut between the two characters would split what shows as one."""
    return (unicodedata.combining(after) > 0 or after in ("\u200d", "\ufe0f")
            or "\U0001f3fb" <= after <= "\U0001f3ff" or before == "\u200d")


def _chat_and_topic(thread_id: str) -> tuple[int, int | None]:
    chat, _, topic = thread_id.partition(":")
    try:
        return int(chat), int(topic) if topic else None
    except ValueError:
        raise ChannelError(f"not a Telegram thread id: {thread_id!r}") from None


def _checked(token: str) -> str:
    if not re.fullmatch(TOKEN_PATTERN, token):
        # also keeps a token with '/' or '?' out of the request URL
        raise Invalid(_CONFIG_MESSAGES["bot_token"], field="config.bot_token")
    return token


class Pacer(Protocol):
    """Telegram's outbound limits, shared by every host (storage.pacing)."""

    async def wait(self, bot_id: str, chat_id: int) -> None:
        """Return when one more message may go to `chat_id` from the bot."""

    async def hold(self, bot_id: str, chat_id: int, seconds: float) -> None:
        """Send nothing more to `chat_id` for `seconds` (a 429's retry_after)."""


class TelegramConnector:
    """channels.base.WebhookConnector and PollingConnector for Telegram.

    `api_base_url` (a self-hosted Bot API server, or a test fake) is used
    for integrations whose config does not name one. With a `pacer`, every
    message sent (each part of a split one) waits for its slot."""

    def __init__(self, api_base_url: str | None = None, *, read_timeout: float = 15.0,
                 pacer: Pacer | None = None) -> None:
        self.api_base_url = api_base(api_base_url)
        self.read_timeout = read_timeout  # of every call but the long poll
        self.pacer = pacer
        self._bots: dict[tuple[str, str], telegram.Bot] = {}
        self._requests: list[HTTPXRequest] = []
        self._files: httpx.AsyncClient | None = None

    def _base_of(self, integration: Integration) -> str:
        configured = integration.config.get("api_base_url")
        return api_base(configured) if configured else self.api_base_url

    def bot(self, token: str, base: str | None = None) -> telegram.Bot:
        """This token's Bot on `base` (made once, kept until `close`)."""
        key = (_checked(token), base or self.api_base_url)
        if key not in self._bots:
            self._bots[key], requests = self._new_bot(*key)
            self._requests += requests
        return self._bots[key]

    def _new_bot(self, token: str, base: str) -> tuple[telegram.Bot, list[HTTPXRequest]]:
        sends = HTTPXRequest(connection_pool_size=16, connect_timeout=5.0,
                             read_timeout=self.read_timeout, write_timeout=15.0,
                             pool_timeout=5.0)
        polls = HTTPXRequest(connection_pool_size=2, connect_timeout=5.0,
                             read_timeout=POLL_GRACE, write_timeout=10.0, pool_timeout=5.0)
        bot = telegram.Bot(token, base_url=f"{base}/bot", base_file_url=f"{base}/file/bot",
                           request=sends, get_updates_request=polls)
        return bot, [sends, polls]

    def _bot_of(self, integration: Integration) -> telegram.Bot:
        token = integration.secrets.get("bot_token")
        try:
            if not token:
                raise Invalid("no bot token", field="config.bot_token")
            return self.bot(token, self._base_of(integration))
        except Invalid as exc:  # stored settings that cannot work: no attempt will
            raise ChannelError(f"integration {integration.id}: {exc.message}") from None

    async def get_me(self, token: str, api_base_url: str | None = None) -> BotInfo:
        """Who the token belongs to; `Invalid` when Telegram refuses it. A
        token not in use yet gets a Bot for this call only, so that tokens
        tried and refused leave no clients behind."""
        key = (_checked(token), api_base(api_base_url) if api_base_url else self.api_base_url)
        bot, temporary = self._bots.get(key), list[HTTPXRequest]()
        if bot is None:
            bot, temporary = self._new_bot(*key)
        try:
            me = await bot.get_me()
        except tg.InvalidToken:
            raise Invalid("the bot token was refused by Telegram",
                          field="config.bot_token") from None
        except tg.TelegramError as exc:
            raise channel_error(exc, "getMe") from exc
        finally:
            for request in temporary:
                await request.shutdown()
        return BotInfo(id=me.id, username=me.username, name=me.full_name)

    # -- webhook ----------------------------------------------------------

    async def set_webhook(self, integration: Integration, url: str) -> None:
        secret = integration.secrets.get("secret_token")
        if not secret:
            raise ChannelError(f"integration {integration.id} has no webhook secret token")
        try:
            await self._bot_of(integration).set_webhook(
                url=url, secret_token=secret, allowed_updates=list(ALLOWED_UPDATES))
        except tg.TelegramError as exc:
            raise channel_error(exc, "setWebhook") from exc

    async def delete_webhook(self, integration: Integration) -> None:
        try:
            await self._bot_of(integration).delete_webhook()
        except tg.TelegramError as exc:
            raise channel_error(exc, "deleteWebhook") from exc

    def verify(self, integration: Integration, headers: Mapping[str, str],
               body: bytes) -> None:
        expected = integration.secrets.get("secret_token")
        got = headers.get(SECRET_HEADER)  # by lower-case name, as both callers give them
        if got is None:  # a mapping of other case
            got = next((v for k, v in headers.items() if k.lower() == SECRET_HEADER), None)
        if not expected or got is None:
            raise Unauthorized("missing X-Telegram-Bot-Api-Secret-Token")
        if not hmac.compare_digest(got.encode(), expected.encode()):
            raise Unauthorized("wrong X-Telegram-Bot-Api-Secret-Token")

    def parse(self, integration: Integration, body: bytes) -> Batch:
        return parse_update(integration.org_id, integration.id, decode(body))

    # -- polling ----------------------------------------------------------

    async def poll(self, integration: Integration, cursor: str | None,
                   timeout: float) -> tuple[Batch, str | None]:
        try:
            offset = int(cursor) if cursor else None
        except ValueError:
            raise ChannelError(f"not a getUpdates offset: {cursor!r}") from None
        bot = self._bot_of(integration)
        wait = max(0, int(timeout))
        try:
            # `Bot.get_updates` would hand back PTB objects, which drop what they
            # do not know; `_post` is what every Bot method (and
            # `do_api_request`, which warns for known methods) calls, and
            # answers the raw `result`.
            updates = await bot._post(
                "getUpdates",
                {"offset": offset, "limit": POLL_LIMIT, "timeout": wait,
                 "allowed_updates": list(ALLOWED_UPDATES)},
                read_timeout=wait + POLL_GRACE)
        except tg.TelegramError as exc:
            raise channel_error(exc, "getUpdates") from exc
        if not isinstance(updates, list):
            raise ChannelError("getUpdates answered something other than a list",
                               retryable=True)
        batches, last = [], None
        for update in updates:
            try:
                update = check(update)
            except Invalid as exc:
                batches.append(Batch(ignored=(f"update: {exc.message}",)))
                continue
            last = max(last or 0, update["update_id"])
            batches.append(parse_update(integration.org_id, integration.id, update))
        return merge(batches), cursor if last is None else str(last + 1)

    # -- outbound ---------------------------------------------------------

    async def send(self, integration: Integration, message: OutboundMessage) -> Receipt:
        chat, topic = _chat_and_topic(message.thread_id)
        parts = split_text(message.text, MAX_TEXT)
        if not parts:
            raise ChannelError("nothing to send: the text is empty")
        bot = self._bot_of(integration)
        reply = None
        if message.reply_to_external_id and message.reply_to_external_id.isdigit():
            reply = telegram.ReplyParameters(message_id=int(message.reply_to_external_id),
                                             allow_sending_without_reply=True)
        bot_id = str(bot.token).partition(":")[0]
        sent: telegram.Message | None = None
        for index, part in enumerate(parts):
            if index < message.sent_parts:  # a retry: these went out before
                continue
            if self.pacer is not None:
                await self.pacer.wait(bot_id, chat)
            try:
                sent = await bot.send_message(
                    chat_id=chat, text=part, message_thread_id=topic,
                    reply_parameters=reply if index == 0 else None)
            except tg.TelegramError as exc:
                doing = "sendMessage" if len(parts) == 1 else \
                    f"sendMessage (part {index + 1} of {len(parts)})"
                error = channel_error(exc, doing)
                error.sent_parts = index
                if self.pacer is not None and error.retry_after:
                    # The chat's later messages wait too, not only this one's retry.
                    await self.pacer.hold(bot_id, chat, error.retry_after)
                raise error from exc
        if sent is None:  # split_text gave parts: unreachable, but typed
            raise ChannelError("nothing was sent")
        # The last part's id: what later edits, replies and statuses refer to.
        return Receipt(external_id=str(sent.message_id), unique_in_thread=True,
                       sent_at=sent.date.astimezone(UTC) if sent.date else datetime.now(UTC))

    async def send_typing(self, integration: Integration, thread_id: str) -> None:
        chat, topic = _chat_and_topic(thread_id)
        try:
            await self._bot_of(integration).send_chat_action(
                chat_id=chat, action="typing", message_thread_id=topic)
        except tg.TelegramError as exc:
            raise channel_error(exc, "sendChatAction") from exc

    async def answer_callback(self, integration: Integration, callback_query_id: str) -> None:
        try:
            await self._bot_of(integration).answer_callback_query(callback_query_id)
        except tg.TelegramError as exc:
            raise channel_error(exc, "answerCallbackQuery") from exc

    async def settle(self, integration: Integration, batch: Batch) -> None:
        """After `batch` is committed: answer its callback queries (the
        buttons stop spinning) and log what it carried that we ignore. A
        failed answer is logged: the update is stored, a spinner is all it costs."""
        if batch.ignored:
            log.info("telegram %s: acknowledged without storing: %s", integration.id,
                     ", ".join(batch.ignored))
        for callback_id in callback_ids(batch):
            try:
                await self.answer_callback(integration, callback_id)
            except ChannelError as exc:
                log.warning("telegram %s: answerCallbackQuery failed: %s", integration.id, exc)

    async def download(self, integration: Integration, file_id: str, dest_dir: Path,
                       max_bytes: int) -> Attachment:
        """The file into `dest_dir` under a fresh name; `ChannelError` (final)
        when Telegram says, or the bytes show, it is over `max_bytes`."""
        bot = self._bot_of(integration)
        try:
            file = await bot.get_file(file_id)
        except tg.TelegramError as exc:
            raise channel_error(exc, "getFile") from exc
        if file.file_size is not None and file.file_size > max_bytes:
            raise ChannelError(f"file_too_large: {file.file_size} bytes, over {max_bytes}")
        if not file.file_path:
            raise ChannelError("getFile gave no file_path (the file is not downloadable)")
        # Only the last segment's suffix is kept: `file_path` is Telegram's
        # name, never a path of ours.
        name = PurePosixPath(urlsplit(file.file_path).path).name
        suffix = PurePosixPath(name).suffix
        suffix = suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,10}", suffix) else ""
        dest = Path(dest_dir) / f"{secrets.token_hex(16)}{suffix}"
        size = await self._stream(file.file_path, dest, max_bytes)
        return Attachment(url=str(dest), name=name or None,
                          mime_type=mimetypes.guess_type(name)[0] if name else None,
                          size=size, provider_id=file_id)

    async def _stream(self, url: str, dest: Path, max_bytes: int) -> int:
        if self._files is None:
            self._files = httpx.AsyncClient(
                timeout=httpx.Timeout(self.read_timeout, connect=5.0, pool=5.0),
                follow_redirects=False)
        # the URL holds the bot token: stream_to's messages never quote it
        return await stream_to(self._files, url, dest, max_bytes)

    async def __aenter__(self) -> TelegramConnector:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Shut every Bot's HTTP clients (and the downloads' client)."""
        for request in self._requests:
            await request.shutdown()
        self._requests.clear()
        self._bots.clear()
        if self._files is not None:
            await self._files.aclose()
            self._files = None
