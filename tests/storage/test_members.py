"""storage.members called directly: the ownership rules, the last owner, and
what a removal or a role change takes with it."""
from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from core.errors import Conflict, Forbidden, NotFound
from core.rbac import Role
from storage import api_keys, identity, members
from storage.db import Database
from storage.revocations import RECORD
from tests.storage.accounts import audit_rows, events, join, new_user, sign_up


async def _revoked_at(redis: aioredis.Redis, org_id: object, user_id: object) -> bytes | None:
    return await redis.hget(RECORD, f"{org_id}:{user_id}")  # type: ignore[no-any-return]


async def test_the_last_owner_can_be_neither_demoted_nor_removed(
        db: Database, redis: aioredis.Redis) -> None:
    owner = await sign_up(db)
    with pytest.raises(Conflict, match="last owner cannot be demoted"):
        await members.change_role(db, redis, owner.actor, owner.user_id, Role.ADMIN,
                                  acting_role=owner.role)
    with pytest.raises(Conflict, match="last owner cannot be removed"):
        await members.remove(db, redis, owner.actor, owner.user_id, acting_role=owner.role,
                             leaving=True)
    # nothing of the refused changes was kept or announced
    assert [r["action"] for r in await audit_rows(db, owner.org_id, owner.user_id)] == []
    assert await _revoked_at(redis, owner.org_id, owner.user_id) is None

    second = await join(db, owner, Role.OWNER)
    change = await members.change_role(db, redis, owner.actor, owner.user_id, Role.ADMIN,
                                       acting_role=owner.role)
    assert (change.previous, change.member["role"]) == ("owner", "admin")
    with pytest.raises(Conflict, match="last owner cannot be removed"):
        await members.remove(db, redis, second.actor, second.user_id, acting_role="owner",
                             leaving=True)


async def test_only_an_owner_grants_or_takes_away_ownership(
        db: Database, redis: aioredis.Redis) -> None:
    owner = await sign_up(db)
    admin = await join(db, owner, Role.ADMIN)
    member = await join(db, owner, Role.BIDI)
    _, email = await new_user(db)
    async with db.tenant_tx(owner.org_id, admin.user_id) as conn:
        with pytest.raises(Forbidden, match="only an owner"):
            await members.invite(conn, admin.actor, acting_role=admin.role, email=email,
                                 role=Role.OWNER)
    with pytest.raises(Forbidden, match="only an owner"):
        await members.change_role(db, redis, admin.actor, member.user_id, Role.OWNER,
                                  acting_role=admin.role)
    with pytest.raises(Forbidden, match="only an owner"):
        await members.change_role(db, redis, admin.actor, owner.user_id, Role.VIEWER,
                                  acting_role=admin.role)
    with pytest.raises(Forbidden, match="only an owner"):
        await members.remove(db, redis, admin.actor, owner.user_id, acting_role=admin.role)
    # an API key's principal has its own role name: never an owner
    with pytest.raises(Forbidden):
        await members.change_role(db, redis, owner.actor, member.user_id, Role.OWNER,
                                  acting_role="api_key")
    change = await members.change_role(db, redis, owner.actor, member.user_id, Role.OWNER,
                                       acting_role=owner.role)
    assert change.member["role"] == "owner"


async def test_removal_revokes_keys_refresh_tokens_and_sessions(
        db: Database, redis: aioredis.Redis) -> None:
    owner = await sign_up(db)
    member = await join(db, owner, Role.ADMIN)
    async with db.tenant_tx(owner.org_id, member.user_id) as conn:
        key = await api_keys.create(conn, member.actor, name="ci", scopes=["crm:read"],
                                    allowed={"crm:read"})
        owners_key = await api_keys.create(conn, owner.actor, name="owner's",
                                           scopes=["crm:read"], allowed={"crm:read"})
    async with db.system_tx() as conn:
        refresh, _ = await identity.issue_refresh(conn, member.user_id, owner.org_id)

    removal = await members.remove(db, redis, owner.actor, member.user_id,
                                   acting_role=owner.role)

    assert removal.role == "admin"
    assert removal.api_keys_revoked == [key.key["id"]]
    async with db.system_tx() as conn:
        revoked = dict(await conn.fetch(
            "SELECT id, revoked_at IS NOT NULL FROM api_keys WHERE organization_id = $1",
            owner.org_id))
        assert revoked == {key.key["id"]: True, owners_key.key["id"]: False}
        assert await identity.rotate_refresh(conn, refresh) == \
            "refresh token reused: every session of this login is revoked"
        assert await identity.membership(conn, member.user_id, owner.org_id) is None
    assert await _revoked_at(redis, owner.org_id, member.user_id) is not None
    [joined, row] = await audit_rows(db, owner.org_id, member.user_id)
    assert (joined["action"], row["action"]) == ("member.join", "member.remove")
    assert row["user_id"] == owner.user_id
    assert row["changes"] == {"role": "admin", "api_keys_revoked": [str(key.key["id"])],
                              "chats_unassigned": 0}
    assert [e["event_type"] for e in await events(db, owner.org_id, member.user_id)] == \
        ["member.joined", "member.removed"]
    with pytest.raises(NotFound):
        await members.remove(db, redis, owner.actor, member.user_id, acting_role=owner.role)


