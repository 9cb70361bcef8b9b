"""Downloading a provider's file to disk: streamed, capped, and never left
half-written. Shared by the connectors (Telegram's file server, Meta's
media CDN)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import httpx

from channels.base import ChannelError


async def stream_to(client: httpx.AsyncClient, url: str, dest: Path, max_bytes: int,
                    headers: Mapping[str, str] | None = None) -> int:
    """GET `url` into the new file `dest`; returns its size. `ChannelError`
    (final) past `max_bytes`, or on a refusal; retryable on a network
    error, 408, 429 or 5xx. On any error the part written is removed."""
    size, created = 0, False
    try:
        # URLs and headers may hold credentials: no message below quotes them
        async with client.stream("GET", url, headers=headers) as response:
            if response.status_code != 200:
                code = response.status_code
                raise ChannelError(f"file download answered {code}",
                                   retryable=code in (408, 429) or code >= 500)
            with dest.open("xb") as out:
                created = True
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise ChannelError(f"file_too_large: over {max_bytes} bytes")
                    out.write(chunk)
    except httpx.HTTPError as exc:
        if created:
            dest.unlink(missing_ok=True)
        raise ChannelError(f"file download failed: {type(exc).__name__}",
                           retryable=True) from None
    except BaseException:
        if created:  # a file that was there before is not ours to remove
            dest.unlink(missing_ok=True)
        raise
    return size
