"""`bidi` on bad input: one clear line, exit code 2, nothing wiped."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def bidi(*args: str, env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("DATABASE_URL", "REDIS_URL", "RAY_ADDRESS")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "serve.cli", *args], capture_output=True, text=True,
        env=full_env, timeout=timeout,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("bidi: error:")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in errors[0], errors[0]


def test_wrong_database_url(tmp_path: Path) -> None:
    proc = bidi("migrate", "--data-dir", str(tmp_path / "d"),
                env={"DATABASE_URL": "postgresql://nobody:pw@127.0.0.1:1/nothing"})
    assert_one_line_error(proc, "cannot connect to Postgres", "127.0.0.1:1")
    assert "pw" not in proc.stderr


def test_garbage_database_url(tmp_path: Path) -> None:
    proc = bidi("migrate", "--data-dir", str(tmp_path / "d"),
                env={"DATABASE_URL": "not a url at all"})
    assert_one_line_error(proc, "Postgres")


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = bidi("up", "--port", str(port), "--data-dir", str(tmp_path / "d"))
    assert_one_line_error(proc, f"port {port}", "in use")


def test_unwritable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = bidi("migrate", "--data-dir", str(blocker / "data"))
    assert_one_line_error(proc, "data dir", "not writable")


def test_invalid_port_setting(tmp_path: Path) -> None:
    proc = bidi("migrate", "--data-dir", str(tmp_path / "d"), env={"BIDI_PORT": "99999"})
    assert proc.returncode == 2
    assert "invalid setting port" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture
def postgres_without_pgvector() -> Iterator[str]:
    """A real Debian Postgres 15 cluster, which ships no pgvector."""
    assert (PG_BIN / "initdb").exists(), "make test installs postgresql-15"
    # pytest's tmp dirs are private to root; the postgres user needs a way in.
    root = Path(tempfile.mkdtemp(prefix="bidi-pg15-"))
    root.chmod(0o755)
    data = root / "data"
    data.mkdir()
    shutil.chown(data, "postgres", "postgres")

    def as_postgres(*cmd: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True,
                       capture_output=True, timeout=60)

    as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres")
    as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(data / "log"),
                "-o", f"-k {data} -h ''", "start")
    try:
        yield f"postgresql://postgres@/postgres?host={data}"
    finally:
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_external_postgres_without_pgvector(postgres_without_pgvector: str,
                                            tmp_path: Path) -> None:
    proc = bidi("migrate", "--data-dir", str(tmp_path / "d"),
                env={"DATABASE_URL": postgres_without_pgvector})
    assert_one_line_error(proc, "pgvector")


def test_migrate_twice_keeps_everything(tmp_path: Path) -> None:
    data_dir = tmp_path / "keep"
    first = bidi("migrate", "--data-dir", str(data_dir))
    assert first.returncode == 0, first.stderr
    assert "001_schema.sql" in first.stdout
    secrets = (data_dir / "secrets.json").read_text()
    (data_dir / "operator-notes.txt").write_text("mine")
    second = bidi("migrate", "--data-dir", str(data_dir))
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout
    assert (data_dir / "secrets.json").read_text() == secrets
    assert (data_dir / "operator-notes.txt").read_text() == "mine"
    assert (data_dir / "postgres" / "PG_VERSION").exists()
