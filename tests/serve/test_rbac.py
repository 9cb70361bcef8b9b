"""Table-driven RBAC: every protected route, every role. Ids in paths are
random and bodies are invalid, so an allowed call ends in 200/404/422 and a
denied one in 403 — authorization is decided before anything is looked up."""
from __future__ import annotations

import uuid
from collections.abc import Iterable

import httpx
import pytest

from core.rbac import ALL_PERMISSIONS, PERMISSIONS, Role
from core.settings import load_settings
from serve.app import build_app
from tests.conftest import Account
from tests.serve.test_members import join

X = "00000000-0000-4000-8000-000000000000"
BAD = {"__not_a_field__": True}

# (method, path, permission needed)
ROUTES: list[tuple[str, str, str]] = [
    ("GET", "/v1/contacts", "crm:read"),
    ("POST", "/v1/contacts", "crm:write"),
    ("GET", "/v1/contacts/{contact_id}", "crm:read"),
    ("PATCH", "/v1/contacts/{contact_id}", "crm:write"),
    ("DELETE", "/v1/contacts/{contact_id}", "crm:write"),
    ("POST", "/v1/contacts/{contact_id}/merge", "crm:write"),
    ("POST", "/v1/contacts/bulk-tag", "crm:write"),
    ("POST", "/v1/contacts/import", "crm:write"),
    ("GET", "/v1/contacts/{contact_id}/notes", "crm:read"),
    ("POST", "/v1/contacts/{contact_id}/notes", "crm:write"),
    ("GET", "/v1/api-keys", "apikeys:manage"),
    ("POST", "/v1/api-keys", "apikeys:manage"),
    ("DELETE", "/v1/api-keys/{key_id}", "apikeys:manage"),
    ("GET", "/v1/members", "org:read"),
    ("POST", "/v1/members/invitations", "members:manage"),
    ("GET", "/v1/members/invitations", "members:manage"),
    ("PATCH", "/v1/members/{user_id}", "members:manage"),
    ("DELETE", "/v1/members/{user_id}", "members:manage"),
    ("GET", "/v1/companies", "crm:read"),
    ("POST", "/v1/companies", "crm:write"),
    ("GET", "/v1/companies/{company_id}", "crm:read"),
    ("PATCH", "/v1/companies/{company_id}", "crm:write"),
    ("DELETE", "/v1/companies/{company_id}", "crm:write"),
    ("GET", "/v1/pipelines", "crm:read"),
    ("POST", "/v1/pipelines", "crm:write"),
    ("GET", "/v1/pipelines/{pipeline_id}", "crm:read"),
    ("PATCH", "/v1/pipelines/{pipeline_id}", "crm:write"),
    ("DELETE", "/v1/pipelines/{pipeline_id}", "crm:write"),
    ("GET", "/v1/pipelines/{pipeline_id}/stages", "crm:read"),
    ("POST", "/v1/pipelines/{pipeline_id}/stages", "crm:write"),
    ("PATCH", "/v1/pipelines/{pipeline_id}/stages/{stage_id}", "crm:write"),
    ("DELETE", "/v1/pipelines/{pipeline_id}/stages/{stage_id}", "crm:write"),
    ("PUT", "/v1/pipelines/{pipeline_id}/stages/order", "crm:write"),
    ("GET", "/v1/pipelines/{pipeline_id}/kanban", "crm:read"),
    ("GET", "/v1/deals", "crm:read"),
    ("POST", "/v1/deals", "crm:write"),
    ("GET", "/v1/deals/{deal_id}", "crm:read"),
    ("PATCH", "/v1/deals/{deal_id}", "crm:write"),
    ("DELETE", "/v1/deals/{deal_id}", "crm:write"),
    ("GET", "/v1/deals/{deal_id}/notes", "crm:read"),
    ("GET", "/v1/organization", "org:read"),
    ("PATCH", "/v1/organization", "org:manage"),
    ("DELETE", "/v1/organization", "org:delete"),
    ("GET", "/v1/audit-logs", "audit:read"),
    ("POST", "/v1/deals/{deal_id}/notes", "crm:write"),
    ("GET", "/v1/integrations", "org:read"),
    ("POST", "/v1/integrations", "integrations:manage"),
    ("GET", "/v1/integrations/{integration_id}", "org:read"),
    ("PATCH", "/v1/integrations/{integration_id}", "integrations:manage"),
    ("DELETE", "/v1/integrations/{integration_id}", "integrations:manage"),
    ("POST", "/v1/integrations/{integration_id}/rotate-secret", "integrations:manage"),
    ("GET", "/v1/integrations/{integration_id}/templates", "org:read"),
    ("GET", "/v1/chats", "chats:read"),
    ("GET", "/v1/chats/{chat_id}", "chats:read"),
    ("GET", "/v1/chats/{chat_id}/messages", "chats:read"),
    ("POST", "/v1/chats/{chat_id}/messages", "chats:write"),
    ("POST", "/v1/chats/{chat_id}/read", "chats:write"),
    ("PATCH", "/v1/chats/{chat_id}", "chats:write"),
    ("POST", "/v1/messages/{message_id}/approve", "chats:write"),
    ("POST", "/v1/messages/{message_id}/reject", "chats:write"),
    ("GET", "/v1/agents", "org:read"),
    ("GET", "/v1/agents/tools", "org:read"),
    ("POST", "/v1/agents", "agents:manage"),
    ("GET", "/v1/agents/{agent_id}", "org:read"),
    ("PATCH", "/v1/agents/{agent_id}", "agents:manage"),
    ("DELETE", "/v1/agents/{agent_id}", "agents:manage"),
    ("GET", "/v1/agents/{agent_id}/executions", "org:read"),
    ("POST", "/v1/agents/{agent_id}/run", "agents:manage"),
    ("GET", "/v1/agents/{agent_id}/approvals", "org:read"),
    ("POST", "/v1/agents/{agent_id}/executions/{execution_id}/approvals/{call_id}",
     "agents:manage"),
    ("GET", "/v1/attachments/{attachment_id}", "chats:read"),
    ("GET", "/v1/events", "org:read"),
]

