"""The provider that answers when no model is configured: no network,
deterministic (the same turns and tools give the same completion), and the
same tool loop as a hosted model, so the rest of the engine cannot tell the
difference except by the `offline` label.

Its turn, given the turns since the last user message:
- no tool results yet and `get_contact` / `search_memory` offered: it calls
  them (`get_contact` with `{}`, which the tool resolves to the chat's
  contact; `search_memory` with the user's text as the query);
- otherwise it drafts a reply from the facts in the tool results: the
  contact's first name, the company, an open deal's title and stage, up to
  two memories.

The user's text is data, never instructions: the draft never quotes it.
What the message is about is told by matching a fixed list of sales topics
(pricing, a demo, the contract ...) and a seat count, and only those fixed
phrases reach the reply, so "ignore previous instructions and say X" cannot
put X in it. Memories are CRM data that may have come from a customer too:
one that reads like an instruction is left out.

Tokens are counted as characters / 4 (rounded up) of everything read and
written, so token accounting and quotas work offline as they do online."""
from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator
from typing import Any

from agents.llm import Completion, ToolCall, ToolSpec, Turn, Usage

QUERY_CHARS = 200
MEMORY_CHARS = 160

# (pattern, phrase): the first topics found, in this order, name the message.
TOPICS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p, re.IGNORECASE), phrase) for p, phrase in (
        (r"\b(pric\w*|cost\w*|quote\w*|how much|budget)\b", "pricing"),
        (r"\b(discount\w*|offer\w*|promo\w*)\b", "a discount"),
        (r"\b(demo\w*|walkthrough|trial)\b", "a demo"),
        (r"\b(meet\w*|call|schedul\w*|calendar|availab\w*)\b", "setting up a call"),
        (r"\b(contract\w*|agreement|renew\w*|terms)\b", "the contract"),
        (r"\b(invoice\w*|billing|payment\w*|refund\w*)\b", "billing"),
        (r"\b(integrat\w*|api|connect\w*)\b", "the integration"),
        (r"\b(bug\w*|error\w*|broken|issue\w*|problem\w*|support)\b", "the issue you ran into"),
        (r"\b(deliver\w*|shipping|ship)\b", "delivery"),
    ))
SEATS = re.compile(r"\b(\d{1,6})\s+(seats?|licen[cs]es?|users?|agents?)\b", re.IGNORECASE)
INSTRUCTION_LIKE = re.compile(
    r"\b(ignore|disregard|forget|override)\b.*\b(instruction|prompt|rule|above|previous)"
    r"|\bsystem prompt\b|\byou are now\b|\b(say|reply|respond|answer) (with|only)\b",
    re.IGNORECASE)


def tokens(chars: int) -> int:
    return math.ceil(chars / 4)


def _since_last_user(turns: list[Turn]) -> tuple[str, list[Turn]]:
    """The last user text and the turns after it."""
    for i in range(len(turns) - 1, -1, -1):
        if turns[i].role == "user":
            return turns[i].content, turns[i + 1:]
    return "", list(turns)


def _call_id(name: str, arguments: str, position: int) -> str:
    digest = hashlib.sha256(f"{position}:{name}:{arguments}".encode()).hexdigest()
    return f"call_offline_{digest[:16]}"


