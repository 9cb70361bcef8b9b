from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import load_settings, prepare_data_dir


def test_environment_is_read_with_and_without_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://db.example/bidi")
    monkeypatch.setenv("BIDI_REDIS_URL", "redis://cache.example:6379/0")
    monkeypatch.setenv("BIDI_PORT", "9001")
    settings = load_settings()
    assert settings.database_url == "postgresql://db.example/bidi"
    assert settings.redis_url == "redis://cache.example:6379/0"
    assert settings.port == 9001
    assert not settings.embedded_postgres and not settings.embedded_redis
    assert load_settings(port=9100).port == 9100


def test_secrets_are_generated_once_and_kept(tmp_path: Path) -> None:
    settings = prepare_data_dir(load_settings(data_dir=str(tmp_path / "d")))
    assert settings.jwt_secret and settings.encryption_key and settings.app_db_password
    path = tmp_path / "d" / "secrets.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = prepare_data_dir(load_settings(data_dir=str(tmp_path / "d")))
    assert again.jwt_secret == settings.jwt_secret
    stored = json.loads(path.read_text())["encryption_key"]
    assert stored == settings.encryption_key.get_secret_value()


def test_given_secret_wins_over_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prepare_data_dir(load_settings(data_dir=str(tmp_path)))
    monkeypatch.setenv("BIDI_JWT_SECRET", "from-the-operator")
    given = prepare_data_dir(load_settings(data_dir=str(tmp_path))).jwt_secret
    assert given.get_secret_value() == "from-the-operator"


def test_unwritable_data_dir_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="not writable"):
        prepare_data_dir(load_settings(data_dir=str(tmp_path / "f" / "sub")))
