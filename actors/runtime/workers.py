"""Named, detached, restartable Ray actors that run one worker each for the
whole cluster (the event relay, the outbox sweeper): started or found by
name, waited for, and stopped with a graceful shutdown before the kill."""
from __future__ import annotations

import contextlib
from typing import Any

import ray

from actors.runtime.client import NAMESPACE
from core.errors import StartupError
from core.settings import Settings

WORKER_CPUS = 0.05  # a sliver: lets SPREAD place workers and leaves room on 2 cores


def start_worker(remote: Any, name: str, settings: Settings, what: str,
                 timeout: float = 60.0) -> bool:
    """Start the worker `name` from `remote`, or find it running; return once it
    answers `ping` whether this call created it (then it is the caller's to
    stop). StartupError naming `what` when it does not answer in time."""
    try:
        ray.get_actor(name, namespace=NAMESPACE)
        created = False
    except ValueError:
        created = True
    handle = remote.options(
        name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        max_restarts=-1, max_task_retries=0, num_cpus=WORKER_CPUS).remote(settings)
    try:
        ray.get(handle.ping.remote(), timeout=timeout)
    except (ray.exceptions.RayError, TimeoutError) as exc:
        if created:  # ours, and useless: nothing may be left behind
            with contextlib.suppress(ray.exceptions.RayError, ValueError):
                ray.kill(handle, no_restart=True)
        raise StartupError(f"{what} did not start: {exc}") from exc
    return created


def stop_worker(name: str, timeout: float = 30.0) -> None:
    """Shut the worker down (it flushes what it holds), then kill it for good."""
    try:
        handle = ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return
    with contextlib.suppress(ray.exceptions.RayError, TimeoutError):
        ray.get(handle.shutdown.remote(), timeout=timeout)
    ray.kill(handle, no_restart=True)
