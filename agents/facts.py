"""Facts and preferences in what a contact said, for long-term memory.

Run when a conversation has gone quiet, over its recent turns; offline and
deterministic (patterns, not a model), so it costs nothing and the same
conversation always yields the same memories. Only the contact's turns are
read (role `user`, as the model sees them, or `contact`): what the agent
itself wrote is no evidence about the contact. Questions are skipped ("do
you use Salesforce?" says nothing about them), and so are negated forms,
which the patterns never match ("we don't use X" is not "we use X").

Each memory is a short third-person statement that reads well on its own in
a prompt months later: "Prefers calls in the morning", "Uses Salesforce",
"Budget is $40k", "Wants to be called Annie", "Has 40 seats",
"Decision-maker: Dana Smith (CFO)", "Deadline: they need it live by March 15".
Types: `preference`, `fact`, `deadline`. Within one batch a statement is
kept once; against what is already stored, storage.memories.save
deduplicates by similarity.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence

CONTACT_ROLES = frozenset({"user", "contact"})

_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")
_END = r"(?=\s+(?:and|but|so|because|since|though|as)\b|[,;:.!?]|$)"
_FRAGMENT = rf"(?P<x>[^,;:.!?]+?){_END}"
_MONTH = ("(?:January|February|March|April|May|June|July|August|September|October|"
          "November|December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)")
_WEEKDAY = "(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_DATE = (rf"(?:the )?(?:end of (?:the )?)?(?:{_MONTH}(?: \d{{1,2}}(?:st|nd|rd|th)?)?(?:,? \d{{4}})?"
         rf"|\d{{1,2}}(?:st|nd|rd|th)? (?:of )?{_MONTH}|Q[1-4](?: \d{{4}})?|{_WEEKDAY}"
         r"|next (?:week|month|quarter|year)|\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}(?:/\d{2,4})?"
         r"|(?:the )?end of (?:the )?(?:week|month|quarter|year))")
_NAME = r"(?P<name>[A-Z][a-z'-]+(?: [A-Z][a-z'-]+)?)"
_ROLE = r"(?P<role>CFO|CEO|CTO|COO|CIO|VP[\w ]*?|head of \w+|director|founder|boss|manager)"
_SWAPS = {"i": "they", "we": "they", "my": "their", "our": "their", "me": "them",
          "us": "them", "i'm": "they're", "we're": "they're", "i've": "they've",
          "we've": "they've", "myself": "themselves", "ourselves": "themselves",
          "mine": "theirs", "ours": "theirs"}

Rule = tuple[str, re.Pattern[str], Callable[[re.Match[str]], str]]


def third_person(text: str) -> str:
    """'my team prefers our calls' -> 'their team prefers their calls'."""
    return re.sub(r"\b[A-Za-z']+\b",
                  lambda m: _SWAPS.get(m.group(0).lower(), m.group(0)), text)


def _x(match: re.Match[str]) -> str:
    return third_person(match.group("x").strip())


def _decider(match: re.Match[str]) -> str:
    role = match.groupdict().get("role")
    return f"Decision-maker: {match.group('name')}" + (f" ({role})" if role else "")


_I = re.IGNORECASE
RULES: tuple[Rule, ...] = (
    ("preference", re.compile(r"\b(?i:call me) (?P<name>[A-Z][a-z'-]+)\b"),
     lambda m: f"Wants to be called {m.group('name')}"),
    ("preference", re.compile(rf"\b(?:i|we)(?:'d| would)? (?:really |much )?prefer (?:to )?"
                              rf"{_FRAGMENT}", _I),
     lambda m: f"Prefers {_x(m)}"),
    ("preference", re.compile(rf"\b(?:i|we)(?:'d| would) (?:much )?rather {_FRAGMENT}", _I),
     lambda m: f"Would rather {_x(m)}"),
    ("preference", re.compile(r"\b(?:please )?(?:don't|do not|never) (?P<verb>call|email|"
                              r"text|message|phone|ring|contact) (?:me|us)\b(?P<x>[^,;.!?]*)",
                              _I),
     lambda m: f"Do not {m.group('verb').lower()} them {_x(m)}".rstrip()),
    ("preference", re.compile(rf"\bbest (?:time|way|days?) to (?:reach|contact|call|get) "
                              rf"(?:me|us|hold of (?:me|us)) (?:is|are) {_FRAGMENT}", _I),
     lambda m: f"Best reached {_x(m)}"),
    ("fact", re.compile(rf"\bwe(?:'re| are)? (?:currently |already |still |now )?"
                        rf"(?:use|using|run|running|work in|are on|switched to) {_FRAGMENT}", _I),
     lambda m: f"Uses {_x(m)}"),
    ("fact", re.compile(r"\b(?:our |the |my )?budget(?: for this)? (?:is|of|'s|will be|would be)"
                        r" (?P<x>(?:about |around |roughly |up to |under )?[$€£]?\s?\d[\d,.]*"
                        r"(?:\s?(?:k|m|thousand|million)\b)?"
                        r"(?:\s(?:usd|eur|gbp|dollars|euros|a year|per year|per month"
                        r"|a month)\b)*)",
                        _I),
     lambda m: f"Budget is {m.group('x').strip()}"),
    ("fact", re.compile(r"\bwe (?:can|could) (?:spend|afford) (?P<x>(?:about |around |up to )?"
                        r"[$€£]\s?\d[\d,.]*\s?(?:k|m|K|M)?)", _I),
     lambda m: f"Budget is {m.group('x').strip()}"),
    ("fact", re.compile(r"\bwe(?:'ve| have)?(?: got)? (?P<verb>have|are|need|want|got)?\s?"
                        r"(?:about |around |roughly )?(?P<n>\d[\d,]*) (?P<what>seats|users|reps|"
                        r"licen[cs]es|employees|people|agents|salespeople|sales reps)\b", _I),
     lambda m: f"{'Needs' if (m.group('verb') or '').lower() in ('need', 'want') else 'Has'}"
               f" {m.group('n')} {m.group('what').lower()}"),
    ("fact", re.compile(r"\b(?:need|want|require)s? (?:about |around |roughly )?"
                        r"(?P<n>\d[\d,]*) (?P<what>seats|users|licen[cs]es)\b", _I),
     lambda m: f"Needs {m.group('n')} {m.group('what').lower()}"),
    ("fact", re.compile(rf"{_NAME}(?:,? (?:our|the|my) {_ROLE},?)? (?:is the (?:final )?"
                        r"decision[- ]maker|makes the (?:final )?(?:decision|call)|signs off"
                        r"|has the final (?:say|word)|approves (?:the|all|any|every))"),
     _decider),
    ("fact", re.compile(rf"\b(?:the )?(?:final )?decision(?:[- ]maker)? is (?:with |up to )?"
                        rf"(?:our |my )?(?:{_ROLE} )?{_NAME}"), _decider),
    ("fact", re.compile(rf"\b(?:[Ii]|[Ww]e) (?:need|have) to (?:check|run (?:it|this) by|talk to"
                        rf"|speak (?:to|with)|ask) (?:with )?(?:our |my )?{_ROLE},? {_NAME}"),
     _decider),
    ("deadline", re.compile(rf"\b(?:the |our )?deadline is (?P<x>{_DATE})", _I),
     lambda m: f"Deadline: {m.group('x')}"),
    ("deadline", re.compile(rf"\b(?:contract|subscription|licen[cs]e) (?:renews|ends|expires)"
                            rf" (?:in|on|at) (?P<x>{_DATE})", _I),
     lambda m: f"Contract renews {m.group(0).split()[-2]} {m.group('x')}".replace(
         "renews expires", "ends").replace("renews ends", "ends")),
    ("deadline", re.compile(rf"\b(?P<x>(?:i|we)(?:'d| would)? (?:need|want|have|must|plan|"
                            rf"hope)[^.!?]*? (?:by|before|until|no later than) {_DATE})", _I),
     lambda m: f"Deadline: {_x(m)}"),
)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def _key(kind: str, content: str) -> tuple[str, str]:
    return kind, " ".join(re.findall(r"[a-z0-9$€£]+", content.lower()))


def extract(turns: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """(memory_type, content) of every fact, preference and deadline the
    contact stated in `turns` ((role, text), oldest first), each once."""
    found: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for role, text in turns:
        if role.lower() not in CONTACT_ROLES:
            continue
        for sentence in sentences(text):
            if sentence.endswith("?"):
                continue
            for kind, pattern, render in RULES:
                for match in pattern.finditer(sentence):
                    content = render(match).strip()
                    key = _key(kind, content)
                    if content and key not in seen:
                        seen.add(key)
                        found.append((kind, content[0].upper() + content[1:]))
    return found
