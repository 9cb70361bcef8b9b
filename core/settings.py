"""Settings: the only place that reads the environment.

Everything else takes a `Settings` (or a piece of it) as an argument. Secrets
that are not given (JWT signing key, encryption key) are generated on first
run and kept in the data dir, so a restart keeps sessions and encrypted
columns readable.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import secrets
import stat
from collections.abc import Iterator
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.errors import ConfigError

SECRETS_FILE = "secrets.json"
# Standard Webhooks: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h.
RETRY_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 50400.0, 72000.0,
                  86400.0)
GENERATED = ("jwt_secret", "encryption_key", "app_db_password")
MIB = 1024 * 1024
NO_SECRET = SecretStr("")
log = logging.getLogger("bidi")


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, f"BIDI_{name}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BIDI_", extra="ignore", frozen=True)

    database_url: str | None = Field(default=None, validation_alias=_env("DATABASE_URL"))
    redis_url: str | None = Field(default=None, validation_alias=_env("REDIS_URL"))
    ray_address: str | None = Field(default=None, validation_alias=_env("RAY_ADDRESS"))

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    data_dir: Path = Path(".bidi")

    # Secrets are SecretStr: repr, str and logs show "**********"; readers call
    # .get_secret_value(). Unset is the empty secret.
    jwt_secret: SecretStr = NO_SECRET
    encryption_key: SecretStr = NO_SECRET
    app_db_password: SecretStr = NO_SECRET

    openai_api_key: SecretStr = Field(default=NO_SECRET, validation_alias=_env("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(default=None, validation_alias=_env("OPENAI_BASE_URL"))
    anthropic_api_key: SecretStr = Field(
        default=NO_SECRET, validation_alias=_env("ANTHROPIC_API_KEY")
    )
    anthropic_base_url: str | None = Field(
        default=None, validation_alias=_env("ANTHROPIC_BASE_URL")
    )
    stripe_api_key: SecretStr = Field(default=NO_SECRET, validation_alias=_env("STRIPE_API_KEY"))
    stripe_webhook_secret: SecretStr = Field(
        default=NO_SECRET, validation_alias=_env("STRIPE_WEBHOOK_SECRET")
    )

    public_url: str | None = None  # how browsers reach the API (OAuth redirects)
    # Where providers post webhooks (Telegram needs https); default: public_url.
    webhook_base_url: str | None = None
    google_client_id: str | None = None
    google_client_secret: SecretStr = NO_SECRET
    google_issuer: str = "https://accounts.google.com"
    # Outbound deliveries (API-channel callbacks, webhooks): networks that may
    # be reached although private or local (comma-separated CIDRs), and the
    # delay before each attempt, in seconds (comma-separated).
    outbound_allow_networks: Annotated[tuple[str, ...], NoDecode] = ()
    outbound_retry_schedule: Annotated[tuple[float, ...], NoDecode] = RETRY_SCHEDULE
    telegram_login_bot_token: SecretStr = NO_SECRET

    haproxy: bool = True
    haproxy_maxconn: int = 7500
    # Serve's per-request HTTP ingress metrics (serve_num_http_requests and
    # the like) come from a log line HAProxy writes for every request, which
    # the HAProxy manager actor parses: 0.03 ms of CPU per request, 13% of a
    # no-op request's cost (bench/realtime.py). Off, the replicas still
    # record their own per-deployment request counts and latencies, and
    # HAProxy's Prometheus endpoint stays.
    ingress_metrics: bool = False
    # FastAPI's native OpenTelemetry (traces, metrics and logs to the global
    # providers an OpenTelemetry SDK sets up in the process). Off, no request
    # pays for looking for them (2.4 us each, bench/overheads.py).
    otel: bool = False
    # A host is one Python process, and each Ray worker costs CPU of its own
    # even idle: on 2 cores one host gave 1,133 -> 1,270 msg/s (hosts' CPU per
    # message 0.27 -> 0.17 ms, bench/realtime.py).
    hosts: int = Field(default_factory=lambda: max(1, (os.cpu_count() or 1) // 2), ge=1)
    serve_replicas: int = Field(default=1, ge=1)
    # The niceness of the engine's Ray workers (API replicas, actor hosts, the
    # relay) in a cluster this engine starts. Ray's default, 15, puts them
    # behind Postgres and Ray's own processes on a busy machine: at 0,
    # bench/realtime.py gave 934 -> 1,095 msg/s and e2e p50 10.4 -> 6.6 ms.
    worker_niceness: int = Field(default=0, ge=0, le=19)
    # Seconds between Serve's controller reconciliations (Serve's default is
    # 0.1): its controller took 9% of a core on an idle 2-core stack at 0.1,
    # 3.5% at 0.5 (per-process CPU over 15 s); restarts react 0.4 s later.
    serve_control_interval: float = Field(default=0.5, gt=0)
    # Serve's per-request access log line cost ~4% of an API replica's time;
    # request counts and latencies are in Serve's metrics on the dashboard.
    access_log: bool = False
    dashboard_port: int = 8265
    pool_size: int = Field(default=10, ge=1)
    rate_per_minute: int = Field(default=600, ge=1)
    rate_burst: int = Field(default=120, ge=1)
    login_failures_per_account: int = Field(default=5, ge=1)
    login_failures_per_ip: int = Field(default=30, ge=1)
    login_window_seconds: int = Field(default=900, ge=1)
    # Who may speak for clients in X-Forwarded-For (comma-separated CIDRs);
    # empty: the header is ignored and the caller is the socket peer.
    trusted_proxies: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = ()
    # Unauthenticated sign-in routes (per client IP and route) and /mfa/* (per user).
    auth_rate_per_minute: int = Field(default=120, ge=1)
    auth_burst: int = Field(default=60, ge=1)
    # Sign-up per client IP: looser, as offices and mobile carriers put many
    # people behind one address (and so does a proxy not yet trusted).
    register_rate_per_minute: int = Field(default=60, ge=1)
    register_burst: int = Field(default=60, ge=1)
    mfa_failures_per_user: int = Field(default=5, ge=1)
    mfa_window_seconds: int = Field(default=900, ge=1)
    telegram_login_max_age: int = Field(default=600, ge=1)
    # Outbound Telegram pacing (Telegram's flood limits), across all hosts:
    # messages a second to one chat, a minute to one group, a second per bot.
    telegram_chat_per_second: float = Field(default=1.0, gt=0)
    telegram_group_per_minute: float = Field(default=20.0, gt=0)
    telegram_bot_per_second: float = Field(default=30.0, gt=0)
    # Outbound WhatsApp pacing (Meta's throughput limits): messages a second
    # per business number, seconds between two messages to one user.
    whatsapp_number_per_second: float = Field(default=80.0, gt=0)
    whatsapp_user_interval: float = Field(default=6.0, ge=0)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part for part in (p.strip() for p in value.split(",")) if part]
        if isinstance(value, list | tuple):
            try:
                return tuple(ip_network(str(v), strict=False) for v in value)
            except ValueError as exc:
                raise ValueError(f"trusted_proxies: {exc}") from None
        return value

    @field_validator("outbound_allow_networks", mode="before")
    @classmethod
    def _allowed_networks(cls, value: Any) -> tuple[str, ...]:
        items = _items(value)
        for item in items:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"outbound_allow_networks: {exc}") from None
        return items

    @field_validator("outbound_retry_schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> tuple[float, ...]:
        try:
            delays = tuple(float(v) for v in _items(value))
        except (TypeError, ValueError):
            raise ValueError("outbound_retry_schedule: seconds, comma-separated") from None
        if not delays or any(d < 0 for d in delays):
            raise ValueError("outbound_retry_schedule: one or more delays, none negative")
        return delays

    # Request bodies are refused (413) past these before they are read whole;
    # the signed API-channel webhook has its own cap (channels_api.MAX_BODY).
    max_body_bytes: int = Field(default=MIB, ge=1)
    max_import_bytes: int = Field(default=10 * MIB, ge=1)
    # Files a channel sends us (Telegram's getFile serves up to 20 MB), kept in data_dir/files.
    max_attachment_bytes: int = Field(default=20 * MIB, ge=1)
    # Mailboxes (IMAP): IDLE is re-issued and the folder polled for new UIDs
    # at least this often, in seconds (servers drop idle connections after
    # ~10 min); messages fetched per round and their bytes; a message larger
    # than `email_max_message_bytes` is fetched up to it (kept cut, noted).
    email_poll_interval: float = Field(default=60.0, gt=0, le=540)
    email_batch_messages: int = Field(default=200, ge=1, le=1000)
    email_batch_bytes: int = Field(default=16 * MIB, ge=1)
    email_max_message_bytes: int = Field(default=32 * MIB, ge=1024)
    email_timeout: float = Field(default=30.0, gt=0)
    email_smtp_connections: int = Field(default=4, ge=1, le=32)
    # AI agents: seconds one provider request may take and the retries of a
    # 429/5xx/timeout after it (the SDKs' own backoff); runs of one agent a
    # minute (`rate_limit:ai:{org}:{agent}`).
    ai_timeout: float = Field(default=30.0, gt=0)
    ai_retries: int = Field(default=2, ge=0, le=10)
    ai_runs_per_minute: int = Field(default=120, ge=1)
    # Seconds without a new message after which a chat with an agent is
    # quiet: the facts and preferences its contact stated become memories.
    ai_quiet_seconds: float = Field(default=600.0, gt=0)

    # The web chat widget's visitors (BIDI_WEBCHAT_*): new sessions a minute
    # per client IP and per integration, messages a minute per visitor (each
    # with its burst), and how long a visitor's session token lasts.
    webchat_sessions_per_minute_ip: int = Field(default=30, ge=1)
    webchat_sessions_burst_ip: int = Field(default=30, ge=1)
    webchat_sessions_per_minute: int = Field(default=1200, ge=1)
    webchat_sessions_burst: int = Field(default=600, ge=1)
    webchat_messages_per_minute: int = Field(default=30, ge=1)
    webchat_messages_burst: int = Field(default=20, ge=1)
    webchat_token_ttl: int = Field(default=24 * 3600, ge=60)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # URLs may carry a password: keep it out of repr, str and logs.
        for name, value in super().__repr_args__():
            yield name, masked_url(value) if name in ("database_url", "redis_url") else value

    @property
    def embedded_postgres(self) -> bool:
        return self.database_url is None

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None


def _items(value: Any) -> tuple[str, ...]:
    """A comma-separated string (the environment) or a sequence, as items."""
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(str(v).strip() for v in value or ())


def masked_url(url: str | None) -> str | None:
    """`url` with its password (if any) replaced by `***`, for printing."""
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        if parts.password is None and "password" not in dict(parse_qsl(parts.query)):
            return url
        if parts.password is not None:
            netloc = f"{parts.username or ''}:***@{parts.netloc.rpartition('@')[2]}"
            parts = parts._replace(netloc=netloc)
        query = [(k, "***" if k == "password" else v)
                 for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        return urlunsplit(parts._replace(query=urlencode(query, safe="*/")))
    except ValueError:
        return "<unparseable URL>"


def load_settings(**overrides: object) -> Settings:
    """Read the environment once; `overrides` win (used by the CLI flags)."""
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    return settings.model_copy(update={"data_dir": settings.data_dir.resolve()})


def prepare_data_dir(settings: Settings) -> Settings:
    """Create the data dir (0700: it holds the secrets and the databases) and
    fill in generated secrets; never wipes anything."""
    data_dir = settings.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _make_private(data_dir)
        probe = data_dir / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"data dir {data_dir} is not writable: {reason}") from exc
    path = data_dir / SECRETS_FILE
    stored: dict[str, str] = {}
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
    missing = [k for k in GENERATED if k not in stored]
    if missing:
        for key in missing:
            stored[key] = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an older file may have been created looser
        with os.fdopen(fd, "w") as fh:
            json.dump(stored, fh)
    update = {k: SecretStr(stored[k]) for k in GENERATED
              if not getattr(settings, k).get_secret_value()}
    return settings.model_copy(update=update)


def _make_private(data_dir: Path) -> None:
    """An existing data dir open to others is tightened to 0700 (with a
    warning); one owned by another user is refused."""
    info = data_dir.stat()
    if info.st_uid != os.getuid():
        raise ConfigError(f"data dir {data_dir} belongs to another user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        log.warning("data dir %s was open to other users; now 0700", data_dir)
    if stat.S_IMODE(info.st_mode) != 0o700:
        data_dir.chmod(0o700)
