"""The webhook's integration cache: unknown ids are remembered (bounded), so
posts naming random ids cost one query each at most and repeated ones none."""
from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from core.crypto import Cipher
from core.errors import NotFound
from core.settings import Settings
from serve.inbound import IntegrationCache
from storage.db import Database
from tests.conftest import Account
from tests.serve.messaging import make_inbox


def _cache(db: Database, settings: Settings, **options: int) -> IntegrationCache:
    return IntegrationCache(db, Cipher(settings.encryption_key.get_secret_value()),
                            **options)  # type: ignore[arg-type]


async def test_one_unknown_id_costs_one_query(db: Database, settings: Settings) -> None:
    cache = _cache(db, settings)
    unknown = str(uuid.uuid4())
    at_once = await asyncio.gather(*(cache.get(unknown, "api") for _ in range(500)),
                                   return_exceptions=True)
    assert all(isinstance(answer, NotFound) for answer in at_once)
    for _ in range(500):
        with pytest.raises(NotFound):
            await cache.get(unknown, "api")
    assert cache.loads == 1


async def test_unknown_ids_are_remembered_within_a_bound(db: Database,
                                                         settings: Settings) -> None:
    cache = _cache(db, settings, size=100)
    ids = [str(uuid.uuid4()) for _ in range(300)]
    for integration_id in ids:
        with pytest.raises(NotFound):
            await cache.get(integration_id, "api")
    assert cache.loads == 300 and len(cache._missing) == 100
    with pytest.raises(NotFound):
        await cache.get(ids[-1], "api")  # the newest are the ones kept
    assert cache.loads == 300


async def test_known_ids_are_found_and_checked(api: httpx.AsyncClient, owner: Account,
                                               db: Database, settings: Settings) -> None:
    inbox = await make_inbox(api, owner)
    cache = _cache(db, settings)
    found = await asyncio.gather(*(cache.get(inbox.id, "api") for _ in range(50)))
    assert {integration.id for integration in found} == {inbox.id}
    with pytest.raises(NotFound):
        await cache.get(inbox.id, "telegram")  # another channel's webhook
    assert cache.loads == 1
