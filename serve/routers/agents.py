"""AI agents: CRUD over `ai_agents`, their runs (`agent_executions`) and a
manual run on a chat.

An agent's type (bizdev, sdr, followup, analytics, admin) gives it a
built-in prompt template and tool set when none is given; a template's
variables are checked on save (an unknown one is a 422), its tools against
the registry, its guardrails field by field (agents.guardrails). A change
tells the agent's actor to read its configuration again, so the next run
uses it."""
from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from actors.refs import AgentRef, ChatRef
from agents import guardrails, prompts, toolbox
from agents.memory import LongTermMemory
from agents.tools import ToolContext
from core.errors import Conflict, Invalid
from serve.auth import Principal, require, runtime_of
from serve.models import Strict
from serve.pagination import Page, PageParams, page_params
from serve.replica import kept
from storage import agents, chats
from storage.audit import Actor

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


class ToolOut(BaseModel):
    name: str
    description: str
    mutates: bool = Field(description="It changes the CRM or sends (else it only reads)")


@router.get("/tools", response_model=list[ToolOut])
async def list_tools(principal: Principal = Depends(require("org:read"))) -> Any:
    """The tools an agent's `tools` may name (the registry's; before
    `/{agent_id}`, which would take "tools" for an id)."""
    return [{"name": t.name, "description": t.description, "mutates": t.mutates}
            for t in toolbox.registry().tools.values()]


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


class HeldCall(BaseModel):
    execution_id: UUID
    chat_id: UUID | None
    created_at: datetime | None
    tool: str
    arguments: dict[str, Any]
    reason: str = Field(description="Why a person must approve it")
    call_id: str


class HeldCalls(BaseModel):
    data: list[HeldCall]


class DecisionIn(Strict):
    approve: bool


class DecisionOut(BaseModel):
    call_id: str
    decision: str
    outcome: dict[str, Any] | None = Field(
        default=None, description="What the tool did, when approved (status, result or error)")


@router.get("/{agent_id}/approvals", response_model=HeldCalls)
async def held_calls(agent_id: UUID, request: Request,
                     principal: Principal = Depends(require("org:read"))) -> Any:
    """Tool calls the agent's runs held for a person (a send to someone but
    the chat's contact, a change to another contact, a bulk change)."""
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        return {"data": await agents.pending_calls(conn, agent_id)}


@router.post("/{agent_id}/executions/{execution_id}/approvals/{call_id}",
             response_model=DecisionOut)
async def decide_call(agent_id: UUID, execution_id: UUID, call_id: str, body: DecisionIn,
                      request: Request,
                      principal: Principal = Depends(require("agents:manage"))) -> Any:
    """Approve (it runs now, as the agent, in the org) or reject a held tool
    call; a call decided already is a 409, so it never runs twice."""
    runtime = runtime_of(request)
    decision = {"decision": "approved" if body.approve else "rejected",
                "by": principal.user_id, "at": datetime.now(UTC).isoformat()}
    async with runtime.db.tenant_tx(principal.org_id, principal.user_id) as conn:
        claimed = await agents.claim_pending(conn, agent_id, execution_id, call_id[:200],
                                             decision)
        if claimed is None:
            await agents.get(conn, agent_id)  # 404 for another org's agent
            raise Conflict("no such held call, or it was decided already")
        contact = None
        if claimed["chat_id"] is not None:
            contact = (await chats.get(conn, claimed["chat_id"]))["contact_id"]
    if not body.approve:
        return {"call_id": call_id, "decision": "rejected"}
    held = claimed["held"]
    outcome = await approved_call(runtime, request.app.state, principal, str(agent_id),
                                  str(claimed["chat_id"]) if claimed["chat_id"] else None,
                                  str(contact) if contact else None, held)
    async with runtime.db.tenant_tx(principal.org_id, principal.user_id) as conn:
        await agents.settle_pending(conn, execution_id, call_id[:200], outcome)
    return {"call_id": call_id, "decision": "approved", "outcome": outcome}


async def approved_call(runtime: Any, state: Any, principal: Principal, agent_id: str,
                        chat_id: str | None, contact_id: str | None,
                        held: dict[str, Any]) -> dict[str, Any]:
    """Run a held call a person approved, as the agent, in the org (its
    memory tools with the org's embedder, as its runs have)."""
    from actors.agent_run import embedder_of  # the model SDKs load only where runs happen

    host = SimpleNamespace(settings=runtime.settings, db=runtime.db,
                           loader=lambda name, make: kept(state, name, make))
    embedder = await embedder_of(host, principal.org_id)
    chat = ChatRef(runtime.actors, principal.org_id, chat_id) if chat_id else None

    async def send(text: str) -> dict[str, Any]:
        if chat is None:
            raise Invalid("this run had no chat to send in")
        sent = await chat.send(text, None, f"approved:{held['call_id']}", agent_id=agent_id)
        return {"id": sent["id"], "status": sent["status"]}

    ctx = ToolContext(db=runtime.db, org_id=principal.org_id, agent_id=agent_id,
                      chat_id=chat_id, contact_id=contact_id,
                      actor=Actor(principal.org_id, principal.user_id, agent_id=agent_id),
                      memory=LongTermMemory(runtime.db, embedder), send=send)
    done = await toolbox.registry().run_approved(ctx, str(held["tool"]),
                                                 dict(held.get("arguments") or {}))
    return {"status": done.status, "result": done.result, "error": done.error}
