"""Members: invite, accept, roles, the last-owner rule."""
from __future__ import annotations

import httpx

from tests.conftest import Account, register
from tests.serve.test_auth import envelope


async def join(api: httpx.AsyncClient, owner: Account, role: str) -> Account:
    """A new person invited into `owner`'s org with `role`; tokens for that org."""
    person = await register(api, f"{role}'s own org")
    invite = await api.post("/v1/members/invitations", json={"email": person.email,
                                                             "role": role},
                            headers=owner.headers)
    assert invite.status_code == 201, invite.text
    accepted = await api.post("/v1/invitations/accept", json={"token": invite.json()["token"]},
                              headers=person.headers)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {"organization_id": owner.org_id, "role": role}
    switched = await api.post("/v1/auth/switch-org", json={"organization_id": owner.org_id},
                              headers=person.headers)
    assert switched.status_code == 200, switched.text
    body = switched.json()
    return Account(person.email, person.password, person.user_id, owner.org_id,
                   body["access_token"], body["refresh_token"])


async def test_invite_accept_and_list(api: httpx.AsyncClient, owner: Account) -> None:
    admin = await join(api, owner, "admin")
    members = await api.get("/v1/members", headers=admin.headers)
    assert members.status_code == 200
    roles = {m["user_id"]: m["role"] for m in members.json()["data"]}
    assert roles == {owner.user_id: "owner", admin.user_id: "admin"}
    me = await api.get("/v1/me", headers=admin.headers)
    assert me.json()["organization"]["role"] == "admin"
    assert len(me.json()["memberships"]) == 2


async def test_invitation_is_single_use_and_bound_to_its_email(api: httpx.AsyncClient,
                                                               owner: Account) -> None:
    invitee = await register(api, "Invitee")
    stranger = await register(api, "Stranger")
    invite = await api.post("/v1/members/invitations", json={"email": invitee.email,
                                                             "role": "viewer"},
                            headers=owner.headers)
    token = invite.json()["token"]
    envelope(await api.post("/v1/invitations/accept", json={"token": token},
                            headers=stranger.headers), 403)
    ok = await api.post("/v1/invitations/accept", json={"token": token},
                        headers=invitee.headers)
    assert ok.status_code == 200
    envelope(await api.post("/v1/invitations/accept", json={"token": token},
                            headers=invitee.headers), 404)
    envelope(await api.post("/v1/members/invitations", json={"email": invitee.email},
                            headers=owner.headers), 409)


async def test_roles_and_the_last_owner(api: httpx.AsyncClient, owner: Account) -> None:
    admin = await join(api, owner, "admin")
    worker = await join(api, owner, "bidi")
    # an admin manages members but cannot touch ownership
    envelope(await api.patch(f"/v1/members/{owner.user_id}", json={"role": "viewer"},
                             headers=admin.headers), 403)
    envelope(await api.patch(f"/v1/members/{worker.user_id}", json={"role": "owner"},
                             headers=admin.headers), 403)
    promoted = await api.patch(f"/v1/members/{worker.user_id}", json={"role": "viewer"},
                               headers=admin.headers)
    assert promoted.status_code == 200 and promoted.json()["role"] == "viewer"
    # the last owner can neither be demoted nor removed, even by themselves
    envelope(await api.patch(f"/v1/members/{owner.user_id}", json={"role": "admin"},
                             headers=owner.headers), 409)
    envelope(await api.delete(f"/v1/members/{owner.user_id}", headers=owner.headers), 409)
    # with a second owner, the first may step down
    ok = await api.patch(f"/v1/members/{admin.user_id}", json={"role": "owner"},
                         headers=owner.headers)
    assert ok.status_code == 200
    # tokens name the role: the promoted member's old one is revoked, a refresh
    # gives one of the new role
    envelope(await api.get("/v1/members", headers=admin.headers), 401)
    fresh = await api.post("/v1/auth/refresh", json={"refresh_token": admin.refresh})
    assert fresh.status_code == 200, fresh.text
    admin = Account(admin.email, admin.password, admin.user_id, admin.org_id,
                    fresh.json()["access_token"], fresh.json()["refresh_token"])
    assert (await api.patch(f"/v1/members/{owner.user_id}", json={"role": "admin"},
                            headers=owner.headers)).status_code == 200
    removed = await api.delete(f"/v1/members/{worker.user_id}", headers=admin.headers)
    assert removed.status_code == 204
    envelope(await api.post("/v1/auth/refresh", json={"refresh_token": worker.refresh}), 401)
    envelope(await api.patch("/v1/members/not-a-uuid", json={"role": "admin"},
                             headers=admin.headers), 422)
    envelope(await api.patch(f"/v1/members/{admin.user_id}", json={"role": "god"},
                             headers=admin.headers), 422)


async def test_viewer_cannot_invite_and_other_orgs_members_are_404(
        api: httpx.AsyncClient, owner: Account) -> None:
    viewer = await join(api, owner, "viewer")
    envelope(await api.post("/v1/members/invitations", json={"email": "x@example.com"},
                            headers=viewer.headers), 403)
    other = await register(api, "Elsewhere")
    envelope(await api.patch(f"/v1/members/{owner.user_id}", json={"role": "viewer"},
                             headers=other.headers), 404)
    envelope(await api.delete(f"/v1/members/{owner.user_id}", headers=other.headers), 404)
