"""The web chat protocol without a server: origins, visitor ids, identity
hashes, and visitor tokens that team routes refuse (and the other way round)."""
from __future__ import annotations

import time
import uuid

import pytest

from channels import webchat
from channels.webchat import VisitorClaims
from core.errors import Invalid, Unauthorized
from core.security import decode_access_token, issue_access_token
from storage.integrations import Integration

SECRET = "a-signing-key-for-tests-only-0123456789"


@pytest.mark.parametrize("given,expected", [
    ("https://Shop.Example", "https://shop.example"),
    ("https://shop.example:443", "https://shop.example"),
    ("http://shop.example:80", "http://shop.example"),
    ("http://localhost:8080", "http://localhost:8080"),
    ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
    ("https://[::1]:8443", "https://[::1]:8443"),
    (" https://shop.example ", "https://shop.example"),
])
def test_origins_are_normalised(given: str, expected: str) -> None:
    assert webchat.normalise_origin(given) == expected


@pytest.mark.parametrize("given", [
    "shop.example", "https://shop.example/", "https://shop.example/chat",
    "https://shop.example?x=1", "https://shop.example#top", "ftp://shop.example",
    "https://user:pw@shop.example", "https://*.shop.example", "https://shop.example:99999",
    "https://", "null", "",
])
def test_anything_but_an_origin_is_refused(given: str) -> None:
    with pytest.raises(Invalid):
        webchat.normalise_origin(given)


def test_origin_lists_are_bounded_and_deduplicated() -> None:
    assert webchat.parse_origins(["https://a.example", "HTTPS://A.example:443"]) == [
        "https://a.example"]
    for bad in ([], [f"https://s{i}.example" for i in range(21)]):
        with pytest.raises(Invalid) as caught:
            webchat.parse_origins(bad)
        assert caught.value.field == "config.allowed_origins"


def test_origin_allowed_compares_normalised_origins() -> None:
    integration = Integration(id=str(uuid.uuid4()), org_id=str(uuid.uuid4()), type="webchat",
                              name="Site", config={"allowed_origins": ["https://shop.example"]})
    assert webchat.origin_allowed(integration, "https://SHOP.example:443")
    assert not webchat.origin_allowed(integration, "https://shop.example.evil.test")
    assert not webchat.origin_allowed(integration, "http://shop.example")
    assert not webchat.origin_allowed(integration, None)
    assert not webchat.origin_allowed(integration, "null")


def test_visitor_ids_are_only_those_issued_for_the_integration() -> None:
    key, integration = b"k" * 32, str(uuid.uuid4())
    issued = webchat.issue_visitor_id(key, integration)
    assert webchat.check_visitor_id(key, integration, issued) == issued
    assert issued != webchat.issue_visitor_id(key, integration)
    prefix, nonce, mac = issued.split(".")
    for forged in (f"{prefix}.{nonce}.{'0' * 32}", f"{prefix}.{'f' * 32}.{mac}", "v1..",
                   f"v2.{nonce}.{mac}", issued.upper()):
        with pytest.raises(Unauthorized):
            webchat.check_visitor_id(key, integration, forged)
    with pytest.raises(Unauthorized):
        webchat.check_visitor_id(key, str(uuid.uuid4()), issued)
    with pytest.raises(Unauthorized):
        webchat.check_visitor_id(b"x" * 32, integration, issued)


def test_identity_hash_is_hmac_sha256_hex() -> None:
    secret = webchat.new_secret()
    digest = webchat.identifier_hash(secret, "customer-42")
    assert len(digest) == 64
    assert webchat.identity_ok(secret, "customer-42", digest)
    assert webchat.identity_ok(secret, "customer-42", digest.upper())
    assert not webchat.identity_ok(secret, "customer-43", digest)
    assert not webchat.identity_ok(secret, "customer-42", None)
    assert not webchat.identity_ok(None, "customer-42", digest)


def _claims(**changes: object) -> VisitorClaims:
    fields: dict[str, object] = dict(
        org_id=str(uuid.uuid4()), integration_id=str(uuid.uuid4()), chat_id=str(uuid.uuid4()),
        thread_id="v:abc", visitor_id="v1.abc.def", identified=False,
        expires_at=int(time.time()) + 60, name="Ada")
    fields.update(changes)
    return VisitorClaims(**fields)  # type: ignore[arg-type]


def test_visitor_tokens_and_team_tokens_never_stand_for_each_other() -> None:
    claims = _claims()
    token = webchat.issue_token(SECRET, claims)
    assert webchat.decode_token(SECRET, token) == claims
    with pytest.raises(Unauthorized):
        decode_access_token(SECRET, token)  # what every team route and /v1/ws use
    team = issue_access_token(SECRET, str(uuid.uuid4()), str(uuid.uuid4()), "owner")
    with pytest.raises(Unauthorized):
        webchat.decode_token(SECRET, team)
    with pytest.raises(Unauthorized):
        webchat.decode_token("another-key-entirely-0123456789abcdef", token)
    expired = webchat.issue_token(SECRET, _claims(expires_at=int(time.time()) - 5))
    with pytest.raises(Unauthorized, match="expired"):
        webchat.decode_token(SECRET, expired)


def test_a_visitor_is_named_by_the_site_else_the_identifier_else_a_short_id() -> None:
    assert webchat.display_name(_claims(name="Ada")) == "Ada"
    assert webchat.display_name(_claims(name=None, identified=True,
                                        thread_id="i:customer-42")) == "customer-42"
    anonymous = _claims(name=None, visitor_id="v1.94518e6d6a41b644.802055da",
                        thread_id="v:v1.94518e6d6a41b644.802055da")
    assert webchat.display_name(anonymous) == "Visitor 94518e"
    assert webchat.display_name(_claims(name=None, visitor_id="odd")) == "Visitor"
