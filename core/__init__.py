"""The core layer: what every other layer uses and that imports nothing of
the project. Import from its modules (`from core.errors import NotFound`).

- `settings`: `Settings`, `load_settings()` — the only reader of the environment
- `errors`: the project's error tree (`BidiError` and its kinds)
- `messages`: hot-path Structs (`InboundMessage`, `OutboundMessage`, `Receipt`)
- `rbac`: roles, permissions, and the permission each event family needs
- `security`: passwords, access tokens, opaque secrets
- `crypto`: `Cipher` for credentials at rest
- `pacing`: an in-memory token bucket; `paths`: private runtime directories;
  `plans`: plan limits
"""

__all__ = [
    "crypto", "errors", "messages", "pacing", "paths", "plans", "rbac", "security", "settings"
]
