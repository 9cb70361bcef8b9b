from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from serve.ingress import DEPLOYMENT, build

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "serve_config.yaml"


def test_serve_config_is_valid_for_serve_deploy() -> None:
    raw = yaml.safe_load(CONFIG.read_text())
    schema = ServeDeploySchema.parse_obj(raw)
    app = schema.applications[0]
    assert app.import_path == "serve.ingress:build"
    assert app.route_prefix == "/"
    assert [d.name for d in app.deployments] == [DEPLOYMENT]


def test_import_path_builds_the_ingress_application() -> None:
    raw = yaml.safe_load(CONFIG.read_text())
    args = raw["applications"][0]["args"]
    application = build(args)
    deployment = application._bound_deployment
    assert deployment.name == DEPLOYMENT
    assert deployment.num_replicas == args["num_replicas"]


def test_access_log_follows_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert build({})._bound_deployment.logging_config["enable_access_log"] is False
    monkeypatch.setenv("BIDI_ACCESS_LOG", "true")
    assert build({})._bound_deployment.logging_config["enable_access_log"] is True
