"""The routers routed first (serve.app.HOT, for Serve's per-request route
naming) take no request from another router: every documented path,
with its parameters filled in several ways, reaches the same route as with
the routers in name order."""
from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi.routing import APIWebSocketRoute
from ray.serve._private.thirdparty.get_asgi_route_name import get_asgi_route_name

import serve.app
import serve.routers
from core.settings import load_settings

FILLS = ("3f1d2c9e-7d0b-4d43-9a51-2f9a1c3b5e10", "import", "me", "x")


def _in_name_order() -> list[ModuleType]:
    modules = [importlib.import_module(f"serve.routers.{info.name}") for info in
               sorted(pkgutil.iter_modules(serve.routers.__path__), key=lambda m: m.name)]
    return [m for m in modules if hasattr(m, "router")]


def _scopes() -> list[dict[str, Any]]:
    scopes = []
    for module in _in_name_order():
        for route in module.router.routes:
            kind = "websocket" if isinstance(route, APIWebSocketRoute) else "http"
            for method in sorted(getattr(route, "methods", None) or {"GET"}):
                for fill in FILLS:
                    scopes.append({"type": kind, "method": method, "root_path": "",
                                   "path": re.sub(r"\{[^}]+\}", fill, route.path),
                                   "headers": [], "query_string": b""})
    return scopes


def test_the_hot_routers_come_first_and_change_no_route(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = load_settings(data_dir=str(tmp_path))
    hot_first = serve.app.build_app(settings)
    assert [m.__name__.rsplit(".", 1)[1] for m in serve.app.routers()[:len(serve.app.HOT)]] \
        == list(serve.app.HOT)
    monkeypatch.setattr(serve.app, "routers", _in_name_order)
    name_order = serve.app.build_app(settings)
    scopes = _scopes()
    assert len(scopes) > 200
    moved = [(s["method"], s["path"]) for s in scopes
             if get_asgi_route_name(hot_first, s) != get_asgi_route_name(name_order, s)]
    assert moved == []
