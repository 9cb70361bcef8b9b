"""A real Dovecot IMAP server on loopback, one per test session.

Debian's `dovecot-imapd` binaries run with a configuration written into a
directory of ours: nothing under /etc is read, users live in passwd-files
we write, mail in maildirs owned by `mail` (Dovecot refuses uid 0 for
mail), and TLS (993-style and STARTTLS) uses a self-signed certificate made
at start. The master daemonizes and writes `run/master.pid`; `stop` kills
that pid and waits for it, so no stale pid file blocks the next start.

Tests reach the server the ways mail reaches a real one: `append` is an
IMAP APPEND by the user (stdlib imaplib, returning the UIDPLUS APPENDUID),
`deliver` writes a file into the maildir as a local delivery agent does
after SMTP, which Dovecot must notice by itself (inotify, with a 1 s check
interval as the fallback). `change_uidvalidity` and `kick` are the server
events a client must survive: a rebuilt folder and a dropped connection."""
from __future__ import annotations

import contextlib
import imaplib
import ipaddress
import itertools
import mailbox
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.waiting import until

MAIL_UID = MAIL_GID = 8  # Debian's `mail`; Dovecot will not run mail as root
START_TIMEOUT = 20.0

CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
info_log_path = {dir}/dovecot.log
ssl = yes
ssl_cert = <{dir}/cert.pem
ssl_key = <{dir}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
# users come and go during a session: never answer from a cache
auth_cache_size = 0
# a refused login answers at once (the default waits 2 s)
auth_failure_delay = 0
mail_location = maildir:{dir}/mail/%u
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = {uid}
mail_max_userip_connections = 100
# inotify wakes IDLE at once; this bounds it where inotify cannot see a change
mailbox_idle_check_interval = 1 secs
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/users/%u
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={dir}/mail/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Drafts {{
    auto = subscribe
    special_use = \\Drafts
  }}
  mailbox Sent {{
    auto = subscribe
    special_use = \\Sent
  }}
  mailbox Trash {{
    auto = subscribe
    special_use = \\Trash
  }}
  mailbox Junk {{
    special_use = \\Junk
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {ssl_port}
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


@dataclass(frozen=True)
class MailUser:
    address: str
    password: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Dovecot:
    host = "127.0.0.1"

    def __init__(self, directory: Path, port: int, ssl_port: int) -> None:
        self.directory = directory
        self.port = port  # plain IMAP, with STARTTLS
        self.ssl_port = ssl_port  # IMAP over TLS
        self.ca_file = directory / "cert.pem"  # the server's self-signed certificate
        self.config = directory / "dovecot.conf"
        self._users: dict[str, str] = {}
        self._stamps: dict[str, int] = {}
        self._serial = itertools.count(1)

    @classmethod
    def start(cls, directory: Path) -> Dovecot:
        """Dovecot with its own config in `directory`, accepting connections."""
        server = cls(directory, free_port(), free_port())
        # imap runs as `mail` and must reach its maildir through every parent
        directory.chmod(0o755)
        (directory / "mail").mkdir(exist_ok=True)
        os.chown(directory / "mail", MAIL_UID, MAIL_GID)
        _self_signed(directory / "cert.pem", directory / "key.pem")
        server.config.write_text(CONFIG.format(
            dir=directory, port=server.port, ssl_port=server.ssl_port,
            uid=MAIL_UID, gid=MAIL_GID))
        (directory / "users").mkdir(exist_ok=True)
        # the daemon keeps inherited pipes open: give it files, not pipes
        with open(directory / "start.log", "wb") as out:
            subprocess.run(["dovecot", "-c", str(server.config)], check=True,
                           stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                           timeout=START_TIMEOUT)
        # Auth delays every login from an IP that failed one recently, up to
        # 15 s, and no setting turns that off; without this socket (looked up
        # when auth starts, at the first login) it quietly keeps no penalty.
        (directory / "run" / "anvil-auth-penalty").unlink()
        server._wait_accepting()
        return server

    def _wait_accepting(self) -> None:
        def greets() -> bool:
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    return sock.recv(100).startswith(b"* OK")
            except OSError:
                return False
        until(greets, timeout=START_TIMEOUT,
              what=f"Dovecot accepting connections (see {self.log_path})")

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's certificate (for 127.0.0.1)."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    @property
    def log_path(self) -> Path:
        return self.directory / "dovecot.log"

    @property
    def _pid_file(self) -> Path:
        return self.directory / "run" / "master.pid"

    def stop(self) -> None:
        """Ends the master (it takes its children along) and waits until it is gone."""
        try:
            pid = int(self._pid_file.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        try:
            until(lambda: not _alive(pid), timeout=START_TIMEOUT, what="Dovecot stopping")
        except AssertionError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            until(lambda: not _alive(pid), timeout=START_TIMEOUT, what="Dovecot killed")
        self._pid_file.unlink(missing_ok=True)

    # users

    def add_user(self, address: str | None = None, password: str = "secret") -> MailUser:
        """A new mailbox that can log in at once."""
        if address is None:
            address = f"u{next(self._serial)}-{secrets.token_hex(4)}@example.com"
        if address in self._users:
            raise ValueError(f"{address} exists")
        self._users[address] = password
        self._write_user(address)
        return MailUser(address, password)

    def set_password(self, address: str, password: str) -> None:
        """Returns once the server accepts the new password (its passwd-file
        check runs at most once a second)."""
        if address not in self._users:
            raise KeyError(address)
        self._users[address] = password
        self._write_user(address)
        def accepted() -> bool:
            try:
                self._login(MailUser(address, password)).logout()
                return True
            except imaplib.IMAP4.error:
                return False
        until(accepted, timeout=START_TIMEOUT, poll=0.1, what="the new password accepted")

    def _write_user(self, address: str) -> None:
        # One passwd-file per user, written atomically: Dovecot looks at a
        # passwd-file's mtime at most once a second, so a user added to a
        # shared file just after another login would stay unknown for up
        # to a second, while a file never opened before is read at once.
        # It reloads on a new mtime or size: a same-length password written
        # within the same second gets a later mtime so it is not missed.
        path = self.directory / "users" / address
        tmp = path.with_name(f".{address}.tmp")
        tmp.write_text(f"{address}:{{PLAIN}}{self._users[address]}\n")
        tmp.chmod(0o644)
        stamp = max(int(time.time()), self._stamps.get(address, 0) + 1)
        os.utime(tmp, (stamp, stamp))
        self._stamps[address] = stamp
        os.replace(tmp, path)

    # mail in and out

    def _login(self, user: MailUser) -> imaplib.IMAP4:
        client = imaplib.IMAP4(self.host, self.port, timeout=30)
        client.login(user.address, user.password)
        return client

    def append(self, user: MailUser, raw: bytes, folder: str = "INBOX", flags: str = "") -> int:
        """APPENDs `raw` as `user`; the new message's UID."""
        client = self._login(user)
        try:
            status, data = client.append(_quote(folder), f"({flags})" if flags else None,
                                         None, raw)
            if status != "OK":
                raise RuntimeError(f"APPEND failed: {data!r}")
            found = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
            if found is None:
                raise RuntimeError(f"no APPENDUID in {data!r}")
            return int(found.group(1))
        finally:
            client.logout()

    def maildir(self, user: MailUser) -> Path:
        return self.directory / "mail" / user.address

    def deliver(self, user: MailUser, raw: bytes) -> None:
        """Drops `raw` into the user's INBOX as a local delivery agent would."""
        root = self.maildir(user)
        box = mailbox.Maildir(root, factory=None, create=True)
        key = box.add(raw)
        for path in [root, *(root / sub for sub in ("tmp", "new", "cur"))]:
            os.chown(path, MAIL_UID, MAIL_GID)
        # Dovecot may already have moved the file from new/ to cur/
        for path in itertools.chain((root / "new").glob(key + "*"), (root / "cur").glob(key + "*")):
            os.chown(path, MAIL_UID, MAIL_GID)

    def change_uidvalidity(self, user: MailUser, folder: str = "INBOX") -> int:
        """Gives `folder` a new UIDVALIDITY, as a server does after rebuilding
        its index: the messages stay and are numbered afresh. The new value."""
        with self._session(user) as client:
            before = _status(client, folder, "UIDVALIDITY")
            count = _status(client, folder, "MESSAGES")
        after = before % 0xFFFFFFFF + 1  # any other nonzero 32-bit value
        subprocess.run(["doveadm", "-c", str(self.config), "mailbox", "update", "-u",
                        user.address, "--uid-validity", str(after), folder],
                       check=True, capture_output=True, timeout=START_TIMEOUT)
        # the index is reset and the maildir rescanned on the next access
        def rebuilt() -> bool:
            with self._session(user) as client:
                seen = _status(client, folder, "UIDVALIDITY"), _status(client, folder, "MESSAGES")
            return seen == (after, count)
        until(rebuilt, timeout=START_TIMEOUT, what=f"{folder} showing UIDVALIDITY {after}")
        return after

    def create_folder(self, user: MailUser, folder: str) -> None:
        """A new folder (named in UTF-8: doveadm does the IMAP encoding)."""
        subprocess.run(["doveadm", "-c", str(self.config), "mailbox", "create", "-u",
                        user.address, folder], check=True, capture_output=True,
                       timeout=START_TIMEOUT)

    def kick(self, user: MailUser) -> None:
        """Drops every connection of `user`, as a server restart would."""
        subprocess.run(["doveadm", "-c", str(self.config), "kick", user.address],
                       check=True, capture_output=True, timeout=START_TIMEOUT)

    # read-back for assertions

    def _session(self, user: MailUser) -> _Session:
        return _Session(self._login(user))

    def uids(self, user: MailUser, folder: str = "INBOX") -> list[int]:
        with self._session(user) as client:
            client.select(_quote(folder), readonly=True)
            _, data = client.uid("SEARCH", "ALL")
        return [int(uid) for uid in (data[0] or b"").split()]

    def flags(self, user: MailUser, uid: int, folder: str = "INBOX") -> set[str]:
        with self._session(user) as client:
            client.select(_quote(folder), readonly=True)
            _, data = client.uid("FETCH", str(uid), "(FLAGS)")
        found = re.search(rb"FLAGS \(([^)]*)\)", data[0] if isinstance(data[0], bytes) else b"")
        if found is None:
            raise KeyError(uid)
        return set(found.group(1).decode().split())


class _Session:
    def __init__(self, client: imaplib.IMAP4) -> None:
        self.client = client

    def __enter__(self) -> imaplib.IMAP4:
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.logout()


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _status(client: imaplib.IMAP4, folder: str, item: str) -> int:
    _, data = client.status(_quote(folder), f"({item})")
    found = re.search(rf"{item} (\d+)".encode(), data[0] or b"")
    if found is None:
        raise RuntimeError(f"no {item} in {data!r}")
    return int(found.group(1))


def _self_signed(cert_path: Path, key_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)


def _alive(pid: int) -> bool:
    # The daemon is init's child, not ours: once it has exited it may stay a
    # zombie until init reaps it, holding nothing; that counts as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    # Not under pytest's numbered temp dirs: those are 0700 (imap runs as
    # `mail` and must get through), and another pytest run on the machine
    # deletes all but the newest three while this server still uses one.
    directory = Path(tempfile.mkdtemp(prefix="bidi-dovecot-"))
    server = Dovecot.start(directory)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
