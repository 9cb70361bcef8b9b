"""Text embeddings for long-term memory: one `Embedder` seam, 1536
dimensions (the width of `agent_memories.embedding` and of OpenAI's
text-embedding-3-small), and an offline embedder for when no provider is
configured.

The offline embedder is feature hashing, not a model, but it is made to be
useful for recall: texts that share words, word pairs or word pieces land
close together. A text is lower-cased, split into words, stripped of stop
words, lightly stemmed ("calls", "calling" -> "call") and folded through a
small table of CRM synonyms ("phone" -> "call", "price" -> "budget"); then
its unigrams, bigrams and character trigrams of each word are hashed with a
sign into the 1536 buckets (the sign keeps colliding features from adding up
on average) and the vector is L2-normalised, so cosine similarity is a dot
product. Hashing is CRC-32, not `hash()`: the same text gives the same vector
in every process, which a stored embedding needs.

Speed comes from caching each word's and each word pair's features (a CRM's
vocabulary is small) and from adding a chunk of texts into one numpy array
with a single `bincount`: `embed_array` is what a bulk loader calls, `embed`
the list form the `Embedder` protocol speaks.
"""
from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol

import numpy as np
import numpy.typing as npt

DIMENSIONS = 1536

Features = tuple[tuple[int, float], ...]


class Embedder(Protocol):
    name: str

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One `DIMENSIONS`-wide vector per text, in order."""
        ...


_WORD = re.compile(r"[a-z0-9$]+(?:[.'][a-z0-9]+)*")
_STOP = frozenset(str.split("""
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers herself him himself his how i if in into is it its itself
just let me more most my myself no nor not of off on once only or other our ours ourselves out
over own same she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when where which while
who whom why will with would you your yours yourself yourselves s t ll re ve d m o y
also get got please thanks thank hi hello hey ok okay sure yes yeah really like
"""))
# Words a salesperson and a contact use for the same thing: one feature each,
# so "phone her in the evening" and "prefers calls in the afternoon" meet.
_SYNONYMS: dict[str, str] = {
    "phone": "call", "ring": "call", "dial": "call", "callback": "call",
    "mail": "email", "e-mail": "email", "inbox": "email",
    "text": "sms", "texting": "sms", "whatsapp": "sms", "telegram": "sms",
    "price": "budget", "pricing": "budget", "cost": "budget", "spend": "budget",
    "money": "budget", "afford": "budget", "funding": "budget",
    "forenoon": "morning", "evening": "afternoon",
    "seat": "license", "user": "license", "licence": "license", "headcount": "license",
    "rep": "license",
    "deadline": "due", "cutoff": "due", "launch": "golive", "renewal": "renew",
    "boss": "decider", "approver": "decider", "approve": "decider", "sign": "decider",
    "signoff": "decider", "decision": "decider", "decide": "decider", "cfo": "decider",
    "ceo": "decider", "vp": "decider",
    "competitor": "rival", "alternative": "rival", "evaluating": "rival",
    "prefer": "favor", "rather": "favor", "favorite": "favor", "love": "favor",
    "want": "favor",
    "dislike": "hate", "annoy": "hate", "annoyed": "hate",
    "tool": "software", "platform": "software", "system": "software", "app": "software",
}
_SUFFIXES = ("ations", "ation", "ings", "ing", "edly", "ies", "ied", "ed", "es", "ly", "s")

_UNIGRAM = 1.0
_BIGRAM = 0.7
_TRIGRAM = 0.1  # a word gives several; they only break ties between unrelated words
_CACHE_MAX = 500_000
_CHUNK = 256


@lru_cache(maxsize=_CACHE_MAX)
def stem(word: str) -> str:
    """A light suffix strip: enough to meet plural and tense, never below 3 letters."""
    if word in _SYNONYMS:
        return _SYNONYMS[word]
    if not word.isalpha():
        return word
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            base = word[: -len(suffix)]
            if suffix in ("ies", "ied"):
                base += "y"
            elif suffix == "es" and not base.endswith(("s", "x", "z", "ch", "sh")):
                base = word[:-1]  # "prices" -> "price", "boxes" -> "box"
            return _SYNONYMS.get(base, base)
    return word


def terms(text: str) -> list[str]:
    """The normalised words of a text that carry meaning, in order."""
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP]


def _bucket(feature: str, weight: float) -> tuple[int, float]:
    h = zlib.crc32(feature.encode())
    # Low bits pick the bucket, the top bit the sign.
    return h % DIMENSIONS, weight if h & 0x8000_0000 else -weight


class OfflineEmbedder:
    """Deterministic, networkless embeddings by signed feature hashing."""

    name = "offline"

    def __init__(self) -> None:
        self._words: dict[str, Features] = {}
        self._pairs: dict[tuple[str, str], tuple[int, float]] = {}

    def _word(self, word: str) -> Features:
        found = self._words.get(word)
        if found is None:
            padded = f"<{word}>"
            grams = [_bucket(f"c:{padded[i:i + 3]}", _TRIGRAM) for i in range(len(padded) - 2)]
            found = (_bucket(f"w:{word}", _UNIGRAM), *grams)
            if len(self._words) < _CACHE_MAX:
                self._words[word] = found
        return found

    def _pair(self, left: str, right: str) -> tuple[int, float]:
        key = (left, right)
        found = self._pairs.get(key)
        if found is None:
            found = _bucket(f"b:{left} {right}", _BIGRAM)
            if len(self._pairs) < _CACHE_MAX:
                self._pairs[key] = found
        return found

    def features(self, text: str) -> list[tuple[int, float]]:
        """(bucket, signed weight) of every feature of the text."""
        words = terms(text)
        out: list[tuple[int, float]] = []
        for word in words:
            out.extend(self._word(word))
        out.extend(self._pair(a, b) for a, b in zip(words, words[1:], strict=False))
        return out

    def embed_array(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """A (len(texts), DIMENSIONS) float32 array of unit rows (a text
        with no meaningful word is the zero vector)."""
        out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        # Chunks keep the float64 scratch array in cache: one dense array for
        # a whole bulk batch is slower to allocate and touch than to fill.
        for start in range(0, len(texts), _CHUNK):
            chunk = texts[start:start + _CHUNK]
            index: list[int] = []
            weight: list[float] = []
            for row, text in enumerate(chunk):
                base = row * DIMENSIONS
                for bucket, w in self.features(text):
                    index.append(base + bucket)
                    weight.append(w)
            dense = np.bincount(np.asarray(index, dtype=np.int64),
                                np.asarray(weight, dtype=np.float64),
                                minlength=len(chunk) * DIMENSIONS).astype(np.float64, copy=False)
            dense = dense.reshape(len(chunk), DIMENSIONS)
            norms = np.sqrt(np.einsum("ij,ij->i", dense, dense))[:, None]
            np.divide(dense, norms, out=dense, where=norms > 0)
            out[start:start + len(chunk)] = dense
        return out

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return [[float(x) for x in row] for row in self.embed_array(texts)]
