"""`/healthz` (the process answers) and `/readyz` (Postgres, Redis and the
Ray actor hosts answer, the event relay runs and keeps up; 503 naming the
failing part otherwise)."""
from __future__ import annotations

import asyncio
from typing import Any

import ray
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from actors.relay import RELAY_NAME
from actors.runtime.client import NAMESPACE
from serve.errors import envelope

router = APIRouter(tags=["health"])
CHECK_TIMEOUT = 2.0


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _postgres(request: Request) -> Any:
    await request.app.state.runtime.db.ping(timeout=CHECK_TIMEOUT)


async def _redis(request: Request) -> Any:
    await request.app.state.runtime.redis.ping()


async def _ray(request: Request) -> Any:
    if not ray.is_initialized():
        raise RuntimeError("not connected to a Ray cluster")
    actors = request.app.state.runtime.actors
    answers = await asyncio.gather(*(actors.ping(i) for i in range(actors.hosts)),
                                   return_exceptions=True)
    down = [str(i) for i, answer in enumerate(answers) if isinstance(answer, BaseException)]
    if down:
        raise RuntimeError(f"actor hosts not answering: {', '.join(down)}")


class RelayNotReady(RuntimeError):
    def __init__(self, problem: str, status: dict[str, Any]) -> None:
        super().__init__(problem)
        self.status = status


async def _relay(request: Request) -> Any:
    """The event relay's state; not ready when it is not running, or when
    events wait and its cursor has not moved for a while."""
    if not ray.is_initialized():
        raise RuntimeError("not connected to a Ray cluster")
    try:
        handle = ray.get_actor(RELAY_NAME, namespace=NAMESPACE)
    except ValueError:
        raise RuntimeError(f"no {RELAY_NAME} actor") from None
    status: dict[str, Any] = await handle.status.remote()
    if status.get("problem"):
        raise RelayNotReady(status["problem"], status)
    return status


CHECKS = {"postgres": _postgres, "redis": _redis, "ray": _ray, "relay": _relay}
DETAILED = ("relay",)  # checks whose state the answer shows as well


async def _run(name: str, request: Request) -> tuple[str, str | None, Any]:
    try:
        return name, None, await asyncio.wait_for(CHECKS[name](request), CHECK_TIMEOUT)
    except Exception as exc:  # any failure means not ready; its text names why
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return name, text, getattr(exc, "status", None)


@router.get("/readyz", summary="Postgres, Redis and Ray are reachable",
            responses={503: {"description": "a dependency is unreachable"}})
async def readyz(request: Request) -> Any:
    results = await asyncio.gather(*(_run(name, request) for name in CHECKS))
    checks = {name: ("ok" if err is None else err) for name, err, _ in results}
    states = {name: state for name, _, state in results if name in DETAILED and state}
    failing = [name for name, err, _ in results if err is not None]
    if failing:
        message = "not ready: " + ", ".join(
            f"{n} {'not ready' if n in DETAILED else 'unreachable'} ({checks[n]})"
            for n in failing)
        return envelope(503, "not_ready", message, {"checks": checks, **states})
    return JSONResponse({"status": "ready", "checks": checks, **states})
