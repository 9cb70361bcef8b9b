"""`/healthz` (the process answers) and `/readyz` (Postgres, Redis and the
Ray actor hosts answer; 503 naming the failing part otherwise)."""
from __future__ import annotations

import asyncio
from typing import Any

import ray
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from serve.errors import envelope

router = APIRouter(tags=["health"])
CHECK_TIMEOUT = 2.0


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _postgres(request: Request) -> None:
    pool = request.app.state.runtime.db.app
    async with pool.acquire(timeout=CHECK_TIMEOUT) as conn:
        await conn.fetchval("SELECT 1")


async def _redis(request: Request) -> None:
    await request.app.state.runtime.redis.ping()


async def _ray(request: Request) -> None:
    if not ray.is_initialized():
        raise RuntimeError("not connected to a Ray cluster")
    actors = request.app.state.runtime.actors
    answers = await asyncio.gather(*(actors.ping(i) for i in range(actors.hosts)),
                                   return_exceptions=True)
    down = [str(i) for i, answer in enumerate(answers) if isinstance(answer, BaseException)]
    if down:
        raise RuntimeError(f"actor hosts not answering: {', '.join(down)}")


CHECKS = {"postgres": _postgres, "redis": _redis, "ray": _ray}


async def _run(name: str, request: Request) -> tuple[str, str | None]:
    try:
        await asyncio.wait_for(CHECKS[name](request), CHECK_TIMEOUT)
        return name, None
    except Exception as exc:  # any failure means not ready; its text names why
        return name, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@router.get("/readyz", summary="Postgres, Redis and Ray are reachable",
            responses={503: {"description": "a dependency is unreachable"}})
async def readyz(request: Request) -> Any:
    results = await asyncio.gather(*(_run(name, request) for name in CHECKS))
    checks = {name: ("ok" if err is None else err) for name, err in results}
    failing = [name for name, err in results if err is not None]
    if failing:
        message = "not ready: " + ", ".join(f"{n} unreachable ({checks[n]})" for n in failing)
        return envelope(503, "not_ready", message, {"checks": checks})
    return JSONResponse({"status": "ready", "checks": checks})
