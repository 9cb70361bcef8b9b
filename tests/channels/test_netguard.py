"""The outbound guard: which addresses are refused and why, the check of a
URL (with a resolver we control), and the guarded client, against the fake
callback server on loopback (no engine needed)."""
from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest

from channels import netguard
from channels.netguard import Policy, Refused, check_url, refusal
from tests.fakes.callback import CallbackServer

LOOPBACK = Policy.of(["127.0.0.1/32"])  # where the fake callback listens


@pytest.mark.parametrize(("address", "why"), [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("10.0.0.5", "private"), ("172.16.3.4", "private"), ("192.168.1.1", "private"),
    ("fd12:3456::1", "private"), ("fc00::1", "private"),
    ("169.254.169.254", "metadata"), ("fd00:ec2::254", "metadata"),
    ("169.254.10.1", "link-local"), ("fe80::1", "link-local"), ("fe80::1%eth0", "link-local"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("224.0.0.1", "multicast"), ("239.1.1.1", "multicast"), ("ff02::1", "multicast"),
    ("100.64.0.1", "carrier-grade"), ("100.127.255.254", "carrier-grade"),
    ("240.0.0.1", "private"), ("255.255.255.255", "private"),
    # IPv6 spellings of refused IPv4 addresses
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "metadata"),
    ("::ffff:10.0.0.5", "private"), ("::ffff:100.64.0.1", "carrier-grade"),
    ("2002:a00:5::1", "private"), ("64:ff9b::7f00:1", "loopback"),
])
def test_refused_addresses_say_why(address: str, why: str) -> None:
    reason = refusal(address)
    assert reason is not None and why in reason


@pytest.mark.parametrize("address", [
    "8.8.8.8", "93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808",
])
def test_public_addresses_pass(address: str) -> None:
    assert refusal(address) is None


def test_an_operator_allows_networks() -> None:
    policy = Policy.of(["10.0.0.0/8", "fd00::/8"])
    assert refusal("10.1.2.3", policy) is None
    assert refusal("::ffff:10.1.2.3", policy) is None
    assert refusal("fd00:ec2::254", policy) is None
    assert refusal("192.168.1.1", policy) == "a private address"
    assert refusal("127.0.0.2", LOOPBACK) == "a loopback address"


def resolving(answers: dict[str, list[str]], calls: list[str] | None = None) -> netguard.Resolver:
    async def resolve(host: str, port: int) -> Sequence[str]:
        if calls is not None:
            calls.append(host)
        if host not in answers:
            raise OSError(f"unknown host {host}")
        return answers[host]
    return resolve


@pytest.mark.parametrize(("url", "why"), [
    ("ftp://example.com/x", "only http and https"),
    ("file:///etc/passwd", "only http and https"),
    ("http:///nohost", "no host"),
    ("http://example.com:99999/", "not a valid URL"),
    ("http://10.0.0.5/x", "private"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[::1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]:8080/", "loopback"),
    ("http://2130706433/", "loopback"),  # 127.0.0.1 as one number
    ("http://localhost:9/", "loopback"),
])
async def test_urls_refused_with_the_reason(url: str, why: str) -> None:
    with pytest.raises(Refused) as caught:
        await check_url(url, Policy(), field="config.callback_url")
    assert why in caught.value.message and caught.value.field == "config.callback_url"


async def test_every_resolved_address_is_checked() -> None:
    policy = Policy()
    names = resolving({"public.test": ["93.184.216.34"],
                       "mixed.test": ["93.184.216.34", "10.0.0.5"],
                       "inside.test": ["192.168.7.7"]})
    assert await check_url("https://public.test/hook", policy, names) == ["93.184.216.34"]
    for url, why in (("https://mixed.test/", "mixed.test resolves to 10.0.0.5"),
                     ("http://inside.test/", "inside.test resolves to 192.168.7.7"),
                     ("http://unknown.test/", "does not resolve")):
        with pytest.raises(Refused, match=why):
            await check_url(url, policy, names)


async def test_send_time_refuses_a_name_that_resolves_inside(
        callback: CallbackServer) -> None:
    """A name accepted once may resolve elsewhere later: the client checks
    again when it connects, and sends nothing."""
    path = f"ok-{uuid.uuid4().hex}"
    client = netguard.client(LOOPBACK, resolving({"hooks.test": ["10.0.0.5"],
                                                  "local.test": ["127.0.0.2"]}))
    async with client:
        for host in ("hooks.test", "local.test"):
            with pytest.raises(Refused, match=f"{host} resolves to"):
                await client.post(f"http://{host}:{callback.port}/{path}", content=b"{}")
        with pytest.raises(Refused, match="only http and https"):
            await client.get("ftp://hooks.test/x")
    assert callback.for_path(path) == []


async def test_connects_to_the_checked_address_and_keeps_the_host(
        callback: CallbackServer) -> None:
    """The name is resolved once, by the guard, and the connection goes to
    that address (the system resolver does not know `hooks.test` at all),
    while the request still names the original host."""
    path = f"ok-{uuid.uuid4().hex}"
    calls: list[str] = []
    client = netguard.client(LOOPBACK, resolving({"hooks.test": ["127.0.0.1"]}, calls))
    async with client:
        resp = await client.post(f"http://hooks.test:{callback.port}/{path}", content=b"{}")
    assert resp.status_code == 200 and calls == ["hooks.test"]
    [got] = callback.for_path(path)
    assert got.headers["host"] == f"hooks.test:{callback.port}"


async def test_redirects_are_not_followed(callback: CallbackServer) -> None:
    rest = uuid.uuid4().hex
    async with netguard.client(LOOPBACK) as client:
        resp = await client.post(callback.url(f"moved-{rest}"), content=b"{}")
    assert resp.status_code == 302
    assert len(callback.for_path(f"moved-{rest}")) == 1
    assert callback.for_path(f"ok-{rest}") == []


async def test_proxies_from_the_environment_are_not_used(
        callback: CallbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy would resolve the name where the guard cannot check it."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    path = f"ok-{uuid.uuid4().hex}"
    async with netguard.client(LOOPBACK) as client:
        resp = await client.post(callback.url(path), content=b"{}")
    assert resp.status_code == 200 and len(callback.for_path(path)) == 1
