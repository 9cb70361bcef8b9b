"""WhatsApp media through the connector against a fake Graph API: the media
URL flow, the size cap and checksum, and the connector's one HTTP client."""
from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from channels.base import CREDENTIALS_REFUSED, ChannelError
from channels.downloads import stream_to
from channels.whatsapp import (
    WhatsAppConnector,
)
from tests.channels.graph import (
    integration,
    outbound,
)
from tests.fakes.whatsapp import FakeGraph, Number


async def test_download_within_the_cap(connector: WhatsAppConnector, fake_graph: FakeGraph,
                                       number: Number, tmp_path: Path) -> None:
    content = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40
    media_id = fake_graph.add_media(content, "image/jpeg")
    got = await connector.download(integration(number), media_id, tmp_path, max_bytes=20_000)
    path = Path(got.url)
    assert path.parent == tmp_path and path.suffix == ".jpg" and path.read_bytes() == content
    assert (got.size, got.mime_type, got.provider_id, got.name) == (
        len(content), "image/jpeg", media_id, None)
    (fetch,) = fake_graph.calls_of(media_id, "download")
    assert fetch.headers["authorization"] == f"Bearer {number.access_token}"
    voice = fake_graph.add_media(b"OggS" + b"\0" * 100, "audio/ogg; codecs=opus")
    note = await connector.download(integration(number), voice, tmp_path, max_bytes=20_000)
    assert Path(note.url).suffix in (".oga", ".ogg", ".opus") and note.url != got.url


async def test_download_refusals(connector: WhatsAppConnector, fake_graph: FakeGraph,
                                 number: Number, tmp_path: Path) -> None:
    bot = integration(number)
    said = fake_graph.add_media(b"x" * 5000)
    with pytest.raises(ChannelError) as too_big:
        await connector.download(bot, said, tmp_path, max_bytes=4096)
    assert not too_big.value.retryable and too_big.value.message.startswith("file_too_large")
    assert not fake_graph.calls_of(said, "download")  # refused on the metadata alone
    understated = fake_graph.add_media(b"y" * 50_000, reported_size=100)
    with pytest.raises(ChannelError) as streamed:
        await connector.download(bot, understated, tmp_path, max_bytes=4096)
    assert not streamed.value.retryable and streamed.value.message.startswith("file_too_large")
    forged = fake_graph.add_media(b"z" * 100, sha256=hashlib.sha256(b"other").hexdigest())
    with pytest.raises(ChannelError) as mismatch:
        await connector.download(bot, forged, tmp_path, max_bytes=4096)
    assert not mismatch.value.retryable and mismatch.value.message.startswith("checksum")
    assert list(tmp_path.iterdir()) == []  # nothing partial or forged is left
    with pytest.raises(ChannelError) as wrong_token:
        await connector.download(integration(number, token="EAAGwrong"), said, tmp_path,
                                 max_bytes=10_000)
    assert wrong_token.value.reason == CREDENTIALS_REFUSED
    fake_graph.fail(said, "download", 401, 190, "expired")
    with pytest.raises(ChannelError) as cdn_refused:
        await connector.download(bot, said, tmp_path, max_bytes=10_000)
    assert not cdn_refused.value.retryable and "401" in cdn_refused.value.message
    fake_graph.fail(said, "download", 503, 2, "busy")
    with pytest.raises(ChannelError) as cdn_busy:
        await connector.download(bot, said, tmp_path, max_bytes=10_000)
    assert cdn_busy.value.retryable
    for unknown in ("1234567890123", "../me"):
        with pytest.raises(ChannelError) as missing:
            await connector.download(bot, unknown, tmp_path, max_bytes=10_000)
        assert not missing.value.retryable
    assert list(tmp_path.iterdir()) == []


async def test_a_download_never_removes_a_file_it_did_not_make(
        fake_graph: FakeGraph, number: Number, tmp_path: Path) -> None:
    media_id = fake_graph.add_media(b"new bytes")
    there = tmp_path / "taken.jpg"
    there.write_bytes(b"someone else's")
    async with httpx.AsyncClient() as client:
        with pytest.raises(FileExistsError):
            await stream_to(client, f"{fake_graph.url}/media/{media_id}", there, 1000,
                            headers={"Authorization": f"Bearer {number.access_token}"})
    assert there.read_bytes() == b"someone else's"


# -- the client --------------------------------------------------------------------

async def test_one_client_made_lazily_and_closed(fake_graph: FakeGraph,
                                                 number: Number) -> None:
    connector = WhatsAppConnector(fake_graph.url)
    assert connector._http is None
    async with connector:
        await connector.send(integration(number), outbound())
        client = connector._http
        await connector.mark_read(integration(number), "wamid.X")
        assert client is not None and connector._http is client
    assert client.is_closed and connector._http is None
    await connector.close()  # twice is fine