# Open to anyone, or to any signed-in user whatever the role.
UNPROTECTED = {
    ("GET", "/healthz"), ("GET", "/readyz"),
    ("POST", "/v1/auth/register"), ("POST", "/v1/auth/login"), ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/logout"), ("POST", "/v1/auth/switch-org"), ("GET", "/v1/me"),
    ("POST", "/v1/auth/mfa/enroll"), ("POST", "/v1/auth/mfa/verify"),
    ("POST", "/v1/auth/mfa/disable"), ("POST", "/v1/invitations/accept"),
    ("GET", "/v1/auth/oauth/google/start"), ("POST", "/v1/auth/oauth/google/callback"),
    ("POST", "/v1/auth/telegram"), ("POST", "/v1/auth/mfa/challenge"),
    # Channel webhooks authenticate the sender by signature, not by a user.
    ("POST", "/v1/channels/api/{integration_id}/messages"),
    ("POST", "/v1/channels/telegram/{integration_id}/webhook"),
    # Meta's verification of a callback URL proves itself by the verify token.
    ("GET", "/v1/channels/whatsapp/{integration_id}/webhook"),
    ("POST", "/v1/channels/whatsapp/{integration_id}/webhook"),
    ("GET", "/v1/channels/whatsapp/webhook"), ("POST", "/v1/channels/whatsapp/webhook"),
    # The website widget's visitors: an allowed Origin, then a visitor token of
    # one chat (tests/serve/test_webchat.py), never a team member's role.
    ("POST", "/v1/webchat/{integration_id}/sessions"),
    ("GET", "/v1/webchat/messages"), ("POST", "/v1/webchat/messages"),
}


def test_the_table_covers_every_route() -> None:
    app = build_app(load_settings())
    served = {(method, path) for path, item in app.openapi()["paths"].items()
              for method in (m.upper() for m in item)}
    table = {(m, p) for m, p, _ in ROUTES}
    assert served - UNPROTECTED == table, {
        "missing from the table": sorted(served - UNPROTECTED - table),
        "not served": sorted(table - served)}


@pytest.fixture
async def crew(api: httpx.AsyncClient, owner: Account) -> dict[Role, Account]:
    crew = {Role.OWNER: owner}
    for role in (Role.ADMIN, Role.BIDI, Role.VIEWER):
        crew[role] = await join(api, owner, role.value)
    return crew


async def test_every_route_for_every_role(api: httpx.AsyncClient,
                                          crew: dict[Role, Account]) -> None:
    failures = []
    for role, account in crew.items():
        for method, template, permission in ROUTES:
            path = template
            for name in ("contact_id", "key_id", "company_id", "pipeline_id", "stage_id",
                         "deal_id", "integration_id", "chat_id", "agent_id", "message_id",
                         "execution_id", "call_id"):
                path = path.replace("{" + name + "}", X)
            path = path.replace("{user_id}", str(uuid.uuid4()))
            body = BAD if method in ("POST", "PATCH", "PUT") else None
            resp = await api.request(method, path, json=body, headers=account.headers)
            allowed = permission in PERMISSIONS[role]
            if allowed and resp.status_code in (401, 403):
                failures.append(f"{role} {method} {template}: {resp.status_code} (allowed)")
            if not allowed and (resp.status_code != 403
                                or resp.json()["error"]["code"] != "forbidden"):
                failures.append(f"{role} {method} {template}: {resp.status_code} (denied)")
    assert not failures, failures


