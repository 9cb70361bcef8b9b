"""Errors of the core layer.

BidiError                 base of every error the engine raises on purpose
├── ConfigError           settings that cannot work (bad URL, unwritable data dir)
├── StartupError          a part could not start (port in use, Postgres unreachable)
├── NotFound              a resource that does not exist, or not in this tenant
├── Conflict              a duplicate or a state clash
├── Invalid               bad input, with the offending field
│   └── MalformedJSON     a body that is not JSON we can read (400)
├── Unauthorized / Forbidden
├── RateLimited           carries retry_after (seconds)
└── Unavailable           a dependency is down or busy; carries retry_after
"""
from __future__ import annotations

from typing import Any


class BidiError(Exception):
    code = "error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ConfigError(BidiError):
    code = "config_error"


class StartupError(BidiError):
    code = "startup_error"


class NotFound(BidiError):
    code = "not_found"


class Conflict(BidiError):
    code = "conflict"


class ProviderError(BidiError):
    """A channel's provider (Telegram, Meta, a mail server) refused or failed
    a call we made for the caller: 502, with the provider's reason."""

    code = "provider_error"


class Unreachable(Conflict):
    """The recipient cannot be written to (blocked the bot, left the group)."""

    code = "recipient_unreachable"


class WindowClosed(Conflict):
    """WhatsApp's customer service window is closed (more than 24 hours since
    the contact last wrote): only an approved template may be sent."""

    code = "outside_customer_service_window"


class Invalid(BidiError):
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.field = field


class MalformedJSON(Invalid):
    code = "malformed_json"


class Unauthorized(BidiError):
    code = "unauthorized"


class Forbidden(BidiError):
    code = "forbidden"


class RateLimited(BidiError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class Unavailable(BidiError):
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: float = 1.0, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after
