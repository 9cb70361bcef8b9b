"""Messages every actor kind answers."""
from __future__ import annotations

import msgspec


class GetState(msgspec.Struct, frozen=True):
    """Answer the actor's hot state as a plain dict."""


class Ping(msgspec.Struct, frozen=True):
    """Touch the actor (counts, keeps it resident); answers the touch count."""

    n: int = 0
