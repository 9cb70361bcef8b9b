"""An SMTP submission server on loopback for the tests: aiosmtpd.

aiosmtpd's `Controller` runs the server on its own event loop in a thread;
the listening socket is bound here first (port 0), so the port is free by
construction rather than guessed. AUTH PLAIN and LOGIN are offered without
TLS and checked against users added with `add_user`; MAIL before AUTH is
answered 530, as a submission server does. Every accepted message is kept
as a `Received` (the DATA bytes exactly as they arrived, dot-unstuffed) and
may also be handed to a `deliver` callback, e.g. into an IMAP server's
maildir.

Faults are scripted per recipient: `fail` answers a RCPT TO (or the DATA
of a message with that recipient) with a given reply, `stall` holds the
reply to DATA back, `drop` closes every open connection as a restarting
server would. `connections` counts the connections accepted since start
(the controller's own start-up probe excluded). State shared with the
server thread is behind one lock."""
from __future__ import annotations

import asyncio
import datetime
import ipaddress
import itertools
import logging
import secrets
import socket
import ssl
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOSTNAME = "smtp.peer.test"  # our EHLO name: no getfqdn() (a DNS lookup) per connection


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage  # parsed with email.policy.default
    login: str | None  # the user that sent it (AUTH)


@dataclass
class _Fault:
    code: int
    text: str
    times: int | None  # None: every time
    at: Literal["RCPT", "DATA"]


class _Smtp(SMTP):
    """aiosmtpd's server session, telling the controller when it ends."""

    def __init__(self, controller: _Controller, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.controller = controller

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        self.controller.open.discard(self)


class _Controller(Controller):
    """aiosmtpd's controller on a socket bound beforehand, counting and
    keeping the connections it serves (touched on the server's loop only)."""

    def __init__(self, handler: Any, sock: socket.socket, **kwargs: Any) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, **kwargs)
        self._sock = sock
        self.accepted = 0
        self.baseline = 0  # the start-up probe's connection
        self.open: set[_Smtp] = set()

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        return self.loop.create_server(self._factory_invoker, sock=self._sock,
                                       ssl=self.ssl_context)

    def factory(self) -> SMTP:
        server = _Smtp(self, self.handler, **self.SMTP_kwargs)
        self.accepted += 1
        self.open.add(server)
        return server


class _Handler:
    """aiosmtpd's hooks, answering from the peer's scripted state."""

    def __init__(self, peer: SmtpPeer) -> None:
        self.peer = peer

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                     mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        ok = self.peer._password_of(login) == password
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        fault = self.peer._take_fault([address], "RCPT")
        if fault is not None:
            return f"{fault.code} {fault.text}"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault = self.peer._take_fault(envelope.rcpt_tos, "DATA")
        if fault is not None:
            return f"{fault.code} {fault.text}"
        delay = self.peer._stall_for(envelope.rcpt_tos)
        if delay:
            # A server that took the message and is slow to say so: it is
            # still recorded, as a real one would have queued it.
            await asyncio.sleep(delay)
        raw = bytes(envelope.original_content or b"")
        message = message_from_bytes(raw, policy=policy.default)
        login = session.auth_data if isinstance(session.auth_data, str) else None
        received = Received(mail_from=envelope.mail_from or "",
                            rcpt_tos=list(envelope.rcpt_tos), raw=raw, message=message,
                            login=login)
        try:
            queue_id = self.peer._record(received)
        except Exception as exc:  # the delivery target failed: say so to the client
            return f"451 4.3.0 local delivery failed: {type(exc).__name__}"
        return f"250 2.0.0 OK queued as {queue_id}"


async def _close_all(server: _Controller) -> None:
    # Runs on the server's loop: the set is only touched there.
    open_now = list(server.open)
    for smtp in open_now:
        if smtp.transport is not None:
            smtp.transport.close()
    # The sockets are closed in connection_lost, a turn of the loop later;
    # returning only then makes `drop()` done when it returns.
    deadline = server.loop.time() + 5.0
    while any(smtp in server.open for smtp in open_now):
        if server.loop.time() > deadline:
            raise TimeoutError("the SMTP peer's connections did not close")
        await asyncio.sleep(0)


