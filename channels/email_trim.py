"""The chat view of an email: the new text without the quoted thread and
the signature (pure, one pass over the lines).

What is cut, in order:
1. everything from the first reply header on: an attribution line
   ("On Mon, 1 Jan 2026, Ann <a@x> wrote:", also wrapped over two lines by
   Gmail, and its German/French/Spanish/Dutch forms), Outlook's
   "-----Original Message-----" or a line of underscores, or a header block
   ("From: ..." followed closely by "Sent:"/"Date:" and "To:"/"Subject:");
2. a trailing block of ">" quoted lines;
3. the signature after the last "-- " delimiter line (RFC 3676), and a
   trailing "Sent from my ..." line.
Quotes interleaved with answers are kept: there the quote is the context
the answer needs. A forwarded message is kept: its text is the content.

mail-parser-reply was measured against these cases and not used: its
sign-off patterns cut a message at any later line starting "Thanks," or
"Best," (losing the text after it), a "Warning:" line is dropped as a
disclaimer, a "- item" list is taken for a signature, and its attribution
pattern backtracks without bound on a long line that starts with "On "
(minutes for a 400 KB line). The rules here look at each line a bounded
number of times, so a 2 MB body costs what reading it costs.

The full text is never changed; when trimming leaves nothing (a message
that is only a quote), the chat view is the full text."""
from __future__ import annotations

import re

MAX_HEADER_LINE = 400  # an attribution or header line is short; longer lines are text
HEADER_WINDOW = 6  # lines after "From:" in which Sent/Date and To/Subject must follow
MAX_SIGNATURE_LINES = 10
_QUOTE_PREFIX = re.compile(r"^(?:\s*>)+\s?")
_ATTRIBUTION = re.compile(
    r"^(?:On\s.+\swrote|Am\s.+\sschrieb.*|Le\s.+\sa\s+écrit|El\s.+\sescribió"
    r"|Op\s.+\sschreef.*)\s?:$", re.IGNORECASE)
_ATTRIBUTION_START = ("on ", "am ", "le ", "el ", "op ")
_SEPARATOR = re.compile(r"^(?:-{3,}\s*Original Message\s*-{3,}|_{10,})$", re.IGNORECASE)
_FIELD = re.compile(r"^\*?(From|Sent|Date|To|Subject|Cc)\*?:", re.IGNORECASE)
_SENT_FROM = re.compile(r"^Sent from my \S+(?: \S+){0,3}$|^Get Outlook for \S+$", re.IGNORECASE)


def visible_text(text: str) -> str:
    """The chat view of `text` (see the module docstring)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    end = _reply_header(lines)
    if end is None:
        end = len(lines)
    end = _before_trailing_quote(lines, end)
    end = _before_signature(lines, end)
    visible = "\n".join(lines[:end]).strip()
    return visible or text


def _bare(line: str) -> str:
    """The line without quote marks and surrounding space, as a header test sees it."""
    if line.lstrip().startswith(">"):
        line = _QUOTE_PREFIX.sub("", line)
    return line.strip()


def _reply_header(lines: list[str]) -> int | None:
    """Index of the first line that starts the quoted thread, if any."""
    for index, line in enumerate(lines):
        bare = _bare(line)
        if not bare or len(bare) > MAX_HEADER_LINE:
            continue
        if _is_attribution(bare, lines, index) or _SEPARATOR.match(bare):
            return index
        field = _FIELD.match(bare)
        if field and field.group(1).lower() == "from" and _is_header_block(lines, index):
            return index
    return None


def _is_attribution(bare: str, lines: list[str], index: int) -> bool:
    if not bare.lower().startswith(_ATTRIBUTION_START):
        return False
    if _ATTRIBUTION.match(bare):
        return True
    # Gmail wraps a long attribution: "On Mon, ... Ann <" / "ann@x.com> wrote:"
    if index + 1 < len(lines):
        joined = f"{bare} {_bare(lines[index + 1])}"
        return len(joined) <= MAX_HEADER_LINE and bool(_ATTRIBUTION.match(joined))
    return False


def _is_header_block(lines: list[str], index: int) -> bool:
    """A "From:" line followed closely by a date field and a recipient or
    subject field: a quoted message's header block, not a sentence."""
    seen: set[str] = set()
    for line in lines[index + 1:index + 1 + HEADER_WINDOW]:
        match = _FIELD.match(_bare(line))
        if match:
            seen.add(match.group(1).lower())
    return bool(seen & {"sent", "date"}) and bool(seen & {"to", "subject", "cc"})


def _before_trailing_quote(lines: list[str], end: int) -> int:
    """`end` moved up past a trailing block of quoted and blank lines."""
    cut = end
    while cut > 0 and (not lines[cut - 1].strip() or lines[cut - 1].lstrip().startswith(">")):
        cut -= 1
    # only blank lines: nothing quoted to take away
    if all(not line.strip() for line in lines[cut:end]):
        return end
    return cut


def _before_signature(lines: list[str], end: int) -> int:
    """`end` moved up to the last signature delimiter, or past a trailing
    "Sent from my ..." line."""
    for index in range(end - 1, -1, -1):
        line = lines[index]
        # "-- " is the delimiter; a bare "--" (the space lost on the way) only
        # when a short block follows, as a signature is
        if line == "-- " or (line == "--" and end - index <= MAX_SIGNATURE_LINES):
            return index
    last = end
    while last > 0 and not lines[last - 1].strip():
        last -= 1
    if last > 0 and _SENT_FROM.match(lines[last - 1].strip()):
        return last - 1
    return end
