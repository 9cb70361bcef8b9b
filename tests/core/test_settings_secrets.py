"""Secrets stay out of repr, str and logs; URLs print without passwords; the
data dir is private."""
from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from core.settings import load_settings, masked_url, prepare_data_dir

SECRETS = {
    "jwt_secret": "jwt-s3cret-value", "encryption_key": "enc-s3cret-value",
    "app_db_password": "app-s3cret-value", "openai_api_key": "sk-openai-s3cret",
    "anthropic_api_key": "sk-ant-s3cret", "stripe_api_key": "sk_live_s3cret",
    "stripe_webhook_secret": "whsec_s3cret", "google_client_secret": "google-s3cret",
    "telegram_login_bot_token": "123:telegram-s3cret",
}


def test_repr_str_and_logs_show_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(**SECRETS, database_url="postgresql://bidi:db-pa55@db:5432/bidi",
                             redis_url="redis://:redis-pa55@cache:6379/0")
    with caplog.at_level(logging.INFO):
        logging.getLogger("bidi.test").info("settings: %s / %r", settings, settings)
    for text in (repr(settings), str(settings), caplog.text):
        for value in [*SECRETS.values(), "db-pa55", "redis-pa55"]:
            assert value not in text
    assert "db:5432" in repr(settings)  # the URL itself is still shown
    for name, value in SECRETS.items():
        assert getattr(settings, name).get_secret_value() == value
    assert settings.database_url == "postgresql://bidi:db-pa55@db:5432/bidi"


def test_masked_url() -> None:
    assert masked_url("postgresql://u:pw@h:5/db") == "postgresql://u:***@h:5/db"
    assert masked_url("redis://:pw@h/0") == "redis://:***@h/0"
    assert masked_url("postgresql://h/db?password=pw&sslmode=require") == (
        "postgresql://h/db?password=***&sslmode=require")
    assert masked_url("unix:///run/redis.sock") == "unix:///run/redis.sock"
    assert masked_url(None) is None


def test_generated_secrets_are_secret(tmp_path: Path) -> None:
    settings = prepare_data_dir(load_settings(data_dir=str(tmp_path / "d")))
    for name in ("jwt_secret", "encryption_key", "app_db_password"):
        value = getattr(settings, name).get_secret_value()
        assert len(value) > 20 and value not in repr(settings)
    given = prepare_data_dir(load_settings(data_dir=str(tmp_path / "d"), jwt_secret="mine"))
    assert given.jwt_secret.get_secret_value() == "mine"
    assert given.encryption_key == settings.encryption_key


def test_data_dir_is_created_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "a" / "d"
    prepare_data_dir(load_settings(data_dir=str(data_dir)))
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700


def test_open_data_dir_is_tightened(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    with caplog.at_level(logging.WARNING):
        prepare_data_dir(load_settings(data_dir=str(data_dir)))
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert "open to other users" in caplog.text