class SmtpPeer:
    host: str
    port: int

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[str, str] = {}
        self._received: list[Received] = []
        self._faults: dict[str, list[_Fault]] = {}
        self._stalls: dict[str | None, float] = {}
        self._deliver: Callable[[Received], None] | None = None
        self._numbers = itertools.count(1)
        self._controller: _Controller | None = None
        self._certificate: bytes | None = None  # PEM, when the server speaks TLS

    @classmethod
    def start(cls, tls: Literal["none", "starttls", "ssl"] = "none") -> SmtpPeer:
        """A running server. `tls="starttls"`: AUTH only after STARTTLS;
        `"ssl"`: TLS from the first byte; both with a self-signed certificate
        for 127.0.0.1 that `client_context()` trusts."""
        # aiosmtpd warns on every AUTH of a deprecation inside itself.
        logging.getLogger("mail.log").setLevel(logging.ERROR)
        peer = cls()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        handler = _Handler(peer)
        options: dict[str, Any] = {"auth_require_tls": False}
        if tls != "none":
            peer._certificate, server_context = _self_signed()
            # aiosmtpd knows only STARTTLS as TLS: on an "ssl" listener AUTH
            # must not wait for it.
            options = ({"tls_context": server_context, "require_starttls": True}
                       if tls == "starttls"
                       else {"ssl_context": server_context, "auth_require_tls": False})
        controller = _Controller(handler, sock, server_hostname=HOSTNAME,
                                 authenticator=handler.authenticate, ready_timeout=10.0,
                                 **options)
        controller.start()
        # start() returns once the probe's connection reached factory().
        controller.baseline = controller.accepted
        peer._controller = controller
        peer.host, peer.port = sock.getsockname()[:2]
        return peer

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def client_context(self) -> ssl.SSLContext:
        """A client's TLS settings that trust this server's certificate
        (and nothing else), the hostname checked."""
        if self._certificate is None:
            raise RuntimeError("this SMTP peer does not speak TLS")
        return ssl.create_default_context(cadata=self._certificate.decode())

    # --- users --------------------------------------------------------------

    def add_user(self, username: str | None = None,
                 password: str = "secret") -> tuple[str, str]:
        with self._lock:
            name = username or f"u{next(self._numbers)}-{secrets.token_hex(4)}@example.com"
            if name in self._users:
                raise ValueError(f"{name} is a user already")
            self._users[name] = password
        return name, password

    def set_password(self, username: str, password: str) -> None:
        with self._lock:
            if username not in self._users:
                raise KeyError(username)
            self._users[username] = password

    def _password_of(self, username: str) -> str | None:
        with self._lock:
            return self._users.get(username)

    # --- what arrived -------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def for_rcpt(self, address: str) -> list[Received]:
        wanted = address.lower()
        with self._lock:
            return [r for r in self._received if wanted in (a.lower() for a in r.rcpt_tos)]

    @property
    def connections(self) -> int:
        """Connections accepted since start."""
        server = self._server
        return server.accepted - server.baseline

    @property
    def open_connections(self) -> int:
        """Connections open right now (the start-up probe's is gone by the
        time a test runs)."""
        return len(self._server.open)

    def deliver_to(self, deliver: Callable[[Received], None] | None) -> None:
        with self._lock:
            self._deliver = deliver

    def _record(self, received: Received) -> str:
        with self._lock:
            self._received.append(received)
            deliver = self._deliver
            queue_id = f"Q{next(self._numbers)}"
        if deliver is not None:
            deliver(received)
        return queue_id

    # --- faults -------------------------------------------------------------

    def fail(self, rcpt: str, code: int, text: str, times: int | None = None, *,
             at: Literal["RCPT", "DATA"] = "RCPT") -> None:
        """The next `times` (None: every) RCPT TO of `rcpt` (or DATA of a
        message to it, `at="DATA"`) answers `code text`."""
        with self._lock:
            self._faults.setdefault(rcpt.lower(), []).append(_Fault(code, text, times, at))

    def stall(self, seconds: float, rcpt: str | None = None) -> None:
        """Answer DATA only after `seconds` (0: at once again), for messages
        to `rcpt` or (None) to anyone."""
        with self._lock:
            self._stalls[rcpt.lower() if rcpt else None] = seconds

    def drop(self) -> None:
        """Close every open connection, as a server restarting (or cutting
        idle clients off) does."""
        server = self._server
        asyncio.run_coroutine_threadsafe(_close_all(server), server.loop).result(10.0)

    def _take_fault(self, rcpts: list[str], at: str) -> _Fault | None:
        with self._lock:
            for rcpt in rcpts:
                for fault in self._faults.get(rcpt.lower(), []):
                    if fault.at != at:
                        continue
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults[rcpt.lower()].remove(fault)
                    return fault
        return None

    def _stall_for(self, rcpts: list[str]) -> float:
        with self._lock:
            delays = [self._stalls.get(r.lower(), 0.0) for r in rcpts]
            return max([self._stalls.get(None, 0.0), *delays])

    @property
    def _server(self) -> _Controller:
        if self._controller is None:
            raise RuntimeError("the SMTP peer is not running")
        return self._controller


def _self_signed() -> tuple[bytes, ssl.SSLContext]:
    """A certificate for 127.0.0.1 (PEM) and a server context serving it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTNAME)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName(HOSTNAME)]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as directory:  # load_cert_chain reads files only
        cert_file, key_file = Path(directory, "cert.pem"), Path(directory, "key.pem")
        cert_file.write_bytes(pem)
        key_file.write_bytes(key_pem)
        context.load_cert_chain(cert_file, key_file)
    return pem, context


@pytest.fixture(scope="session")
def smtp_peer() -> Iterator[SmtpPeer]:
    peer = SmtpPeer.start()
    yield peer
    peer.stop()
