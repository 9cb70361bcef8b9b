"""Embeddings from OpenAI (`text-embedding-3-small`, 1536 dimensions by
default, the size of `agent_memories.embedding`), through the official SDK.

Texts go in batches of at most `batch_size` (the API takes up to 2,048
inputs a request), one request at a time so a large backfill does not trip
the rate limit all at once; each batch's vectors are put back in input order
by their `index`, since that, not the position, is what the API promises.
The SDK retries 429/5xx like the chat providers do, and its errors become
`ProviderError`s the same way (agents.providers)."""
from __future__ import annotations

import asyncio
from collections.abc import Sequence

import openai

from agents.llm import ProviderError
from agents.providers import OPENAI_URL, deadline, openai_error


class OpenAIEmbedder:
    name = "openai"

    def __init__(self, api_key: str, *, base_url: str | None = None,
                 model: str = "text-embedding-3-small", dimensions: int = 1536,
                 timeout: float = 30.0, max_retries: int = 2, batch_size: int = 512) -> None:
        if not 1 <= batch_size <= 2048:
            raise ValueError("batch_size must be between 1 and 2048")
        self.model = model
        self.dimensions = dimensions
        self.batch_size = batch_size
        self.deadline = deadline(timeout, max_retries)
        self._client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url or OPENAI_URL,
                                          timeout=timeout, max_retries=max_retries)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector of `dimensions` floats per text, in the order given."""
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            vectors.extend(await self._batch(texts[start:start + self.batch_size]))
        return vectors

    async def _batch(self, texts: Sequence[str]) -> list[list[float]]:
        # The API refuses an empty string; a blank text still needs its slot.
        inputs = [text if text.strip() else " " for text in texts]
        try:
            async with asyncio.timeout(self.deadline):
                response = await self._client.embeddings.create(
                    model=self.model, input=inputs, dimensions=self.dimensions)
        except openai.OpenAIError as exc:
            raise openai_error(exc) from exc
        except TimeoutError as exc:
            raise ProviderError(f"openai: no embeddings within {self.deadline:g} s",
                                retryable=True, timeout=True) from exc
        ordered = sorted(response.data, key=lambda item: item.index)
        if len(ordered) != len(inputs) or any(len(i.embedding) != self.dimensions
                                              for i in ordered):
            raise ProviderError(f"openai: expected {len(inputs)} embeddings of"
                                f" {self.dimensions} dimensions, got {len(ordered)}")
        return [list(item.embedding) for item in ordered]

    async def aclose(self) -> None:
        await self._client.close()
