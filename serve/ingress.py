"""The Serve ingress deployment. Stateless: every replica builds the same
FastAPI app; its resources open in the app's lifespan."""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve import Application, Deployment

from core.settings import Settings, load_settings, prepare_data_dir
from serve.app import build_app

DEPLOYMENT = "bidi-api"
APP_NAME = "bidi"


# A fraction of a CPU: on small machines the API, the actor hosts and Serve's
# own actors must all fit in the logical CPUs Ray counts. An open WebSocket is
# an ongoing request for its whole life, hence the high cap.
@serve.deployment(name=DEPLOYMENT, max_ongoing_requests=10_000, health_check_period_s=10,
                  ray_actor_options={"num_cpus": 0.25})
@serve.ingress()
class Ingress:
    def __init__(self, settings: Settings | None = None) -> None:
        # Under `serve deploy` no settings are passed: read this replica's env.
        self.settings = settings or prepare_data_dir(load_settings())

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_app(self.settings)


def deployment(settings: Settings, replicas: int | None = None) -> Deployment:
    """The ingress deployment configured from settings."""
    # mypy keeps a decorated class's own type: Serve's `.options` is not on it
    configured: Deployment = Ingress.options(  # type: ignore[attr-defined]
        num_replicas=replicas or settings.serve_replicas,
        # Serve builds a log record per request even with the access log off
        # (2.5% of a replica's py-spy samples at full ingest); at WARNING it is
        # not even made.
        logging_config={"enable_access_log": settings.access_log,
                        "log_level": "INFO" if settings.access_log else "WARNING"})
    return configured


def build(args: dict[str, Any] | None = None) -> Application:
    """Application builder for `serve deploy` (import_path `serve.ingress:build`)."""
    replicas = int((args or {}).get("num_replicas", 1))
    return deployment(load_settings(), replicas).bind()
