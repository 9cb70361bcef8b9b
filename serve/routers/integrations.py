"""Channel integrations. Type `api` (a generic API inbox) gets an HMAC secret,
returned once as `secret`; inbound messages are signed with it and replies
are POSTed, signed the same way, to `callback_url`, which must be an http(s)
URL whose host resolves to addresses the engine may reach (channels.netguard;
checked again at every send). Both checks and the secret's format are the
channel layer's; storage.integrations stores the result. Other channel types
(Telegram, WhatsApp, email) join with their connectors."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field, model_validator

from channels import netguard
from channels.signing import new_secret
from core.crypto import Cipher
from core.errors import Invalid, NotFound
from core.settings import Settings
from serve.auth import Principal, require, runtime_of
from serve.models import Strict
from serve.pagination import Page, PageParams, page_params
from serve.routers import integrations_email as email
from serve.routers import integrations_telegram as telegram
from serve.routers import integrations_webchat as webchat
from serve.routers import integrations_whatsapp as whatsapp
from storage import agents, integrations

router = APIRouter(prefix="/v1/integrations", tags=["integrations"])

CALLBACK_FIELD = "config.callback_url"
URL_MAX = 2048


class IntegrationIn(Strict):
    type: Literal["api"]
    name: str = Field(min_length=1, max_length=255)
    callback_url: str | None = Field(
        default=None, min_length=1, max_length=URL_MAX,
        description="Where replies are POSTed (Standard Webhooks signed): http or https, "
                    "to a public address")


class TelegramConfigIn(Strict):
    bot_token: str = Field(min_length=1, max_length=200, description="From @BotFather")
    mode: Literal["webhook", "polling"] = Field(
        description="webhook: Telegram posts updates to this engine's public URL;"
                    " polling: the engine fetches them (no public URL needed)")
    api_base_url: str | None = Field(
        default=None, min_length=1, max_length=URL_MAX,
        description="A self-hosted Bot API server (default https://api.telegram.org)")


class TelegramIn(Strict):
    type: Literal["telegram"]
    name: str = Field(min_length=1, max_length=255)
    config: TelegramConfigIn


class WhatsAppConfigIn(Strict):
    access_token: str = Field(min_length=1, max_length=1024,
                              description="A system user's access token (Meta Business)")
    app_secret: str = Field(min_length=1, max_length=256,
                            description="The Meta app's secret: signs its notifications")
    verify_token: str = Field(min_length=1, max_length=256,
                              description="What Meta echoes when it verifies the webhook URL")
    phone_number_id: str = Field(min_length=1, max_length=32)
    waba_id: str | None = Field(default=None, min_length=1, max_length=32,
                                description="The WhatsApp Business Account (for templates)")
    api_base_url: str | None = Field(default=None, min_length=1, max_length=URL_MAX,
                                     description="Default https://graph.facebook.com")
    api_version: str | None = Field(default=None, min_length=1, max_length=16,
                                    description="The Graph API version, e.g. v23.0")


class WhatsAppIn(Strict):
    type: Literal["whatsapp"]
    name: str = Field(min_length=1, max_length=255)
    config: WhatsAppConfigIn


class ServerIn(Strict):
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(ge=1, le=65535)
    tls: Literal["ssl", "starttls", "none"] = Field(
        description="ssl: TLS from the start (IMAP 993, SMTP 465); starttls: upgraded"
                    " (IMAP 143, SMTP 587); none: plain text (only for servers on a trusted"
                    " network)")
    username: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024, description="Stored encrypted;"
                          " never shown again")


class ImapIn(ServerIn):
    folder: str | None = Field(default=None, min_length=1, max_length=255,
                               description="The folder to read (default INBOX)")


class EmailConfigIn(Strict):
    address: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$",
                         description="The mailbox's address: replies come from it")
    imap: ImapIn
    smtp: ServerIn
    reply_domain: str | None = Field(
        default=None, min_length=1, max_length=253,
        description="Replies say Reply-To: reply+<token>@<reply_domain> (a domain whose"
                    " mail reaches this mailbox); the token finds the conversation")
    import_days: int | None = Field(default=None, ge=0, le=365,
                                    description="Days of mail imported once when connected"
                                                " (default 7)")


class EmailIn(Strict):
    type: Literal["email"]
    name: str = Field(min_length=1, max_length=255)
    config: EmailConfigIn


class ModelKeyIn(Strict):
    api_key: str = Field(min_length=1, max_length=512, description="Stored encrypted; never"
                         " shown again")
    base_url: str | None = Field(default=None, min_length=1, max_length=URL_MAX,
                                 description="An OpenAI- or Anthropic-compatible server"
                                             " (default: the provider's)")


class ModelProviderIn(Strict):
    type: Literal["openai", "anthropic"]
    name: str = Field(min_length=1, max_length=255)
    config: ModelKeyIn


CreateIn = Annotated[IntegrationIn | TelegramIn | WhatsAppIn | EmailIn | ModelProviderIn
                     | webchat.WebchatIn,
                     Field(discriminator="type")]


class PasswordIn(Strict):
    password: str = Field(min_length=1, max_length=1024)


class ConfigPatch(Strict):
    mode: Literal["webhook", "polling"] | None = Field(
        default=None,
        description="Telegram: how the bot receives updates (see TelegramConfigIn.mode)")
    imap: PasswordIn | None = Field(default=None, description="Email: a new IMAP password"
                                    " (logged in with before it is stored)")
    smtp: PasswordIn | None = Field(default=None, description="Email: a new SMTP password")
    allowed_origins: list[str] | None = Field(default=None, min_length=1, max_length=20,
                                              description="Web chat: the sites it runs on")

    @model_validator(mode="after")
    def _something(self) -> ConfigPatch:
        if self.mode is None and self.imap is None and self.smtp is None \
                and self.allowed_origins is None:
            raise ValueError("config needs a change: mode (Telegram), imap / smtp"
                             " passwords (email), or allowed_origins (web chat)")
        return self


class IntegrationPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    callback_url: str | None = Field(default=None, min_length=1, max_length=URL_MAX)
    is_active: bool | None = None
    config: ConfigPatch | None = None
    default_agent_id: UUID | None = Field(
        default=None, description="The AI agent every new chat of this integration gets"
                                  " (null: none)")


class IntegrationOut(BaseModel):
    id: UUID
    type: str
    name: str | None
    config: dict[str, Any]
    is_active: bool
    last_sync_at: datetime | None
    error: str | None = Field(description="Why it stopped working on its own (a token Telegram"
                              " refused, say); cleared by switching it off and on")
    error_at: datetime | None
    created_at: datetime | None
    updated_at: datetime | None
    embed: str | None = Field(default=None, description="Web chat: the <script> tag to paste")


class WebchatCreated(IntegrationOut):
    secret: str | None = Field(default=None, description="Web chat with identity_verification:"
                               " the key identifiers are HMAC-ed with. Shown this once.")


class IntegrationCreated(IntegrationOut):
    secret: str = Field(description="The signing secret (whsec_...). Shown this once.")
    inbound_url: str = Field(description="Where to POST inbound messages")


async def _checked(settings: Settings, url: str, field: str = CALLBACK_FIELD) -> str:
    """`url` if the engine may POST to it; else 422 naming why."""
    await netguard.check_url(url, netguard.Policy.from_settings(settings), field=field)
    return url


def _inbound_path(integration_id: UUID) -> str:
    return f"/v1/channels/api/{integration_id}/messages"


def _cipher(settings: Settings) -> Cipher:
    return Cipher(settings.encryption_key.get_secret_value())


class TelegramCreated(IntegrationOut):
    webhook_url: str | None = Field(description="Where Telegram posts updates (webhook mode)")


class WhatsAppCreated(IntegrationOut):
    webhook_url: str = Field(description="This number's callback URL for Meta")
    app_webhook_url: str = Field(description="One callback URL for all of an app's numbers"
                                 " (routed by phone_number_id)")


class TemplateOut(BaseModel):
    name: str
    language: str | None = None
    status: str | None = None
    category: str | None = None
    id: str | None = None
    components: list[dict[str, Any]] = Field(default_factory=list)


class TemplatesOut(BaseModel):
    data: list[TemplateOut]


@router.post("", status_code=201,
             response_model=IntegrationCreated | TelegramCreated | WhatsAppCreated
             | WebchatCreated | IntegrationOut)
async def create_integration(body: CreateIn, request: Request,
                             principal: Principal = Depends(
                                 require("integrations:manage"))) -> Any:
    if isinstance(body, TelegramIn):
        return await telegram.create(request, principal, body.name, body.config)
    if isinstance(body, WhatsAppIn):
        return await whatsapp.create(request, principal, body.name, body.config)
    if isinstance(body, EmailIn):
        return await email.create(request, principal, body.name, body.config)
    if isinstance(body, webchat.WebchatIn):
        return await webchat.create(request, principal, body.name, body.config)
    runtime = runtime_of(request)
    if isinstance(body, ModelProviderIn):  # an org's own key for its agents
        public: dict[str, Any] = {}
        if body.config.base_url is not None:
            public["base_url"] = await _checked(runtime.settings, body.config.base_url,
                                                "config.base_url")
        async with runtime.db.tenant_tx(principal.org_id, principal.user_id) as conn:
            return await integrations.create(conn, principal.actor, _cipher(runtime.settings),
                                             type=body.type, name=body.name, config=public,
                                             secrets={"api_key": body.config.api_key})
    secret = new_secret()
    config: dict[str, Any] = {}
    if body.callback_url is not None:
        config["callback_url"] = await _checked(runtime.settings, body.callback_url)
    async with runtime.db.tenant_tx(principal.org_id, principal.user_id) as conn:
        row = await integrations.create(conn, principal.actor, _cipher(runtime.settings),
                                        type=body.type, name=body.name, config=config,
                                        secrets={"secret": secret})
    return {**row, "secret": secret, "inbound_url": _inbound_path(row["id"])}


@router.get("", response_model=Page[IntegrationOut])
async def list_integrations(request: Request, page: PageParams = Depends(page_params),
                            principal: Principal = Depends(require("org:read"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        total, rows = await integrations.page(conn, page.limit, page.offset)
    return {"page": page.page, "limit": page.limit, "total": total,
            "data": [webchat.shown(request, row) for row in rows]}


@router.get("/{integration_id}", response_model=IntegrationOut)
async def get_integration(integration_id: UUID, request: Request,
                          principal: Principal = Depends(require("org:read"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        row = await integrations.get(conn, integration_id)
    return webchat.shown(request, row)


@router.get("/{integration_id}/templates", response_model=TemplatesOut)
async def list_templates(integration_id: UUID, request: Request,
                         refresh: bool = Query(False, description="Read them from Meta now"),
                         principal: Principal = Depends(require("org:read"))) -> Any:
    """A WhatsApp integration's message templates (from its business
    account), cached for ten minutes."""
    runtime = runtime_of(request)
    async with runtime.db.tenant_tx(principal.org_id, principal.user_id) as conn:
        found = await integrations.find(conn, str(integration_id), _cipher(runtime.settings))
    if found is None:
        raise NotFound("integration not found")
    if found.type != "whatsapp":
        raise Invalid("only WhatsApp integrations have message templates")
    return {"data": await whatsapp.templates(request, found, refresh)}


@router.patch("/{integration_id}", response_model=IntegrationOut)
async def update_integration(integration_id: UUID, body: IntegrationPatch, request: Request,
                             principal: Principal = Depends(
                                 require("integrations:manage"))) -> Any:
    changes = {k: getattr(body, k) for k in body.model_fields_set - {"config"}}
    passwords: dict[str, str] = {}
    if body.config is not None:
        if body.config.mode is not None:
            changes["mode"] = body.config.mode
        passwords = {f"{name}_password": given.password for name in ("imap", "smtp")
                     if (given := getattr(body.config, name)) is not None}
        changes.update(webchat.changes(body.config.allowed_origins))
    if "default_agent_id" in changes:
        agent = changes["default_agent_id"]
        changes["default_agent_id"] = str(agent) if agent is not None else None
    if changes.get("callback_url") is not None:
        changes["callback_url"] = await _checked(runtime_of(request).settings,
                                                 changes["callback_url"])
    runtime = runtime_of(request)
    cipher, after = _cipher(runtime.settings), None
    async with runtime.db.tenant_tx(principal.org_id, principal.user_id) as conn:
        before = await integrations.find(conn, str(integration_id), cipher)  # None: 404 below
        if changes.get("default_agent_id") is not None \
                and not await agents.exists(conn, changes["default_agent_id"]):
            raise Invalid("no such agent in this organization", field="default_agent_id")
        if before is not None:
            telegram.check_change(before, changes)
            if "allowed_origins" in changes and before.type != webchat.CHANNEL:
                raise Invalid("only web chat integrations have allowed_origins",
                              field="config.allowed_origins")
            if passwords:
                await email.check_passwords(runtime.settings, before, passwords)
                await integrations.reseal(conn, principal.actor, cipher, integration_id,
                                          passwords, clear_error=True)
        row = await integrations.update(conn, principal.actor, integration_id, changes)
        if before is not None and before.type != "api":
            after = await integrations.find(conn, str(integration_id), cipher)
            await telegram.changed(request, before, after)  # the provider told inside
    await telegram.settled(request, before, after)
    await email.settled(request, before, after, restart=bool(passwords))
    return webchat.shown(request, row)


@router.post("/{integration_id}/rotate-secret", response_model=IntegrationCreated)
async def rotate_secret(integration_id: UUID, request: Request,
                        principal: Principal = Depends(require("integrations:manage"))) -> Any:
    """A new signing secret (shown once); the old one stops working at once."""
    runtime = runtime_of(request)
    async with runtime.db.tenant_tx(principal.org_id, principal.user_id) as conn:
        kind = (await integrations.get(conn, integration_id))["type"]
        if kind not in ("api", webchat.CHANNEL):
            raise Invalid("only API and web chat integrations have a secret to rotate")
        secret = new_secret() if kind == "api" else webchat.new_secret()
        row = await integrations.rotate_secret(conn, principal.actor, _cipher(runtime.settings),
                                               integration_id, secret)
    inbound = _inbound_path(row["id"]) if kind == "api" else webchat.sessions_path(row["id"])
    return {**webchat.shown(request, row), "secret": secret, "inbound_url": inbound}


@router.delete("/{integration_id}", status_code=204, response_class=Response)
async def delete_integration(integration_id: UUID, request: Request,
                             principal: Principal = Depends(
                                 require("integrations:manage"))) -> Response:
    runtime = runtime_of(request)
    async with runtime.db.tenant_tx(principal.org_id, principal.user_id) as conn:
        found = await integrations.find(conn, str(integration_id), _cipher(runtime.settings))
        await integrations.delete(conn, principal.actor, integration_id)
        if found is not None:
            await telegram.changed(request, found, None)
    await telegram.settled(request, found, None)
    await email.settled(request, found, None)
    return Response(status_code=204)
