"""One engine for the whole session (embedded Postgres + Redis, Ray, Serve
with the HAProxy ingress); every test makes its own org and stays independent."""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from actors.kinds import DEFAULT_KINDS
from actors.runtime.client import ActorSystem
from core.settings import Settings, load_settings
from serve.stack import Stack, free_port
from storage.db import Database
from storage.redis import open_redis
from tests.actors.kinds import TEST_KINDS
from tests.fakes import google
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.callback import CallbackServer
from tests.fakes.google import FakeGoogle
from tests.fakes.openai import FakeOpenAI
from tests.fakes.telegram import FakeTelegram
from tests.fakes.whatsapp import FakeGraph

ROOT = Path(__file__).resolve().parent.parent

# Real protocol servers, one each per session: `dovecot` (IMAP) and
# `smtp_peer` (aiosmtpd).
pytest_plugins = ("tests.peers.dovecot", "tests.peers.smtp")


TELEGRAM_LOGIN_BOT_TOKEN = "123456:TEST-login-widget-token"


@pytest.fixture(scope="session")
def fake_google() -> Iterator[FakeGoogle]:
    provider = FakeGoogle(port=free_port()).start()
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeTelegram]:
    """The Telegram Bot API, on loopback (each test adds bots of its own)."""
    server = FakeTelegram(free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_graph() -> Iterator[FakeGraph]:
    """Meta's Graph API for WhatsApp, on loopback (each test adds numbers of its own)."""
    server = FakeGraph(free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    """OpenAI's API (chat completions, embeddings), on loopback; each test
    takes keys of its own (`new_key`) and scripts what the model answers."""
    server = FakeOpenAI(free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_anthropic() -> Iterator[FakeAnthropic]:
    """Anthropic's Messages API, on loopback (keys and scripts as fake_openai's)."""
    server = FakeAnthropic(free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def callback() -> Iterator[CallbackServer]:
    """Where API-channel integrations POST their replies."""
    server = CallbackServer(port=free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stack(fake_google: FakeGoogle) -> Iterator[Stack]:
    # Ray workers import the test-only actor kinds from this checkout.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    # Not under pytest's numbered temp dirs: another pytest run on the machine
    # deletes all but the newest three, Postgres's data and socket with them.
    data_dir = Path(tempfile.mkdtemp(prefix="bidi-test-"))
    port = free_port()
    settings = load_settings(
        data_dir=str(data_dir), port=port, hosts=2,
        webhook_base_url="https://hooks.bidi.test",
        google_client_id=google.CLIENT_ID, google_client_secret=google.CLIENT_SECRET,
        google_issuer=fake_google.issuer, telegram_login_bot_token=TELEGRAM_LOGIN_BOT_TOKEN,
        outbound_allow_networks="127.0.0.1/32", outbound_retry_schedule="0,0.2,0.4,0.8",
        # Every test signs up from 127.0.0.1: one client IP for hundreds of
        # accounts. The per-IP limits are tested on in-process apps of their
        # own (tests/serve/local_app.py).
        register_rate_per_minute=100_000, register_burst=10_000,
        auth_rate_per_minute=100_000, auth_burst=10_000,
        webchat_sessions_per_minute_ip=100_000, webchat_sessions_burst_ip=10_000,
        # Telegram pacing fast enough for tests yet measurable: two chats of
        # one bot (10/s) are over its cap (7/s); groups are paced only as chats
        # here (their cap is measured in tests/storage/test_pacing.py).
        telegram_chat_per_second=5, telegram_bot_per_second=7,
        telegram_group_per_minute=6000,
        # WhatsApp pacing: a number's cap measurable in a second or two; one
        # user's gap short enough not to slow the tests that reply twice.
        whatsapp_number_per_second=20, whatsapp_user_interval=0.05,
        # A provider that hangs is given up on within seconds, not minutes.
        ai_timeout=2.0, ai_retries=1,
        # A chat goes quiet (its facts become memories) within a test's wait.
        ai_quiet_seconds=1.5)
    engine = Stack(settings, dashboard=False, kinds=(*DEFAULT_KINDS, *TEST_KINDS))
    engine.start()
    try:
        yield engine
    finally:
        engine.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(stack: Stack) -> Settings:
    return stack.settings


@pytest.fixture(scope="session")
async def db(settings: Settings) -> AsyncIterator[Database]:
    assert settings.database_url is not None
    async with Database(settings.database_url,
                        settings.app_db_password.get_secret_value()) as database:
        yield database


@dataclass(frozen=True)
class Org:
    id: uuid.UUID
    slug: str


async def create_org(db: Database, name: str = "Test org") -> Org:
    slug = f"t-{uuid.uuid4().hex[:12]}"
    async with db.system_tx() as conn:
        org_id = await conn.fetchval(
            "INSERT INTO organizations (name, slug) VALUES ($1, $2) RETURNING id", name, slug
        )
    return Org(id=org_id, slug=slug)


@pytest.fixture
async def org(db: Database) -> Org:
    """A fresh organization for one test."""
    return await create_org(db)


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    """A client of the session's Redis, for one test."""
    assert settings.redis_url is not None
    client = open_redis(settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
async def actors(settings: Settings) -> AsyncIterator[ActorSystem]:
    """A caller of the session's actor hosts, as a Serve replica would be."""
    system = ActorSystem(settings.hosts)
    yield system
    await system.close()


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the engine, through Serve's ingress."""
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as client:
        yield client


@dataclass(frozen=True)
class Account:
    email: str
    password: str
    user_id: str
    org_id: str
    access: str
    refresh: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}


async def register(api: httpx.AsyncClient, org_name: str = "Acme") -> Account:
    email = f"u{uuid.uuid4().hex[:12]}@example.com"
    password = "correct horse battery"
    resp = await api.post("/v1/auth/register", json={
        "email": email, "password": password, "name": "Test User",
        "organization_name": org_name})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    return Account(email, password, body["user"]["id"], body["organization"]["id"],
                   body["access_token"], body["refresh_token"])


@pytest.fixture
async def owner(api: httpx.AsyncClient) -> Account:
    """A freshly registered user who owns a fresh organization."""
    return await register(api)
