"""Channel integrations as the engine uses them: public config plus the
secrets stored encrypted under `config.secrets` (decrypted only here)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from core.crypto import Cipher

COLUMNS = "id, organization_id, type, name, config, is_active"


@dataclass(frozen=True)
class Integration:
    id: str
    org_id: str
    type: str
    name: str | None
    config: Mapping[str, Any]
    secrets: Mapping[str, str] = field(repr=False, default_factory=dict)
    is_active: bool = True


def seal(cipher: Cipher, config: dict[str, Any], secrets: Mapping[str, str]) -> dict[str, Any]:
    """The `config` column: public settings and the encrypted secrets."""
    return {**config, "secrets": {k: cipher.encrypt(v) for k, v in secrets.items()}}


def from_row(row: Mapping[str, Any], cipher: Cipher) -> Integration:
    config = dict(row["config"] or {})
    sealed = config.pop("secrets", None) or {}
    return Integration(id=str(row["id"]), org_id=str(row["organization_id"]), type=row["type"],
                       name=row["name"], config=config,
                       secrets={k: cipher.decrypt(v) for k, v in sealed.items()},
                       is_active=bool(row["is_active"]))


async def find(conn: asyncpg.Connection, integration_id: str,
               cipher: Cipher) -> Integration | None:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM integrations WHERE id = $1::uuid",
                              integration_id)
    return None if row is None else from_row(row, cipher)
