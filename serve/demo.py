"""`bidi up --demo`: a Demo organization worth opening in the inbox.

Everything goes through the code the API runs: the storage functions (in a
tenant transaction as the application role, so row-level security, audit
rows and events apply) for the CRM, and the chat actors for conversations,
so messages, unread counts and the agent's draft come from the real message
flow. The seed is a list of steps (`STEPS`), each an async function of the
shared `Demo`: the CRM, the website's chat widget (allowed on this engine's
own origin, so its test page works), the conversations, the agent's draft.

Idempotent. The demo is its user, `demo@bidi.local`: a run that finds it
leaves the org alone once its seed is complete (the audit row
`organization.seed` says so), and a run cut short finishes it (each step is
safe to run again: the CRM step is one transaction, inbound messages have
fixed dedup keys and replies fixed idempotency keys). The generated password
and the API key are kept in `<data dir>/demo-credentials.json` (mode 0600),
so every run prints the sign-in it can.
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

from actors.refs import ChatRef
from actors.runtime.client import ActorSystem
from agents import prompts
from channels.signing import new_secret
from channels.webchat import CHANNEL as WEBCHAT
from channels.webchat import parse_origins
from core.crypto import Cipher
from core.errors import ConfigError
from core.messages import InboundMessage, Sender
from core.rbac import Role, permissions_of
from core.security import hash_password
from core.settings import Settings
from serve.auth import API_KEY_PREFIX
from storage import (
    agents,
    api_keys,
    audit,
    chats,
    companies,
    contacts,
    deals,
    identity,
    integrations,
    messages,
    notes,
    pipelines,
)
from storage.audit import Actor
from storage.db import Database
from storage.rows import Page

EMAIL = "demo@bidi.local"
CREDENTIALS = "demo-credentials.json"
DRAFT_WAIT = 30.0  # seconds the demo waits for the agent's draft

STAGES = [("Lead", "#94a3b8"), ("Qualified", "#60a5fa"), ("Proposal", "#f59e0b"),
          ("Negotiation", "#a78bfa"), ("Won", "#22c55e"), ("Lost", "#ef4444")]
COMPANIES = [("Analytical Engines", "Hardware", "analytical.example"),
             ("Bletchley Systems", "Security", "bletchley.example"),
             ("Cobol Works", "Software", "cobol.example")]
# first, last, email, telegram, tags, company (index into COMPANIES)
CONTACTS = [
    ("Ada", "Lovelace", "ada@analytical.example", "ada_l", ["vip", "ai"], 0),
    ("Charles", "Babbage", "charles@analytical.example", None, ["hardware"], 0),
    ("Alan", "Turing", "alan@bletchley.example", "alan_t", ["ai"], 1),
    ("Joan", "Clarke", "joan@bletchley.example", None, ["security"], 1),
    ("Grace", "Hopper", "grace@cobol.example", None, ["navy", "vip"], 2),
    ("Jean", "Sammet", "jean@cobol.example", None, ["compilers"], 2),
]
NOTES = {"ada@analytical.example": "Wants the AI drafts for a team of 40; call back Tuesday.",
         "grace@cobol.example": "Met at the conference; prefers short emails."}
# name, contact email, stage, value (EUR)
DEALS = [("Analytical Engines: 40 seats", "ada@analytical.example", "Proposal", 24_000),
         ("Analytical Engines: support", "charles@analytical.example", "Lead", 3_000),
         ("Bletchley Systems pilot", "alan@bletchley.example", "Qualified", 9_500),
         ("Bletchley Systems: renewal", "joan@bletchley.example", "Won", 12_000),
         ("Cobol Works platform", "grace@cobol.example", "Negotiation", 48_000),
         ("Cobol Works training", "jean@cobol.example", "Lost", 2_000)]
# A conversation: where it happens ("api": the API inbox, "webchat": the
# website's widget), its contact, and its messages ("in": the contact wrote
# it). Those ending with the contact's message stay unread; the agent drafts
# an answer to the first. Replies go out on the widget (they are `sent` at
# once); the API inbox has no callback_url to deliver replies to, so its
# conversations are only the contacts' messages.
CONVERSATIONS = [
    ("api", "ada@analytical.example", [("in", "Hi! How much would 40 seats cost per month?")]),
    ("api", "charles@analytical.example", [("in", "Do you offer an on-premises edition?")]),
    ("webchat", "alan@bletchley.example", [("in", "Hello, could we book a demo next week?"),
                                           ("out", "Of course! Tuesday or Thursday?"),
                                           ("in", "Thursday afternoon works for us.")]),
    ("webchat", "grace@cobol.example", [("in", "The contract draft looks good."),
                                        ("out", "Great, I will send the final version today.")]),
    ("webchat", "jean@cobol.example", [("in", "Is there a training package for new hires?"),
                                       ("out", "Yes: two half-day sessions, remote or on site."),
                                       ("in", "Perfect, thanks."),
                                       ("out", "You're welcome! I'll send the details.")]),
]


@dataclass(frozen=True)
class SignIn:
    """What the CLI prints: None for a secret this run cannot know (its
    credentials file was removed after the demo was made)."""

    org_id: str
    email: str
    password: str | None
    api_key: str | None
    notes: tuple[str, ...] = ()
    widget_test_url: str | None = None


@dataclass
class Demo:
    """What the steps share: the parts, the org, and what earlier steps made."""

    settings: Settings
    db: Database
    actors: ActorSystem
    org_id: str
    user_id: str
    saved: dict[str, Any]  # the credentials file's content
    integration_id: str = ""
    webchat_id: str = ""  # the website widget's integration
    agent_id: str = ""
    chats: list[str] = field(default_factory=list)  # CONVERSATIONS' chats, in order
    notes: list[str] = field(default_factory=list)  # said to whoever started the demo

    @property
    def actor(self) -> Actor:
        return Actor(self.org_id, self.user_id)


Step = Callable[[Demo], Awaitable[None]]


async def seed_demo(settings: Settings) -> SignIn:
    """Make the demo (or finish it, or find it made) and return its sign-in."""
    if settings.database_url is None:
        raise ConfigError("the demo needs a resolved DATABASE_URL")
    path = Path(settings.data_dir) / CREDENTIALS
    async with Database(settings.database_url, settings.app_db_password.get_secret_value(),
                        max_size=2) as db, ActorSystem(settings.hosts) as system:
        demo = await _account(settings, db, system, path)
        async with db.tenant_tx(demo.org_id, demo.user_id) as conn:
            done, _ = await audit.entries(conn, 1, 0, action="organization.seed")
        if done:
            demo.webchat_id = await _webchat_id(demo) or ""
        else:
            for step in STEPS:
                await step(demo)
            async with db.tenant_tx(demo.org_id, demo.user_id) as conn:
                await audit.record(conn, demo.actor, action="organization.seed",
                                   resource_type="organization", resource_id=demo.org_id,
                                   changes={"steps": [s.__name__ for s in STEPS]},
                                   event_type="organization.seeded",
                                   payload={"contacts": len(CONTACTS),
                                            "chats": len(demo.chats)})
    test_page = f"{_origin(settings)}/widget/test?integration={demo.webchat_id}" \
        if demo.webchat_id else None
    return SignIn(demo.org_id, EMAIL, demo.saved.get("password"), demo.saved.get("api_key"),
                  tuple(demo.notes), test_page)


async def _account(settings: Settings, db: Database, system: ActorSystem,
                   path: Path) -> Demo:
    """The demo user and their org, made (with a generated password, saved
    at once) when not there yet."""
    saved = _load(path)
    async with db.system_tx() as conn:
        user = await identity.user_by_email(conn, EMAIL)
        if user is None:
            password = secrets.token_urlsafe(12)
            made, org = await identity.create_user_and_org(
                conn, email=EMAIL, password_hash=await asyncio.to_thread(hash_password, password),
                name="Demo User", org_name="Demo")
            user_id, org_id = str(made["id"]), str(org["id"])
            saved = {"email": EMAIL, "password": password, "organization_id": org_id}
            # Saved before COMMIT: a demo user is never made whose password is lost
            # (a file left by a failed commit is overwritten by the next run).
            _save(path, saved)
        else:
            user_id = str(user["id"])
            org_id = str((await identity.memberships(conn, user["id"]))[0].org_id)
            if saved.get("organization_id") != org_id:  # another engine's file
                saved = {}
    return Demo(settings, db, system, org_id, user_id, saved)


def _load(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _save(path: Path, saved: dict[str, Any]) -> None:
    # Created 0600 (not chmod after: the secret is never readable by others).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(saved, out, indent=2)
    path.chmod(0o600)  # a file kept from before


# -- steps ----------------------------------------------------------------

async def seed_crm(demo: Demo) -> None:
    """Pipeline, companies, contacts, notes, deals, the API inbox, the agent
    and an API key: one transaction, so it is there whole or not at all."""
    async with demo.db.tenant_tx(demo.org_id, demo.user_id) as conn:
        if (await pipelines.page(conn, Page(1, 1))).total:  # made by an earlier run
            cipher = Cipher(demo.settings.encryption_key.get_secret_value())
            demo.integration_id = (await integrations.of_types(conn, ["api"], cipher))["api"].id
            demo.agent_id = str((await agents.page(conn, 1, 0))[1][0]["id"])
            return
        actor = demo.actor
        pipeline = await pipelines.create(
            conn, actor, "Sales", is_default=True,
            stages=[{"name": name, "color": color} for name, color in STAGES])
        stage_ids = {s["name"]: s["id"] for s in pipeline["stages"]}
        company_ids = [(await companies.create(conn, actor, {
            "name": name, "industry": industry, "website": f"https://{site}"}))["id"]
            for name, industry, site in COMPANIES]
        contact_ids: dict[str, UUID] = {}
        for first, last, email, telegram, tags, company in CONTACTS:
            contact_ids[email] = (await contacts.create(conn, actor, {
                "first_name": first, "last_name": last, "email": email,
                "telegram_username": telegram, "tags": tags, "source": "manual",
                "company_id": company_ids[company]}))["id"]
        for email, body in NOTES.items():
            await notes.add(conn, actor, "contact", contact_ids[email], body)
        for name, email, stage, value in DEALS:
            await deals.create(conn, actor, {
                "name": name, "pipeline_id": pipeline["id"], "stage_id": stage_ids[stage],
                "contact_id": contact_ids[email], "value": Decimal(value),
                "currency": "EUR"})
        cipher = Cipher(demo.settings.encryption_key.get_secret_value())
        inbox = await integrations.create(conn, actor, cipher, type="api", name="Website API",
                                          config={}, secrets={"secret": new_secret()})
        demo.integration_id = str(inbox["id"])
        kind = prompts.agent_type("sdr")
        agent = await agents.create(conn, actor, {
            "name": "Demo assistant", "type": "sdr", "prompt_template": kind.template,
            "tools": list(kind.tools), "provider": "offline",
            "guardrails": {"mode": "draft"}})
        demo.agent_id = str(agent["id"])
        key = await api_keys.create(conn, actor, name="Demo key", scopes=sorted(
            permissions_of(Role.ADMIN)), allowed=permissions_of(Role.OWNER))
    demo.saved["api_key"] = f"{API_KEY_PREFIX}_{key.key['prefix']}_{key.secret}"
    _save(Path(demo.settings.data_dir) / CREDENTIALS, demo.saved)


async def seed_webchat(demo: Demo) -> None:
    """The website's widget, allowed on this engine's own origin (its test
    page, `/widget/test`, is served from there)."""
    found = await _webchat_id(demo)
    if found:
        demo.webchat_id = found
        return
    origin = _origin(demo.settings)
    origins = sorted({origin, origin.replace("://127.0.0.1:", "://localhost:")})
    cipher = Cipher(demo.settings.encryption_key.get_secret_value())
    async with demo.db.tenant_tx(demo.org_id, demo.user_id) as conn:
        widget = await integrations.create(
            conn, demo.actor, cipher, type=WEBCHAT, name="Website chat",
            config={"allowed_origins": parse_origins(origins), "identity_verification": False},
            secrets={})
    demo.webchat_id = str(widget["id"])


async def _webchat_id(demo: Demo) -> str | None:
    cipher = Cipher(demo.settings.encryption_key.get_secret_value())
    async with demo.db.tenant_tx(demo.org_id, demo.user_id) as conn:
        found = (await integrations.of_types(conn, [WEBCHAT], cipher)).get(WEBCHAT)
    return found.id if found is not None else None


def _origin(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.port}"


async def seed_conversations(demo: Demo) -> None:
    """The conversations through their chat actors: the contact's messages
    in, the demo user's replies out (the ones answered are read first), the
    agent on each, the demo user on two."""
    for n, (channel, email, script) in enumerate(CONVERSATIONS):
        thread = f"demo-{n + 1}" if channel == "api" else f"i:{email}"
        # The chat's id follows from where it happens (every script starts inbound).
        chat = ChatRef.of(demo.actors, _inbound(demo, channel, email, thread, "", ""))
        for i, (way, text) in enumerate(script):
            key = f"demo-{n + 1}-{i}"
            if way == "in":
                await chat.inbound(_inbound(demo, channel, email, thread, key, text))
            else:
                await chat.mark_read(demo.user_id)
                await chat.send(text, demo.user_id, key)
        demo.chats.append(chat.chat_id)
        await chat.assign(demo.agent_id, demo.user_id)
        if n in (0, 2):
            async with demo.db.tenant_tx(demo.org_id, demo.user_id) as conn:
                await chats.assign_user(conn, demo.actor, chat.chat_id, demo.user_id)


def _inbound(demo: Demo, channel: str, email: str, thread: str, key: str,
             text: str) -> InboundMessage:
    first, last = next((c[0], c[1]) for c in CONTACTS if c[2] == email)
    integration = demo.integration_id if channel == "api" else demo.webchat_id
    sender = f"visitor-{thread}" if channel == "api" else thread
    return InboundMessage(
        organization_id=demo.org_id, integration_id=integration, channel=channel,
        thread_id=thread, external_id=key,
        sender=Sender(id=sender, name=f"{first} {last}", email=email),
        text=text, received_at=datetime.now(UTC))


async def seed_draft(demo: Demo) -> None:
    """The agent's draft answer to the first conversation, waited for (the
    run is the real one: offline provider, draft mode)."""
    chat = ChatRef(demo.actors, demo.org_id, demo.chats[0])
    if not await _has_draft(demo, chat.chat_id):
        await chat.run_agent("manual")
    deadline = asyncio.get_running_loop().time() + DRAFT_WAIT
    while not await _has_draft(demo, chat.chat_id):
        if asyncio.get_running_loop().time() > deadline:
            demo.notes.append(f"the agent's draft did not come within {DRAFT_WAIT:.0f} s"
                              " (see the agent's runs: GET /v1/agents/{id}/executions)")
            return
        await asyncio.sleep(0.2)  # a run takes a few turns of the chat actor


async def _has_draft(demo: Demo, chat_id: str) -> bool:
    async with demo.db.tenant_tx(demo.org_id, demo.user_id) as conn:
        page = await messages.history(conn, chat_id, limit=20)
    return any(m["status"] == "draft" for m in page["data"])


STEPS: tuple[Step, ...] = (seed_crm, seed_webchat, seed_conversations, seed_draft)