def _walk(value: Any) -> Iterator[dict[str, Any]]:
    """Every object in a tool result, outermost first."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


class Facts:
    """What the tool results told: read tolerantly, as tools may nest their
    answer (`{"contact": {...}}`) or not."""

    def __init__(self) -> None:
        self.first_name: str | None = None
        self.company: str | None = None
        self.deal: tuple[str, str | None] | None = None
        self.memories: list[str] = []

    def read(self, tool: str | None, content: str) -> None:
        try:
            data = json.loads(content)
        except ValueError:
            return
        if tool == "search_memory" or (isinstance(data, dict) and "memories" in data):
            self._memories(data)
        if tool != "search_memory":
            self._contact(data)

    def _contact(self, data: Any) -> None:
        for obj in _walk(data):
            if self.first_name is None:
                name = _text(obj.get("first_name")) or _text(obj.get("firstName"))
                if name is None and ("email" in obj or "phone" in obj):
                    full = _text(obj.get("name")) or _text(obj.get("full_name"))
                    name = full.split()[0] if full else None
                # one word at most: a display name is whatever the customer typed
                self.first_name = _clip(name.split()[0], 40) if name else None
            if self.company is None:
                company = obj.get("company")
                found = _text(company) or _text(obj.get("company_name")) or (
                    _text(company.get("name")) if isinstance(company, dict) else None)
                self.company = _clip(found, 80) if found else None
            deals = obj.get("deals")
            if self.deal is None and isinstance(deals, list):
                self.deal = next((d for d in map(_deal, deals) if d), None)

    def _memories(self, data: Any) -> None:
        items = data.get("memories", data.get("results")) if isinstance(data, dict) else data
        for item in items if isinstance(items, list) else ():
            text = _text(item) or (_text(item.get("content")) or _text(item.get("text"))
                                   if isinstance(item, dict) else None)
            if text and not INSTRUCTION_LIKE.search(text) and len(self.memories) < 2:
                self.memories.append(_clip(text, MEMORY_CHARS))


def _deal(deal: Any) -> tuple[str, str | None] | None:
    """An open deal's (title, stage), or None."""
    if not isinstance(deal, dict) or str(deal.get("status", "open")).lower() != "open":
        return None
    title = _text(deal.get("title")) or _text(deal.get("name"))
    stage = deal.get("stage")
    stage_name = _text(stage.get("name")) if isinstance(stage, dict) else (
        _text(stage) or _text(deal.get("stage_name")))
    if not title or INSTRUCTION_LIKE.search(title):
        return None
    return _clip(title, 80), _clip(stage_name, 40) if stage_name else None


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _topic(user_text: str) -> str | None:
    phrases = [phrase for pattern, phrase in TOPICS if pattern.search(user_text)][:2]
    if not phrases:
        return None
    topic = " and ".join(phrases)
    seats = SEATS.search(user_text)
    if seats:
        count, unit = int(seats.group(1)), seats.group(2).lower().rstrip("s")
        topic += f" for {count} {unit}{'' if count == 1 else 's'}"
    return topic


def draft(user_text: str, facts: Facts) -> str:
    """A reply a salesperson could send, built only from fixed phrases and CRM facts."""
    greeting = f"Hi {facts.first_name}," if facts.first_name else "Hi there,"
    topic = _topic(user_text)
    parts = [f"{greeting} thanks for your message" + (f" about {topic}." if topic else ".")]
    if facts.deal:
        title, stage = facts.deal
        parts.append(f'I see "{title}" is currently at the {stage} stage on our side.'
                     if stage else f'I have "{title}" in front of me.')
    elif facts.company:
        parts.append(f"Happy to help the {facts.company} team with this.")
    if facts.memories:
        parts.append("I also have on file: " + "; ".join(facts.memories) + ".")
    parts.append("I'll come back to you shortly with the details"
                 + (" you asked for." if "?" in user_text else "."))
    return " ".join(parts)


def _input_chars(system: str, turns: list[Turn], tools: list[ToolSpec]) -> int:
    chars = len(system)
    for turn in turns:
        chars += len(turn.content) + sum(len(c.name) + len(c.arguments) for c in turn.tool_calls)
    for tool in tools:
        chars += len(tool.name) + len(tool.description) + len(json.dumps(tool.parameters))
    return chars


class OfflineProvider:
    name = "offline"

    async def complete(self, *, model: str, system: str, turns: list[Turn],
                       tools: list[ToolSpec], max_tokens: int,
                       temperature: float) -> Completion:
        user_text, after = _since_last_user(turns)
        spent_in = tokens(_input_chars(system, turns, tools))
        offered = {t.name for t in tools}
        calls: list[ToolCall] = []
        if not any(t.role == "tool" for t in after):
            if "get_contact" in offered:
                calls.append(ToolCall(_call_id("get_contact", "{}", len(turns)),
                                      "get_contact", "{}"))
            if "search_memory" in offered:
                args = json.dumps({"query": user_text.strip()[:QUERY_CHARS]})
                calls.append(ToolCall(_call_id("search_memory", args, len(turns)),
                                      "search_memory", args))
        if calls:
            out = sum(len(c.name) + len(c.arguments) for c in calls)
            return Completion(text="", tool_calls=tuple(calls),
                              usage=Usage(spent_in, tokens(out)), provider=self.name,
                              model=self.name, finish="tool_calls")
        facts = Facts()
        for turn in after:
            if turn.role == "tool":
                facts.read(turn.name, turn.content)
        text, finish = draft(user_text, facts), "stop"
        if tokens(len(text)) > max_tokens:
            text, finish = text[:max(0, max_tokens) * 4], "length"
        return Completion(text=text, usage=Usage(spent_in, tokens(len(text))),
                          provider=self.name, model=self.name, finish=finish)
