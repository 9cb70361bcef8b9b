"""Where Bidi may POST: the guard against server-side request forgery.

A URL a tenant gives us (an API channel's `callback_url`, later webhooks)
must not let them reach what only the engine can reach: loopback, link-local,
private (RFC 1918, ULA fc00::/7), shared (CGNAT 100.64/10), unspecified,
multicast and reserved addresses, and the cloud metadata endpoints — also
when written as an IPv4-mapped, 6to4 or NAT64 IPv6 address, and also when a
public-looking name resolves to one. An operator may allow networks
(`outbound_allow_networks`); only http and https are spoken.

The URL is checked twice: when it is saved (`check_url`, so the tenant hears
why at once) and when we connect (`client()`). The client's transport
resolves the name itself, checks every address, and connects to a checked
address, while TLS still verifies (and SNI names) the original host: a name
that changes its answer between the two lookups (DNS rebinding) gains
nothing. Redirects are never followed and proxies from the environment are
not used (a proxy would resolve the name where we cannot check it).
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from core.errors import Invalid

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

SCHEMES = ("http", "https")
METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean...
    "fd00:ec2::254",    # AWS over IPv6
    "100.100.100.200",  # Alibaba Cloud
))
SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
TIMEOUT = 10.0
RESOLVE_TIMEOUT = 5.0


class Refused(Invalid):
    """A destination we will not send to; `field` names where it came from."""


@dataclass(frozen=True)
class Policy:
    """What the guard lets through beyond the public internet."""

    allow: tuple[Network, ...] = ()

    @classmethod
    def of(cls, networks: Iterable[str]) -> Policy:
        return cls(tuple(ipaddress.ip_network(n.strip(), strict=False) for n in networks))

    @classmethod
    def from_settings(cls, settings: Any) -> Policy:
        return cls.of(getattr(settings, "outbound_allow_networks", ()) or ())

    def allows(self, ip: Address) -> bool:
        return any(ip.version == net.version and ip in net for net in self.allow)


def _embedded_v4(ip: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def refusal(address: str | Address, policy: Policy = Policy()) -> str | None:
    """Why we will not connect to `address`, or None when we may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    inner = _embedded_v4(ip)
    if policy.allows(ip) or (inner is not None and policy.allows(inner)):
        return None
    if inner is not None:
        reason = refusal(inner, policy)
        mapped = isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None
        if reason is not None or mapped or ip in NAT64:
            return reason
    if ip in METADATA:
        return "a cloud metadata address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in SHARED:
        return "a shared (carrier-grade NAT) address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "not a globally routable address"
    return None


async def system_resolver(host: str, port: int) -> Sequence[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def checked_addresses(host: str, port: int, policy: Policy,
                            resolver: Resolver = system_resolver,
                            field: str | None = None) -> list[str]:
    """Every address `host` resolves to, once each, after checking them all
    (one bad address refuses the name: we cannot tell which one we would get)."""
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            addresses = list(await resolver(host, port))
    except TimeoutError:
        raise Refused(f"{host} did not resolve within {RESOLVE_TIMEOUT:.0f} s",
                      field=field) from None
    except (OSError, UnicodeError) as exc:
        raise Refused(f"{host} does not resolve: {exc}", field=field) from None
    if not addresses:
        raise Refused(f"{host} does not resolve", field=field)
    for address in addresses:
        reason = refusal(address, policy)
        if reason is not None:
            named = address if address == host.strip("[]") else f"{host} resolves to {address}"
            raise Refused(f"{named}, {reason}: not allowed as a destination", field=field)
    return addresses


def target(url: str, field: str | None = None) -> tuple[str, int]:
    """The host and port of an http(s) URL (raises `Refused` with the reason)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused(f"not a valid URL: {exc}", field=field) from None
    if parts.scheme.lower() not in SCHEMES:
        raise Refused(f"only http and https URLs are allowed, not {parts.scheme or 'none'!r}",
                      field=field)
    if not parts.hostname:
        raise Refused("the URL has no host", field=field)
    try:
        httpx.URL(url)  # what will send it must read it the same way
    except httpx.InvalidURL as exc:
        raise Refused(f"not a valid URL: {exc}", field=field) from None
    default = 443 if parts.scheme.lower() == "https" else 80
    return parts.hostname, port or default


async def check_url(url: str, policy: Policy, resolver: Resolver = system_resolver,
                    field: str | None = None) -> list[str]:
    """Refuse `url` unless it is http(s) and its host resolves only to
    addresses we may reach; return those addresses."""
    host, port = target(url, field)
    return await checked_addresses(host, port, policy, resolver, field)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves and checks at connect time, then connects to a checked address."""

    def __init__(self, policy: Policy, resolver: Resolver) -> None:
        self.policy = policy
        self.resolver = resolver
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        addresses = await checked_addresses(host, port, self.policy, self.resolver)
        error: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise Refused("unix sockets are not a destination")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, on a connection pool whose network backend is
    the guard (httpx takes no backend argument, so its pool is replaced)."""

    def __init__(self, policy: Policy, resolver: Resolver = system_resolver,
                 limits: httpx.Limits = httpx.Limits(max_connections=100)) -> None:
        super().__init__(trust_env=False, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(policy, resolver))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme not in SCHEMES:
            raise Refused(f"only http and https URLs are allowed, not {request.url.scheme!r}")
        return await super().handle_async_request(request)


def client(policy: Policy, resolver: Resolver = system_resolver,
           timeout: float = TIMEOUT) -> httpx.AsyncClient:
    """The HTTP client every outbound sender uses: guarded, no redirects, no
    proxies from the environment."""
    return httpx.AsyncClient(transport=GuardedTransport(policy, resolver), timeout=timeout,
                             follow_redirects=False, trust_env=False)
