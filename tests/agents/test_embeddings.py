"""The offline embedder: 1536 unit-length dimensions, the same vector for the
same text in any process, related texts closer than unrelated ones, and fast
enough to embed a CRM's notes in bulk."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

from agents.embeddings import DIMENSIONS, Embedder, OfflineEmbedder, terms
from tests.agents.memory_corpus import MEMORIES

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b))


async def test_vectors_are_unit_length_and_1536_wide() -> None:
    embedder: Embedder = OfflineEmbedder()
    vectors = await embedder.embed(["Prefers calls in the morning", "Budget is $40k"])
    assert embedder.name == "offline"
    assert [len(v) for v in vectors] == [DIMENSIONS, DIMENSIONS]
    assert all(isinstance(x, float) for x in vectors[0])
    for vector in vectors:
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


async def test_nothing_to_embed() -> None:
    embedder = OfflineEmbedder()
    assert await embedder.embed([]) == []
    (blank,) = await embedder.embed(["the and of, to!"])  # stop words only
    assert not any(blank)


def test_the_same_text_gives_the_same_vector_in_another_process() -> None:
    text = "Annie at Northwind prefers WhatsApp messages before 9am"
    here = OfflineEmbedder().embed_array([text])[0]
    code = ("import sys; from agents.embeddings import OfflineEmbedder;"
            f" sys.stdout.write(OfflineEmbedder().embed_array([{text!r}])[0].tobytes().hex())")
    # Another hash seed: Python's own hash() would give another vector.
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "12345"})
    there = np.frombuffer(bytes.fromhex(out.stdout), dtype=np.float32)
    assert np.array_equal(here, there)


async def test_related_texts_are_closer_than_unrelated_ones() -> None:
    embedder = OfflineEmbedder()
    morning, paraphrase, budget, other = await embedder.embed([
        "Prefers phone calls in the morning",
        "best time to phone her is the morning",
        "Our budget is $40k for the analytics add-on",
        "Wayne Legal is also evaluating HubSpot as an alternative",
    ])
    assert cosine(morning, paraphrase) > 0.3
    assert cosine(morning, paraphrase) > 3 * max(cosine(morning, budget), cosine(morning, other))
    # Synonyms and word forms meet: "price" is "budget", "calling" is "call".
    pricing, calling = await embedder.embed(["what is the price range", "calling Annie"])
    assert cosine(pricing, budget) > cosine(pricing, morning) + 0.1
    assert cosine(calling, morning) > cosine(calling, other) + 0.1


def test_normalised_terms() -> None:
    assert terms("She PREFERS phone calls, not emails!") == ["favor", "call", "call", "email"]
    assert terms("The prices were discussed") == ["budget", "discuss"]


def test_it_embeds_thousands_of_short_notes_a_second() -> None:
    notes = [content for _, content in MEMORIES.values()] * 25  # 5,000 notes
    best = 0.0
    for _ in range(3):  # best of three: the machine is shared
        embedder = OfflineEmbedder()  # a cold cache each time
        started = time.perf_counter()
        vectors = embedder.embed_array(notes)
        best = max(best, len(notes) / (time.perf_counter() - started))
    assert vectors.shape == (len(notes), DIMENSIONS)
    assert best >= 2000, f"{best:.0f} texts/s"
