"""Fixtures of the channel tests: a WhatsApp connector on the fake Graph API,
and a number of it."""
from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from channels.whatsapp import WhatsAppConnector
from tests.fakes.whatsapp import FakeGraph, Number


@pytest.fixture
async def connector(fake_graph: FakeGraph) -> AsyncIterator[WhatsAppConnector]:
    made = WhatsAppConnector(api_base_url=fake_graph.url)
    yield made
    await made.close()


@pytest.fixture
def number(fake_graph: FakeGraph) -> Number:
    return fake_graph.add_number()
