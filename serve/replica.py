"""What a replica makes once and keeps on its app state: the channels'
connectors and caches, the WebSocket hub, the status committer. Each is made
on first use, not at start-up (a replica that never serves a channel makes
none of its parts), and closed with the app (serve.app's lifespan)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def kept(state: Any, name: str, make: Callable[[], T]) -> T:
    """The replica's one `name`, made by `make` the first time it is asked for."""
    found = getattr(state, name, None)
    if found is None:
        found = make()
        setattr(state, name, found)
    return found
