"""The outbound settings: allowed networks and the retry schedule, read
from the environment as comma-separated lists and refused when wrong."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.settings import RETRY_SCHEDULE, load_settings


def test_defaults_allow_nothing_and_follow_standard_webhooks() -> None:
    settings = load_settings()
    assert settings.outbound_allow_networks == ()
    assert settings.outbound_retry_schedule == RETRY_SCHEDULE


def test_comma_separated_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIDI_OUTBOUND_ALLOW_NETWORKS", "10.0.0.0/8, fd00::/8,127.0.0.1")
    monkeypatch.setenv("BIDI_OUTBOUND_RETRY_SCHEDULE", "0, 1.5,60")
    settings = load_settings()
    assert settings.outbound_allow_networks == ("10.0.0.0/8", "fd00::/8", "127.0.0.1")
    assert settings.outbound_retry_schedule == (0.0, 1.5, 60.0)


@pytest.mark.parametrize(("name", "value", "says"), [
    ("outbound_allow_networks", "10.0.0.0/8,intranet", "does not appear to be"),
    ("outbound_allow_networks", "300.1.1.1/32", "does not appear to be"),
    ("outbound_retry_schedule", "0,soon", "seconds, comma-separated"),
    ("outbound_retry_schedule", "0,-5", "none negative"),
    ("outbound_retry_schedule", "", "one or more delays"),
])
def test_wrong_values_are_refused(name: str, value: str, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        load_settings(**{name: value})
