"""The conventional service the engine's inbound webhook is compared with: what
a team would write without the engine. FastAPI on uvicorn (uvloop, httptools),
one request = verify the Standard Webhooks signature, parse with pydantic, one
asyncpg transaction with one INSERT, one Redis PUBLISH, answer 202. No
batching, no actors, no tenancy (RLS) and no audit trail.

Same URL shape, request, verification and body limits as the engine's API
channel (`POST /v1/channels/api/{integration_id}/messages`), so the load
generator's requests (bench/phases.py:inbound()) work unchanged.

Run as a script (`python bench/baseline.py --port P --database-url ...
--redis-url ... --secret whsec_...`) or from a benchmark through
`run_baseline(...)`, which starts it as a subprocess and stops it.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

ROOT = Path(__file__).resolve().parent.parent
# bench/ holds email.py and telegram.py, which would shadow the standard
# library's `email` and the Bot API client's `telegram`: off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import redis.asyncio as redis  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator  # noqa: E402

from channels import signing  # noqa: E402

CHANNEL = "baseline:messages"
SCHEMA = "bench_baseline"
MAX_BODY = 256 * 1024
MAX_TEXT = 65_536
# In the command line of the service and of each uvicorn worker, for bench/cpu.py
# to count their CPU: a warning filter for a module that does not exist (the
# one interpreter option multiprocessing hands on to the workers it spawns).
MARKER = "bidi_baseline"
WARNING_FILTER = f"ignore::UserWarning:{MARKER}"
ENV = {"database_url": "BASELINE_DATABASE_URL", "redis_url": "BASELINE_REDIS_URL",
       "secret": "BASELINE_SECRET", "integration": "BASELINE_INTEGRATION",
       "pool_size": "BASELINE_POOL_SIZE"}

DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.messages (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    external_id text NOT NULL UNIQUE,
    thread_id text NOT NULL,
    sender_id text NOT NULL,
    sender_name text,
    text text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
"""
INSERT = (f"INSERT INTO {SCHEMA}.messages (external_id, thread_id, sender_id, sender_name, text)"
          " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (external_id) DO NOTHING RETURNING id")
EXISTING = f"SELECT id FROM {SCHEMA}.messages WHERE external_id = $1"

Short = Annotated[str, Field(max_length=255)]


def _no_nul(value: str | None) -> str | None:
    # Postgres text cannot hold NUL: refuse it here rather than answer 500.
    if value is not None and "\x00" in value:
        raise ValueError("contains a NUL character")
    return value


class Sender(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=255)
    name: Short | None = None
    email: Short | None = None
    phone: str | None = Field(default=None, max_length=50)

    _clean = field_validator("id", "name", "email", "phone")(_no_nul)


class Inbound(BaseModel):
    """The engine's API-channel body (serve/routers/channels_api.py:InboundDoc),
    with its limits; unknown fields are refused as the engine's parser does."""

    model_config = ConfigDict(extra="forbid")

    external_message_id: str = Field(min_length=1, max_length=255)
    thread_id: str = Field(min_length=1, max_length=255)
    sender: Sender
    text: str = Field(min_length=1, max_length=MAX_TEXT)

    _clean = field_validator("external_message_id", "thread_id", "text")(_no_nul)


def error(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": details}},
                        status_code=status)


