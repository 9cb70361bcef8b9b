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


# What reading an event needs: it carries the data of its family (a contact's
# fields, a message's text, a member's email), so it is shown only to callers
# who may read that data. An unknown family needs the whole audit trail.
EVENT_PERMISSIONS: dict[str, str] = {
    "message": "chats:read", "chat": "chats:read",
    "contact": "crm:read", "company": "crm:read", "deal": "crm:read",
    "pipeline": "crm:read", "note": "crm:read", "campaign": "crm:read",
    "organization": "org:read", "member": "org:read", "user": "org:read",
    "api_key": "apikeys:manage", "integration": "integrations:manage",
    "agent": "agents:manage", "webhook": "webhooks:manage",
    "subscription": "billing:manage", "invoice": "billing:manage",
    "billing": "billing:manage",
}
EVENT_DEFAULT = "audit:read"


def event_permission(event_type: str) -> str:
    return EVENT_PERMISSIONS.get(event_type.partition(".")[0], EVENT_DEFAULT)


def event_families(permissions: frozenset[str]) -> list[str] | None:
    """The event families `permissions` may read, or None for every family."""
    if EVENT_DEFAULT in permissions and set(EVENT_PERMISSIONS.values()) <= permissions:
        return None
    return sorted(f for f, p in EVENT_PERMISSIONS.items() if p in permissions)
