"""storage.identity called directly: sign-up, password sign-in, `me`,
switching organization, signing out."""
from __future__ import annotations

import pytest

from core.crypto import Cipher
from core.errors import Conflict, Forbidden, NotFound, Unauthorized
from core.rbac import Role
from core.security import hash_password
from storage import identity, members
from storage.db import Database
from tests.storage.accounts import events, join, new_email, new_user, sign_up

CIPHER = Cipher("storage tests")


async def test_sign_up_audits_the_new_organization(db: Database) -> None:
    email = new_email()
    async with db.system_tx() as conn:
        signed = await identity.register(conn, email=email, password_hash="", name="Ann",
                                         org_name="Ann's", ip="127.0.0.1", user_agent="t")
    assert signed.org.role == "owner"
    assert set(signed.user) == set(identity.USER_FIELDS)
    [event] = await events(db, signed.org.org_id, signed.org.org_id)
    assert event["payload"] == {"organization_id": str(signed.org.org_id),
                                "owner_id": str(signed.user["id"])}
    with pytest.raises(Conflict, match="account with this email exists"):
        async with db.system_tx() as conn:
            await identity.register(conn, email=email.upper(), password_hash="", name="B",
                                    org_name="B")


async def test_password_sign_in(db: Database) -> None:
    email = new_email()
    async with db.system_tx() as conn:
        signed = await identity.register(conn, email=email, password_hash=hash_password("pw"),
                                         name="Ann", org_name="Ann's")
    async with db.system_tx() as conn:
        again = await identity.login(conn, email=email.upper(), password="pw", code=None,
                                     cipher=CIPHER)
        assert (again.user, again.org) == (signed.user, signed.org)
        assert "password_hash" not in again.user
        for email_, password in ((email, "wrong"), (new_email(), "pw")):
            with pytest.raises(Unauthorized, match="wrong email, password or code"):
                await identity.login(conn, email=email_, password=password, code=None,
                                     cipher=CIPHER)
    lonely, lonely_email = await new_user(db)
    async with db.system_tx() as conn:
        await conn.execute("UPDATE users SET password_hash = $2 WHERE id = $1", lonely,
                           hash_password("pw"))
        with pytest.raises(Forbidden, match="no organization"):
            await identity.login(conn, email=lonely_email, password="pw", code=None,
                                 cipher=CIPHER)


async def test_me_and_switching_organization(db: Database) -> None:
    owner, elsewhere = await sign_up(db), await sign_up(db)
    member = await join(db, owner, Role.VIEWER)
    async with db.tenant_tx(elsewhere.org_id, elsewhere.user_id) as conn:
        made = await members.invite(conn, elsewhere.actor, acting_role="owner",
                                    email=member.email, role=Role.ADMIN)
    async with db.system_tx() as conn:
        await members.accept(conn, member.user_id, made.token)
        found = await identity.me(conn, member.user_id, owner.org_id)
        assert (found.org.org_id, found.org.role) == (owner.org_id, "viewer")
        assert [m.org_id for m in found.memberships] == [owner.org_id, elsewhere.org_id]
        switched = await identity.switch_org(conn, member.user_id, elsewhere.org_id)
        assert (switched.org.org_id, switched.org.role) == (elsewhere.org_id, "admin")
        rotated = await identity.rotate_refresh(conn, switched.refresh_token)
        assert not isinstance(rotated, str) and rotated[1:3] == (str(elsewhere.org_id), "admin")
        with pytest.raises(NotFound):
            await identity.switch_org(conn, owner.user_id, elsewhere.org_id)
        with pytest.raises(Unauthorized, match="no longer a member"):
            await identity.me(conn, owner.user_id, elsewhere.org_id)


async def test_signing_out_one_session_or_all(db: Database) -> None:
    owner = await sign_up(db)
    async with db.system_tx() as conn:
        tokens = [(await identity.issue_refresh(conn, owner.user_id, owner.org_id))[0]
                  for _ in range(3)]
        await identity.logout(conn, owner.user_id, owner.org_id, tokens[0])
        assert isinstance(await identity.rotate_refresh(conn, tokens[0]), str)
        assert not isinstance(await identity.rotate_refresh(conn, tokens[1]), str)
        await identity.logout(conn, owner.user_id, owner.org_id)
        assert isinstance(await identity.rotate_refresh(conn, tokens[2]), str)
