"""Fetching the files a message came with, after it is committed.

An inbound message is stored with its attachments as the channel described
them (`file_url` the provider's reference); its chat then fetches each file
through the channel's connector (Telegram's getFile) into
`data_dir/files/<org>/`, at most `max_attachment_bytes` each, and records
where it went, or why it never will (too large, gone). A fetch that fails
for a while is tried a few times; the message itself never waits for it."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from channels.base import ChannelError
from core.messages import Attachment
from storage import messages
from storage.committer import Write
from storage.integrations import Integration

log = logging.getLogger(__name__)

ATTEMPTS = 3
FIRST_PAUSE = 1.0  # seconds before the second attempt; doubled after


class FileSource(Protocol):
    async def download(self, integration: Integration, file_id: str, dest_dir: Path,
                       max_bytes: int) -> Attachment: ...


def files_dir(data_dir: Path, org_id: str) -> Path:
    return Path(data_dir) / "files" / org_id


async def fetch_files(source: FileSource, integration: Integration, data_dir: Path,
                      max_bytes: int, message_id: str, attachments: Sequence[Attachment],
                      commit: Callable[[list[Write]], Awaitable[Any]]) -> None:
    """Fetch each of `attachments` that has a provider id; every outcome
    (where the file went, or why it never will) is committed as it comes."""
    dest = files_dir(data_dir, integration.org_id)
    dest.mkdir(parents=True, exist_ok=True)
    for attachment in attachments:
        if attachment.provider_id:
            await commit([await _fetch_one(source, integration, Path(data_dir), dest,
                                           max_bytes, message_id, attachment.provider_id)])


async def _fetch_one(source: FileSource, integration: Integration, data_dir: Path, dest: Path,
                     max_bytes: int, message_id: str, file_id: str) -> Write:
    attempt, pause = 1, FIRST_PAUSE
    while True:
        try:
            got = await source.download(integration, file_id, dest, max_bytes)
        except ChannelError as exc:
            if not exc.retryable or attempt >= ATTEMPTS:
                log.info("attachment %s of %s not fetched: %s", file_id, message_id, exc)
                return messages.file_write(message_id, file_id, error=str(exc))
            await asyncio.sleep(max(pause, exc.retry_after or 0.0))
            attempt, pause = attempt + 1, pause * 2
            continue
        path = Path(got.url)
        relative = path.relative_to(data_dir) if path.is_absolute() else path
        return messages.file_write(message_id, file_id, path=str(relative), size=got.size,
                                   mime_type=got.mime_type)