async def ensure_schema(database_url: str) -> None:
    """Create the baseline's schema and table if missing (owner DSN)."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(DDL)
    finally:
        await conn.close()


def create_app(database_url: str | None = None, redis_url: str | None = None,
               secret: str | None = None, *, integration: str | None = None,
               pool_size: int | None = None) -> FastAPI:
    """The service; arguments left out come from the BASELINE_* variables that
    `main()` sets, so that uvicorn's worker processes build the same app.
    `integration` None accepts any integration id in the URL."""
    database_url = database_url or os.environ[ENV["database_url"]]
    redis_url = redis_url or os.environ[ENV["redis_url"]]
    secrets_ = [secret or os.environ[ENV["secret"]]]
    integration = integration or os.environ.get(ENV["integration"]) or None
    size = pool_size or int(os.environ.get(ENV["pool_size"], "20"))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(database_url, min_size=size, max_size=size)
        app.state.redis = redis.Redis.from_url(redis_url)
        try:
            yield
        finally:
            await app.state.redis.aclose()
            await app.state.pool.close()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, "invalid", "invalid request", json.loads(json.dumps(
            exc.errors(), default=str)))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/channels/api/{integration_id}/messages", status_code=202)
    async def receive(integration_id: UUID, request: Request) -> JSONResponse:
        if integration is not None and str(integration_id) != integration:
            return error(404, "not_found", "no such integration")
        body = await request.body()
        if len(body) > MAX_BODY:
            return error(422, "invalid", f"the body is larger than {MAX_BODY} bytes")
        try:
            signing.verify(secrets_, request.headers, body)
        except signing.SignatureError as exc:
            return error(401, "unauthorized", f"invalid signature: {exc}")
        try:
            doc = Inbound.model_validate_json(body)
        except ValidationError as exc:
            problems = exc.errors(include_url=False, include_context=False)
            if any(p["type"] == "json_invalid" for p in problems):
                return error(400, "malformed_json", "the body is not valid JSON")
            return error(422, "invalid", "invalid message", json.loads(json.dumps(
                problems, default=str)))
        pool: asyncpg.Pool = request.app.state.pool
        async with pool.acquire() as conn, conn.transaction():
            row_id = await conn.fetchval(INSERT, doc.external_message_id, doc.thread_id,
                                         doc.sender.id, doc.sender.name, doc.text)
            duplicate = row_id is None
            if duplicate:
                row_id = await conn.fetchval(EXISTING, doc.external_message_id)
        if not duplicate:
            frame = json.dumps({"id": str(row_id), "thread_id": doc.thread_id, "text": doc.text})
            await request.app.state.redis.publish(CHANNEL, frame)
        return JSONResponse({"id": str(row_id), "duplicate": duplicate}, status_code=202)

    return app


def serve(port: int, *, host: str = "127.0.0.1", workers: int = 1) -> None:
    """uvicorn in this process (and `workers` children when more than one);
    the app's configuration is in the BASELINE_* variables."""
    import uvicorn

    uvicorn.run("bench.baseline:create_app", factory=True, host=host, port=port,
                workers=workers, loop="uvloop", http="httptools", access_log=False,
                log_level="warning", lifespan="on")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    # Each option may come from its BASELINE_* variable instead (run_baseline
    # passes them so: a DSN or secret on the command line shows in `ps`).
    for name, help_ in (("database-url", "an owner DSN"), ("redis-url", "redis:// or unix://"),
                        ("secret", "whsec_..."),
                        ("integration", "the only integration id accepted (default: any)")):
        var = ENV[name.replace("-", "_")]
        parser.add_argument(f"--{name}", default=os.environ.get(var) or None,
                            help=f"{help_} (or ${var})")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--pool-size", type=int, default=int(os.environ.get(
        ENV["pool_size"], "20")), help="connections per worker")
    args = parser.parse_args()
    for name in ("database_url", "redis_url", "secret"):
        if not getattr(args, name):
            parser.error(f"--{name.replace('_', '-')} or ${ENV[name]} is required")
    signing.sign(args.secret, "probe", 0, b"")  # a malformed secret fails here, not per request
    os.environ.update({ENV["database_url"]: args.database_url, ENV["redis_url"]: args.redis_url,
                       ENV["secret"]: args.secret, ENV["pool_size"]: str(args.pool_size),
                       ENV["integration"]: args.integration or ""})
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    # Once, before any worker starts: concurrent CREATE TABLE IF NOT EXISTS can collide.
    asyncio.run(ensure_schema(args.database_url))
    serve(args.port, host=args.host, workers=args.workers)


def _tail(log: Any, limit: int = 4000) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-limit:]


def _healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def run_baseline(database_url: str, redis_url: str, secret: str, *, port: int,
                 workers: int = 1, nice: int | None = None, host: str = "127.0.0.1",
                 integration: str | None = None, pool_size: int = 20,
                 timeout: float = 30.0) -> Iterator[str]:
    """The service as a subprocess (this venv's python) at `nice` when given;
    yields its base URL once `/healthz` answers; stops and reaps it on exit."""
    cmd = [sys.executable, "-W", WARNING_FILTER, str(Path(__file__).resolve()),
           "--port", str(port), "--host", host, "--workers", str(workers)]
    # Not on the command line: `ps` would show the secrets, and bench/cpu.py
    # would count a command line naming postgres as Postgres.
    env = {**os.environ, ENV["database_url"]: database_url, ENV["redis_url"]: redis_url,
           ENV["secret"]: secret, ENV["integration"]: integration or "",
           ENV["pool_size"]: str(pool_size)}

    def lower_priority() -> None:
        if nice:
            os.nice(nice)

    url = f"http://{host}:{port}"
    with tempfile.TemporaryFile() as log:
        # A session of its own: uvicorn's workers go with it on SIGKILL.
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                preexec_fn=lower_priority, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while not _healthy(url):
                if proc.poll() is not None:
                    raise RuntimeError(f"the baseline service exited ({proc.returncode}):\n"
                                       f"{_tail(log)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the baseline service did not answer {url}/healthz"
                                       f" within {timeout:.0f} s:\n{_tail(log)}")
                time.sleep(0.1)
            yield url
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ProcessLookupError):  # workers left behind by a dead master
        os.killpg(proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
