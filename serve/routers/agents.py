"""AI agents: CRUD over `ai_agents`, their runs (`agent_executions`) and a
manual run on a chat.

An agent's type (bizdev, sdr, followup, analytics, admin) gives it a
built-in prompt template and tool set when none is given; a template's
variables are checked on save (an unknown one is a 422), its tools against
the registry, its guardrails field by field (agents.guardrails). A change
tells the agent's actor to read its configuration again, so the next run
uses it."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from actors.refs import AgentRef, ChatRef
from agents import guardrails, prompts, toolbox
from core.errors import Invalid
from serve.auth import Principal, require, runtime_of
from serve.models import Strict
from serve.pagination import Page, PageParams, page_params
from storage import agents

router = APIRouter(prefix="/v1/agents", tags=["agents"])

AgentType = Literal["bizdev", "sdr", "followup", "analytics", "admin"]
ProviderName = Literal["openai", "anthropic", "offline"]


class AgentIn(Strict):
    name: str = Field(min_length=1, max_length=255)
    type: AgentType
    description: str | None = Field(default=None, max_length=2000)
    prompt_template: str | None = Field(
        default=None, min_length=1, max_length=20_000,
        description="Variables: {contact}, {company}, {deal}, {org}, {recent_messages},"
                    " {memories}; default: the type's built-in template")
    model: str | None = Field(default=None, min_length=1, max_length=100)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=32_000)
    tools: list[str] | None = Field(default=None, max_length=32,
                                    description="Allowed tools; default: the type's")
    guardrails: dict[str, Any] | None = None
    provider: ProviderName | None = Field(
        default=None, description="Default: the org's OpenAI or Anthropic integration, else"
                                  " the engine's key, else the offline provider")
    is_active: bool | None = None


class AgentPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=2000)
    prompt_template: str | None = Field(default=None, min_length=1, max_length=20_000)
    model: str | None = Field(default=None, min_length=1, max_length=100)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=32_000)
    tools: list[str] | None = Field(default=None, max_length=32)
    guardrails: dict[str, Any] | None = None
    provider: ProviderName | None = None
    is_active: bool | None = None


class AgentOut(BaseModel):
    id: UUID
    name: str
    type: str
    description: str | None
    prompt_template: str
    model: str | None
    temperature: float | None
    max_tokens: int | None
    tools: list[str]
    guardrails: dict[str, Any]
    provider: str | None
    is_active: bool | None
    created_at: datetime | None
    updated_at: datetime | None


class ExecutionOut(BaseModel):
    id: UUID
    agent_id: UUID | None
    chat_id: UUID | None
    trigger_event: str | None
    input_data: Any
    output_data: Any
    status: str | None
    error_message: str | None
    tokens_used: int | None
    execution_time_ms: int | None
    provider: str | None
    created_at: datetime | None


class RunIn(Strict):
    chat_id: UUID


class RunOut(BaseModel):
    chat_id: UUID
    agent_id: UUID
    status: str = Field(description="started, or queued behind the chat's run going on; the"
                                    " outcome is the run's execution")


def _checked(fields: dict[str, Any], kind: str | None) -> dict[str, Any]:
    """`fields` with the type's defaults filled in and everything checked."""
    if kind is not None:
        defaults = prompts.agent_type(kind)
        if fields.get("prompt_template") is None:
            fields["prompt_template"] = defaults.template
        if fields.get("tools") is None:
            fields["tools"] = list(defaults.tools)
    if fields.get("prompt_template") is not None:
        prompts.validate(fields["prompt_template"])
    if fields.get("tools") is not None:
        known = set(toolbox.registry().tools)
        unknown = sorted(set(fields["tools"]) - known)
        if unknown:
            raise Invalid(f"unknown tools: {', '.join(unknown)}"
                          f" (known: {', '.join(sorted(known))})", field="tools")
        fields["tools"] = list(dict.fromkeys(fields["tools"]))
    if fields.get("guardrails") is not None:
        guardrails.parse(fields["guardrails"])  # Invalid names the field
    return fields


@router.post("", status_code=201, response_model=AgentOut)
async def create_agent(body: AgentIn, request: Request,
                       principal: Principal = Depends(require("agents:manage"))) -> Any:
    fields = _checked({k: v for k, v in body.model_dump().items() if v is not None},
                      body.type)
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        return await agents.create(conn, principal.actor, fields)


@router.get("", response_model=Page[AgentOut])
async def list_agents(request: Request, page: PageParams = Depends(page_params),
                      principal: Principal = Depends(require("org:read"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        total, rows = await agents.page(conn, page.limit, page.offset)
    return {"page": page.page, "limit": page.limit, "total": total, "data": rows}


@router.get("/{agent_id}", response_model=AgentOut)
async def get_agent(agent_id: UUID, request: Request,
                    principal: Principal = Depends(require("org:read"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        return await agents.get(conn, agent_id)


@router.patch("/{agent_id}", response_model=AgentOut)
async def update_agent(agent_id: UUID, body: AgentPatch, request: Request,
                       principal: Principal = Depends(require("agents:manage"))) -> Any:
    changes = _checked({k: getattr(body, k) for k in body.model_fields_set}, None)
    runtime = runtime_of(request)
    async with runtime.db.tenant_tx(principal.org_id, principal.user_id) as conn:
        row = await agents.update(conn, principal.actor, agent_id, changes)
    await AgentRef(runtime.actors, principal.org_id, str(agent_id)).config(fresh=True)
    return row


@router.delete("/{agent_id}", status_code=204, response_class=Response)
async def delete_agent(agent_id: UUID, request: Request,
                       principal: Principal = Depends(require("agents:manage"))) -> Response:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        await agents.delete(conn, principal.actor, agent_id)
    return Response(status_code=204)


@router.get("/{agent_id}/executions", response_model=Page[ExecutionOut])
async def list_executions(agent_id: UUID, request: Request,
                          page: PageParams = Depends(page_params),
                          principal: Principal = Depends(require("org:read"))) -> Any:
    """The agent's runs, newest first: input, output (reply, tool calls and
    their outcomes), status (success, error, blocked), tokens, time, provider."""
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        total, rows = await agents.executions(conn, agent_id, page.limit, page.offset)
    return {"page": page.page, "limit": page.limit, "total": total, "data": rows}


@router.post("/{agent_id}/run", status_code=202, response_model=RunOut)
async def run_agent(agent_id: UUID, body: RunIn, request: Request,
                    principal: Principal = Depends(require("agents:manage"))) -> Any:
    """Run the agent on a chat now (its reply is a draft or sent, by its
    guardrails; see `GET /v1/agents/{id}/executions`)."""
    runtime = runtime_of(request)
    async with runtime.db.tenant_tx(principal.org_id, principal.user_id) as conn:
        await agents.get(conn, agent_id)  # 404 for another org's agent
    return await ChatRef(runtime.actors, principal.org_id, str(body.chat_id)).run_agent(
        "manual", str(agent_id))
