from __future__ import annotations

import httpx
from ray import serve

from serve.ingress import Ingress
from serve.stack import Stack


def test_healthz_over_http_through_serve(stack: Stack) -> None:
    resp = httpx.get(f"{stack.api_url}/healthz", timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


def test_readyz_reports_every_dependency(stack: Stack) -> None:
    resp = httpx.get(f"{stack.api_url}/readyz", timeout=10)
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"postgres": "ok", "redis": "ok", "ray": "ok", "relay": "ok"}


def test_readyz_is_503_naming_the_failing_part(stack: Stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    broken = stack.settings.model_copy(update={"redis_url": f"unix://{tmp_path}/no.sock"})
    serve.run(Ingress.options(name="broken-api").bind(broken), name="broken",
              route_prefix="/broken")
    try:
        resp = httpx.get(f"{stack.api_url}/broken/readyz", timeout=15)
        assert resp.status_code == 503
        body = resp.json()
        assert body["error"]["code"] == "not_ready"
        assert "redis unreachable" in body["error"]["message"]
        assert body["error"]["details"]["checks"]["postgres"] == "ok"
        assert body["error"]["details"]["checks"]["redis"] != "ok"
    finally:
        serve.delete("broken")


def test_unknown_route_gets_the_error_envelope(stack: Stack) -> None:
    resp = httpx.get(f"{stack.api_url}/v1/nothing-here", timeout=10)
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"


def test_openapi_and_docs_are_served(stack: Stack) -> None:
    spec = httpx.get(f"{stack.api_url}/openapi.json", timeout=10).json()
    assert "/healthz" in spec["paths"] and "/readyz" in spec["paths"]
    assert httpx.get(f"{stack.api_url}/docs", timeout=10).status_code == 200