# Routes about a person (their profile, sessions, second factor, orgs,
# invitations): a signed-in user only, never an API key.
SESSION_ONLY = [
    ("POST", "/v1/auth/logout"), ("POST", "/v1/auth/switch-org"), ("GET", "/v1/me"),
    ("POST", "/v1/auth/mfa/enroll"), ("POST", "/v1/auth/mfa/verify"),
    ("POST", "/v1/auth/mfa/disable"), ("POST", "/v1/invitations/accept"),
]
KEY_SCOPES = [
    frozenset({"crm:read"}), frozenset({"chats:write"}), frozenset({"org:read", "audit:read"}),
    frozenset({"members:manage"}), frozenset(ALL_PERMISSIONS),
]


def test_session_only_routes_are_served() -> None:
    app = build_app(load_settings())
    served = {(method, path) for path, item in app.openapi()["paths"].items()
              for method in (m.upper() for m in item)}
    assert set(SESSION_ONLY) <= served & UNPROTECTED


async def make_key(api: httpx.AsyncClient, account: Account, scopes: Iterable[str]) -> str:
    resp = await api.post("/v1/api-keys", json={"name": "k", "scopes": sorted(scopes)},
                          headers=account.headers)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


def _fill(template: str) -> str:
    path = template
    for name in ("contact_id", "key_id", "company_id", "pipeline_id", "stage_id",
                 "deal_id", "integration_id", "chat_id", "agent_id", "message_id",
                 "execution_id", "call_id"):
        path = path.replace("{" + name + "}", X)
    return path.replace("{user_id}", str(uuid.uuid4()))


async def test_a_key_never_does_more_than_its_scopes(api: httpx.AsyncClient,
                                                     owner: Account) -> None:
    """Every route, keys of several scopes made by an owner: a route is open to a
    key only when the key holds its permission; routes about a person never."""
    failures = []
    for scopes in KEY_SCOPES:
        headers = {"X-API-Key": await make_key(api, owner, scopes)}
        for method, template, permission in ROUTES:
            body = BAD if method in ("POST", "PATCH", "PUT") else None
            resp = await api.request(method, _fill(template), json=body, headers=headers)
            allowed = permission in scopes
            if allowed and resp.status_code in (401, 403):
                failures.append(f"{sorted(scopes)} {method} {template}: {resp.status_code}")
            if not allowed and resp.status_code != 403:
                failures.append(f"{sorted(scopes)} {method} {template}: {resp.status_code}"
                                " (denied)")
        for method, path in SESSION_ONLY:
            body = {"organization_id": owner.org_id, "code": "123456", "token": "x"} \
                if method == "POST" else None
            resp = await api.request(method, path, json=body, headers=headers)
            if resp.status_code != 403 or resp.json()["error"]["code"] != "forbidden":
                failures.append(f"{sorted(scopes)} {method} {path}: {resp.status_code}"
                                " (session only)")
    assert not failures, failures


async def test_a_key_cannot_mint_tokens_or_remove_its_creator(api: httpx.AsyncClient,
                                                              owner: Account) -> None:
    key = {"X-API-Key": await make_key(api, owner, {"crm:read"})}
    switched = await api.post("/v1/auth/switch-org", json={"organization_id": owner.org_id},
                              headers=key)
    assert switched.status_code == 403 and "access_token" not in switched.text
    removed = await api.delete(f"/v1/members/{owner.user_id}", headers=key)
    assert removed.status_code == 403
    me = await api.get("/v1/me", headers=owner.headers)
    assert me.status_code == 200 and me.json()["organization"]["role"] == "owner"
    # A key with every scope still cannot remove the owner who made it, nor make
    # a key beyond its own scopes.
    full = {"X-API-Key": await make_key(api, owner, ALL_PERMISSIONS)}
    assert (await api.delete(f"/v1/members/{owner.user_id}", headers=full)).status_code == 403
    narrow = {"X-API-Key": await make_key(api, owner, {"apikeys:manage"})}
    beyond = await api.post("/v1/api-keys", json={"name": "x", "scopes": ["crm:write"]},
                            headers=narrow)
    assert beyond.status_code == 403


async def test_keys_follow_their_creators_membership(api: httpx.AsyncClient,
                                                     owner: Account) -> None:
    admin = await join(api, owner, "admin")
    key = {"X-API-Key": await make_key(api, admin, {"crm:read", "members:manage"})}
    assert (await api.get("/v1/members/invitations", headers=key)).status_code == 200
    # Demoted: the key keeps only what the new role allows.
    demoted = await api.patch(f"/v1/members/{admin.user_id}", json={"role": "bidi"},
                              headers=owner.headers)
    assert demoted.status_code == 200, demoted.text
    assert (await api.get("/v1/members/invitations", headers=key)).status_code == 403
    assert (await api.get("/v1/contacts", headers=key)).status_code == 200
    # Removed: the key is revoked with the membership.
    assert (await api.delete(f"/v1/members/{admin.user_id}",
                             headers=owner.headers)).status_code == 204
    refused = await api.get("/v1/contacts", headers=key)
    assert refused.status_code == 401, refused.text
    listed = (await api.get("/v1/api-keys", headers=owner.headers)).json()["data"]
    assert [k["revoked_at"] is not None for k in listed] == [True]
