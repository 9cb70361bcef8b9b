"""Outgoing replies: ids, subjects and References chains as a reply needs
them, the text marked up as HTML, and the composed bytes read back by the
stdlib and by our own parser with every header, both parts and the
encodings intact (CRLF only, 7-bit, short lines)."""
from __future__ import annotations

import email
import re
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest

from channels.email_compose import (
    compose,
    new_message_id,
    references_for,
    reply_subject,
    text_to_html,
)
from channels.email_mime import normalize_message_id, parse_email
from core.errors import Invalid

# longer than a 78-octet header line on its own
OUTLOOK_ID = ("DB9PR10MB1234567890ABCDEF1234567890ABCDEF12345678"
              "@DB9PR10MB1234.EURPRD10.PROD.OUTLOOK.COM")


def test_new_message_ids_are_unique_and_normalized() -> None:
    ids = {new_message_id("Bidi.test") for _ in range(1000)}
    assert len(ids) == 1000
    for made in ids:
        assert made.endswith("@bidi.test") and normalize_message_id(made) == made
        assert re.fullmatch(r"[0-9a-f]{32}@bidi\.test", made)
    for bad in ("", "bad domain", "a@b", "<x>", "a..b"):
        with pytest.raises(Invalid):
            new_message_id(bad)


@pytest.mark.parametrize(("parent", "expected"), [
    ("Pricing", "Re: Pricing"),
    ("Re: Pricing", "Re: Pricing"),
    ("Re: Re: Pricing", "Re: Pricing"),
    ("RE: Pricing", "Re: Pricing"),
    ("re:Pricing", "Re: Pricing"),
    ("Re[2]: Pricing", "Re: Pricing"),
    ("Re (3) : Pricing", "Re: Pricing"),
    ("Aw: Re: Angebot", "Re: Angebot"),
    ("SV: Tilbud", "Re: Tilbud"),
    ("回复：报价", "Re: 报价"),
    ("Fwd: Pricing", "Re: Fwd: Pricing"),
    ("Regarding pricing", "Re: Regarding pricing"),
    ("  Re:   Pricing\r\n  for 2026 ", "Re: Pricing for 2026"),
    ("", "Re: (no subject)"),
    ("Re: ", "Re: (no subject)"),
    ("Re: (no subject)", "Re: (no subject)"),
])
def test_reply_subject(parent: str, expected: str) -> None:
    assert reply_subject(parent) == expected
    assert reply_subject(expected) == expected


def test_references_chain() -> None:
    assert references_for([], "p@x") == ("p@x",)
    assert references_for(["<a@x>", "b@x"], "<p@x>") == ("a@x", "b@x", "p@x")
    assert references_for(["a@x", "p@x", "a@x", "junk id"], "p@x") == ("a@x", "p@x")
    assert references_for(["a@x"], None) == ("a@x",)
    chain = [f"r{i}@x" for i in range(30)]
    kept = references_for(chain, "p@x", limit=20)
    assert len(kept) == 20
    assert kept[0] == "r0@x" and kept[-1] == "p@x" and kept[1:-1] == tuple(chain[-18:])
    assert references_for(chain, "p@x", limit=1) == ("p@x",)
    assert references_for(chain, "p@x", limit=0) == ()


def test_text_to_html() -> None:
    made = text_to_html("Hi <Ann> & co,\n\nSee https://bidi.test/p?a=1&b=2.\n"
                        "Second line (http://x.io/a_(b)).\n\n\nBye\njavascript:alert(1)")
    body = made.split("<body>", 1)[1]
    assert "&lt;Ann&gt; &amp; co," in body and "<Ann>" not in body
    assert '<a href="https://bidi.test/p?a=1&amp;b=2">https://bidi.test/p?a=1&amp;b=2</a>.' in body
    assert '<a href="http://x.io/a_(b">' in body  # the closing bracket is the sentence's
    assert body.count("<p>") == 3 and "<br>" in body
    assert "javascript:alert(1)</p>" in body and 'href="javascript' not in body
    assert text_to_html("").count("<p>") == 0


def reply(**overrides: Any) -> bytes:
    fields: dict[str, Any] = dict(
        from_address="sales@bidi.test", from_name="Jörg Müller", to=["ann@example.com"],
        subject=reply_subject("AW: Angebot für Größe XL"),
        text="Hello Ann,\n\nthe price is 40 € a seat: https://bidi.test/pricing\n\nJörg\n",
        html=None, message_id="ours-2@bidi.test", in_reply_to=OUTLOOK_ID,
        references=references_for([f"thread-{i}-{'x' * 60}@mail.example.com" for i in range(25)],
                                  OUTLOOK_ID),
        reply_to="reply+t0k3n@bidi.test",
        date=datetime(2026, 1, 2, 12, 30, tzinfo=timezone(timedelta(hours=2))))
    fields.update(overrides)
    return compose(**fields)


