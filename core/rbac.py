"""Roles and permissions: the one table every route checks against.

viewer reads; bidi also works contacts, companies, deals and chats; admin
also manages members, integrations, agents, webhooks and API keys; owner also
billing and deleting the organization.
"""
from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    BIDI = "bidi"
    VIEWER = "viewer"


READ = frozenset({"crm:read", "chats:read", "org:read"})
WORK = READ | {"crm:write", "chats:write"}
MANAGE = WORK | {"members:manage", "integrations:manage", "agents:manage",
                 "webhooks:manage", "apikeys:manage", "audit:read", "org:manage"}
OWN = MANAGE | {"billing:manage", "org:delete"}

PERMISSIONS: dict[Role, frozenset[str]] = {
    Role.VIEWER: READ,
    Role.BIDI: WORK,
    Role.ADMIN: MANAGE,
    Role.OWNER: OWN,
}
ALL_PERMISSIONS = OWN


def permissions_of(role: str) -> frozenset[str]:
    try:
        return PERMISSIONS[Role(role)]
    except ValueError:
        return frozenset()
