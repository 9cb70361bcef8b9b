"""Table-driven RBAC: every protected route, every role. Ids in paths are
random and bodies are invalid, so an allowed call ends in 200/404/422 and a
denied one in 403 — authorization is decided before anything is looked up."""
from __future__ import annotations

import uuid

import httpx
import pytest

from core.rbac import PERMISSIONS, Role
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
    ("GET", "/v1/chats", "chats:read"),
    ("GET", "/v1/chats/{chat_id}", "chats:read"),
    ("GET", "/v1/chats/{chat_id}/messages", "chats:read"),
    ("POST", "/v1/chats/{chat_id}/messages", "chats:write"),
    ("POST", "/v1/chats/{chat_id}/read", "chats:write"),
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
                         "deal_id", "integration_id", "chat_id"):
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