def test_compose_reads_back_with_the_stdlib() -> None:
    raw = reply()
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg["Message-ID"] == "<ours-2@bidi.test>"
    assert msg["In-Reply-To"] == f"<{OUTLOOK_ID}>"
    assert msg["From"] == "Jörg Müller <sales@bidi.test>"
    assert msg["To"] == "ann@example.com" and msg["Reply-To"] == "reply+t0k3n@bidi.test"
    assert msg["Subject"] == "Re: Angebot für Größe XL"
    assert str(msg["Subject"]).count("Re:") == 1
    assert msg["Date"].datetime == datetime(2026, 1, 2, 10, 30, tzinfo=UTC)
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content().replace("\r\n", "\n") == (  # CRLF on the wire
        "Hello Ann,\n\nthe price is 40 € a seat: https://bidi.test/pricing\n\nJörg\n")
    assert '<a href="https://bidi.test/pricing">' in html.get_content()
    refs = msg["References"].split()
    assert len(refs) == 20 and refs[0] == "<thread-0-" + "x" * 60 + "@mail.example.com>"
    assert refs[-1] == f"<{OUTLOOK_ID}>"


def test_compose_wire_format() -> None:
    raw = reply()
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    lines = raw.split(b"\r\n")
    assert max(len(line) for line in lines) <= 998
    assert all(byte < 128 for byte in raw)  # 7-bit: no relay needs 8BITMIME
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    assert "=?utf-8?" in head  # the subject and the name as encoded words
    references = re.search(r"^References: (.*?)\r\n(?=\S)", head, re.S | re.M)
    assert references is not None
    folded = references.group(1).split("\r\n ")
    assert len(folded) == 20 and all(re.fullmatch(r"<[^<>\s=?]+>", line) for line in folded)


def test_compose_round_trips_through_our_parser() -> None:
    parsed = parse_email(reply(), max_attachment_bytes=1000)
    assert parsed.message_id == "ours-2@bidi.test" and not parsed.message_id_generated
    assert parsed.in_reply_to == (OUTLOOK_ID,)
    assert parsed.references[-1] == OUTLOOK_ID and len(parsed.references) == 20
    assert (parsed.from_address, parsed.from_name) == ("sales@bidi.test", "Jörg Müller")
    assert parsed.subject == "Re: Angebot für Größe XL"
    assert parsed.text.startswith("Hello Ann,\n\nthe price is 40 € a seat")
    assert parsed.html is not None and parsed.attachments == () and parsed.defects == ()


def test_compose_keeps_given_html_and_minimal_headers() -> None:
    raw = reply(html="<p>Custom <b>HTML</b></p>", in_reply_to=None, references=[],
                reply_to=None, from_name=None, subject="Fresh start", date=datetime(2026, 1, 1))
    msg = email.message_from_bytes(raw, policy=policy.default)
    html = msg.get_body(("html",))
    assert html is not None and html.get_content().strip() == "<p>Custom <b>HTML</b></p>"
    assert msg["In-Reply-To"] is None and msg["References"] is None and msg["Reply-To"] is None
    assert msg["From"] == "sales@bidi.test" and msg["Subject"] == "Fresh start"
    assert msg["Date"].datetime == datetime(2026, 1, 1, tzinfo=UTC)


def test_compose_refuses_header_injection_and_bad_values() -> None:
    raw = reply(subject="Hi\r\nBcc: evil@example.org", from_name="Eve\r\nBcc: evil@example.org")
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg["Bcc"] is None and msg["Subject"] == "Hi Bcc: evil@example.org"
    msg = email.message_from_bytes(reply(to=["ann@bücher.example"]), policy=policy.default)
    assert msg["To"] == "ann@xn--bcher-kva.example"  # IDNA, never an encoded word
    for bad in (dict(to=[]), dict(to=["not an address"]), dict(from_address="x"),
                dict(to=["jörg@example.de"]), dict(to=["Ann <ann@example.com>"]),
                dict(message_id="two words"), dict(in_reply_to="<>"),
                dict(references=["ok@x", "bad id"])):
        with pytest.raises(Invalid):
            reply(**bad)