async def test_a_member_may_leave_without_the_ownership_guard(
        db: Database, redis: aioredis.Redis) -> None:
    owner = await sign_up(db)
    co_owner = await join(db, owner, Role.OWNER)
    viewer = await join(db, owner, Role.VIEWER)
    await members.remove(db, redis, co_owner.actor, co_owner.user_id, acting_role="owner",
                         leaving=True)
    await members.remove(db, redis, viewer.actor, viewer.user_id, acting_role=viewer.role,
                         leaving=True)
    async with db.tenant_tx(owner.org_id, owner.user_id) as conn:
        total, rows = await members.page(conn, 10, 0)
    assert (total, [r["user_id"] for r in rows]) == (1, [owner.user_id])


async def test_a_role_change_is_audited_and_announced_only_when_it_changes(
        db: Database, redis: aioredis.Redis) -> None:
    owner = await sign_up(db)
    member = await join(db, owner, Role.BIDI)
    same = await members.change_role(db, redis, owner.actor, member.user_id, Role.BIDI,
                                     acting_role=owner.role)
    assert same.previous == "bidi"
    assert await _revoked_at(redis, owner.org_id, member.user_id) is None
    await members.change_role(db, redis, owner.actor, member.user_id, Role.VIEWER,
                              acting_role=owner.role)
    assert await _revoked_at(redis, owner.org_id, member.user_id) is not None
    rows = await audit_rows(db, owner.org_id, member.user_id)
    assert [(r["action"], r["changes"]) for r in rows] == [
        ("member.join", {"role": "bidi"}),
        ("member.role", {"role": ["bidi", "bidi"]}),
        ("member.role", {"role": ["bidi", "viewer"]})]
    [*_, last] = await events(db, owner.org_id, member.user_id)
    assert last == {"event_type": "member.role.changed",
                    "payload": {"user_id": str(member.user_id), "from": "bidi", "to": "viewer"}}


async def test_invitations_are_single_use_and_for_their_email(db: Database) -> None:
    owner = await sign_up(db)
    user_id, email = await new_user(db)
    async with db.tenant_tx(owner.org_id, owner.user_id) as conn:
        first = await members.invite(conn, owner.actor, acting_role=owner.role, email=email,
                                     role=Role.VIEWER)
        second = await members.invite(conn, owner.actor, acting_role=owner.role,
                                      email=email.upper(), role=Role.ADMIN)
        assert [i["id"] for i in await members.pending_invitations(conn)] == \
            [first.invitation["id"], second.invitation["id"]]
    assert [e["event_type"] for e in await events(db, owner.org_id, first.invitation["id"])] \
        == ["member.invited"]
    stranger, _ = await new_user(db)
    with pytest.raises(Forbidden, match="another email"):
        async with db.system_tx() as conn:
            await members.accept(conn, stranger, first.token)
    async with db.system_tx() as conn:
        joined = await members.accept(conn, user_id, first.token)
    assert (joined.org_id, joined.role) == (owner.org_id, "viewer")
    with pytest.raises(NotFound, match="already used"):
        async with db.system_tx() as conn:
            await members.accept(conn, user_id, first.token)
    # a second invitation sent before the first was accepted: the membership
    # constraint answers, as storage.members registered it
    with pytest.raises(Conflict, match="already a member"):
        async with db.system_tx() as conn:
            await members.accept(conn, user_id, second.token)
    async with db.tenant_tx(owner.org_id, owner.user_id) as conn:
        with pytest.raises(Conflict, match="already a member"):
            await members.invite(conn, owner.actor, acting_role=owner.role, email=email,
                                 role=Role.BIDI)
