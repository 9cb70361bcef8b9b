"""Inbound email parsing on raw bytes: the body chosen and decoded, headers
decoded, attachments kept or refused by size, delivery reports read as
bounces, auto-replies flagged, the chat view trimmed, and bad or cut input
parsed as far as it goes without raising."""
from __future__ import annotations

import base64
import hashlib
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.email_mime import ParsedEmail, message_ids, normalize_message_id, parse_email
from channels.email_trim import visible_text
from tests.channels import mails

CAP = 1_000_000


def parse(raw: bytes, **options: int | bool) -> ParsedEmail:
    return parse_email(raw, max_attachment_bytes=options.pop("cap", CAP), **options)  # type: ignore[arg-type]


# -- ids ---------------------------------------------------------------------------

def test_message_ids_are_normalized() -> None:
    assert normalize_message_id("<abc@host>") == "abc@host"
    assert normalize_message_id(" abc@host ") == "abc@host"
    assert normalize_message_id('<abc@host> (Ann\'s message)') == "abc@host"
    for garbage in (None, "", "   ", "<>", "two words@host", "<a b@host>", "x" * 1000):
        assert normalize_message_id(garbage) is None
    assert message_ids("<a@x>\r\n <b@y> <a@x>") == ("a@x", "b@y")
    assert message_ids('Your message of "Mon, 1 Jan" a@x') == ("a@x",)
    assert message_ids(None) == () and message_ids("no ids here") == ()


# -- bodies and headers ------------------------------------------------------------

def test_plain_message_headers() -> None:
    raw = mails.plain(extra={"Cc": "Bob <BOB@Example.com>, ann@example.com",
                             "Reply-To": "Ann <Replies@Example.com>",
                             "Delivered-To": "Sales@Bidi.test", "X-Original-To": "team@bidi.test",
                             "In-Reply-To": "<ours-1@bidi.test>",
                             "References": "<ours-0@bidi.test>\r\n <ours-1@bidi.test>"})
    parsed = parse(raw)
    assert (parsed.message_id, parsed.message_id_generated) == ("m1@example.com", False)
    assert (parsed.from_address, parsed.from_name) == ("ann@example.com", "Ann Example")
    assert parsed.to == ("sales@bidi.test",)
    assert parsed.cc == ("bob@example.com", "ann@example.com")
    assert parsed.reply_to == ("replies@example.com",)
    assert parsed.delivered_to == ("sales@bidi.test", "team@bidi.test")
    assert parsed.in_reply_to == ("ours-1@bidi.test",)
    assert parsed.references == ("ours-0@bidi.test", "ours-1@bidi.test")
    assert parsed.subject == "Pricing"
    assert parsed.date == datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    assert parsed.text == "Hello,\n\nWhat does the Pro plan cost?\n\nAnn\n"
    assert parsed.html is None and parsed.attachments == () and parsed.defects == ()
    assert parsed.auto_submitted is None and parsed.bounce is None
    assert parsed.size == len(raw) and not parsed.truncated


def test_alternative_prefers_plain_and_keeps_html() -> None:
    parsed = parse(mails.alternative(text="Plain words.\n", html="<p>HTML <b>words</b>.</p>"))
    assert parsed.text == "Plain words.\n"
    assert parsed.html == "<p>HTML <b>words</b>.</p>"
    assert parsed.attachments == ()


def test_html_only_is_converted_readably() -> None:
    html = ("<html><body><p>Hello Bob,</p><p>Our options:</p>"
            "<ul><li>Starter</li><li>Pro</li></ul>"
            '<p>See <a href="https://bidi.test/pricing?plan=pro">the pricing page</a>.</p>'
            "<p>Ann</p></body></html>")
    parsed = parse(mails.html_only(html=html))
    assert parsed.html is not None and "<ul>" in parsed.html
    lines = [line.strip() for line in parsed.text.splitlines()]
    assert lines[0] == "Hello Bob,"
    assert "* Starter" in lines and "* Pro" in lines
    assert "See [the pricing page](https://bidi.test/pricing?plan=pro)." in lines
    assert "" in lines  # paragraphs stay apart
    assert "<" not in parsed.text.replace("<https", "")


def test_nested_mixed_related_alternative() -> None:
    parsed = parse(mails.mixed_related())
    assert parsed.text == "See the chart below.\n"
    assert parsed.html is not None and "cid:chart@x" in parsed.html
    image, pdf = parsed.attachments
    assert (image.name, image.mime_type, image.inline, image.content_id) == (
        "chart.png", "image/png", True, "chart@x")
    assert image.content is not None and image.content.startswith(b"\x89PNG")
    assert (pdf.name, pdf.mime_type, pdf.inline, pdf.content) == (
        "quote.pdf", "application/pdf", False, mails.PDF)


@pytest.mark.parametrize(("charset", "text"), [
    ("iso-8859-1", "Grüße aus Köln, à bientôt\n"),
    ("windows-1252", "Price: 40 € – “quoted” …\n"),
    ("koi8-r", "Здравствуйте, сколько стоит?\n"),
])
def test_non_utf8_charsets(charset: str, text: str) -> None:
    for encoding in ("8bit", "quoted-printable", "base64"):
        parsed = parse(mails.plain(body=text, charset=charset, encoding=encoding))
        assert parsed.text == text, (charset, encoding)
        assert parsed.defects == ()


def test_windows_1252_bytes_declared_as_latin1() -> None:
    raw = mails.plain(body="x", charset="iso-8859-1").replace(b"\r\n\r\nx", b"\r\n\r\n40 \x80\r\n")
    assert parse(raw).text == "40 €\n"


def test_rfc2047_subject_and_name_in_iso_8859_1() -> None:
    raw = mails.plain(subject="=?ISO-8859-1?Q?Angebot_f=FCr_M=FCller?=\r\n =?ISO-8859-1?Q?_GmbH?=",
                      sender="=?ISO-8859-1?Q?J=F6rg_M=FCller?= <Joerg@Example.de>")
    parsed = parse(raw)
    assert parsed.subject == "Angebot für Müller GmbH"
    assert (parsed.from_name, parsed.from_address) == ("Jörg Müller", "joerg@example.de")


def test_raw_8bit_headers_and_encoded_commas() -> None:
    raw = mails.plain(subject="Grüße aus Köln",
                      sender='"=?utf-8?q?M=C3=BCller=2C_J=C3=B6rg?=" <j@x.de>, other@y.de')
    parsed = parse(raw)
    assert parsed.subject == "Grüße aus Köln"  # RFC 6532 UTF-8 as sent
    assert (parsed.from_name, parsed.from_address) == ("Müller, Jörg", "j@x.de")
    legacy = mails.plain(subject="x").replace(b"Subject: x",
                                              b"Subject: Gr\xfc\xdfe =?x-unknown?q?abc?= end")
    assert parse(legacy).subject == "Grüße abc end"  # windows-1252 bytes, unknown charset word


def test_quoted_printable_and_base64_bodies() -> None:
    body = "A long line " + "é" * 100 + " ends here.\n\nBye\n"
    for encoding in ("quoted-printable", "base64"):
        raw = mails.plain(body=body, encoding=encoding)
        assert "é".encode() not in raw
        assert parse(raw).text == body


# -- attachments -------------------------------------------------------------------

def test_attachment_kept_with_name_type_size_content() -> None:
    (pdf,) = parse(mails.with_attachment()).attachments
    assert (pdf.name, pdf.mime_type, pdf.size, pdf.content, pdf.error, pdf.inline) == (
        "quote.pdf", "application/pdf", len(mails.PDF), mails.PDF, None, False)


def test_attachment_over_the_cap_has_no_content_but_a_size() -> None:
    (pdf,) = parse(mails.with_attachment(), cap=len(mails.PDF) - 1).attachments
    assert (pdf.content, pdf.error, pdf.size, pdf.name) == (
        None, "too_large", len(mails.PDF), "quote.pdf")


def test_attachment_names_are_decoded_and_safe() -> None:
    cases = {
        "attachment; filename*=UTF-8''Preis%C3%BCbersicht%202026.pdf": "Preisübersicht 2026.pdf",
        'attachment; filename="=?UTF-8?B?'
        + base64.b64encode("Angebot für Sie.pdf".encode()).decode() + '?="': "Angebot für Sie.pdf",
        'attachment; filename="..\\\\..\\\\windows\\\\evil.exe"': "evil.exe",
        'attachment; filename="/etc/passwd"': "passwd",
        'attachment; filename=".."': None,
    }
    for disposition, name in cases.items():
        (found,) = parse(mails.with_attachment(name="x", disposition=disposition)).attachments
        assert found.name == name, disposition


# -- bounces and auto-replies ------------------------------------------------------

@pytest.mark.parametrize("returned", ["message", "headers"])
def test_dsn_bounce(returned: str) -> None:
    parsed = parse(mails.dsn(returned=returned))
    bounce = parsed.bounce
    assert bounce is not None
    assert bounce.original_message_id == "ours-1@bidi.test"
    assert (bounce.recipient, bounce.status, bounce.action) == (
        "gone@example.org", "5.1.1", "failed")
    assert bounce.diagnostic == "smtp; 550 5.1.1 <gone@example.org>: user unknown"
    assert parsed.auto_submitted == "auto-replied"
    assert parsed.text.startswith("This is the mail system")
    assert parsed.attachments == ()  # the report's machine parts are the bounce, not files


def test_dsn_without_returned_part_falls_back_to_references() -> None:
    raw = mails.dsn(returned="headers", original_message_id="not an id",
                    extra={"References": "<ours-0@bidi.test> <ours-9@bidi.test>"})
    bounce = parse(raw).bounce
    assert bounce is not None and bounce.original_message_id == "ours-9@bidi.test"


def test_free_text_bounce_from_mailer_daemon() -> None:
    parsed = parse(mails.daemon_bounce())
    bounce = parsed.bounce
    assert bounce is not None
    assert (bounce.original_message_id, bounce.recipient, bounce.status, bounce.action) == (
        "ours-2@bidi.test", "nobody@example.org", "5.1.1", "failed")
    assert bounce.diagnostic == "550 5.1.1 sorry, no mailbox here by that name"
    assert parsed.auto_submitted == "auto-generated"


def test_an_ordinary_message_is_no_bounce() -> None:
    raw = mails.plain(body="Undeliverable? No, it arrived. Message-ID: <x@y>\n",
                      subject="Undeliverable")
    assert parse(raw).bounce is None


@pytest.mark.parametrize(("extra", "expected"), [
    ({"Auto-Submitted": "auto-replied"}, "auto-replied"),
    ({"Auto-Submitted": "Auto-Generated; owner-email=x@y"}, "auto-generated"),
    ({"X-Autoreply": "yes"}, "auto-replied"),
    ({"X-Autorespond": "Out of office"}, "auto-replied"),
    ({"Precedence": "auto_reply"}, "auto-replied"),
    ({"Auto-Submitted": "no"}, None),
    ({"Precedence": "bulk"}, None),
    ({}, None),
])
def test_auto_replies(extra: dict[str, str], expected: str | None) -> None:
    assert parse(mails.plain(extra=extra)).auto_submitted == expected


# -- bad input ---------------------------------------------------------------------

def test_broken_and_missing_boundaries() -> None:
    unclosed = mails.with_attachment(close=False)
    parsed = parse(unclosed)
    assert parsed.text == "The quote is attached.\n"
    assert parsed.attachments[0].content == mails.PDF  # not cut: only unclosed
    assert any("close boundary not found" in d for d in parsed.defects)
    wrong = mails.alternative().replace(b'boundary="alt-1"', b'boundary="other"')
    parsed = parse(wrong)
    assert "Plain words." in parsed.text and parsed.defects
    assert parsed.attachments == ()  # the unsplit body is the text, not a file too


def test_garbage_headers() -> None:
    raw = (b"From: <<<@@@>>>, \"unterminated\r\nTo: ,,,;;;\r\nSubject: =?utf-8?Q?broken\r\n"
           b"Date: the day after tomorrow\r\nMessage-ID: <>\r\n\x00\x01junk line\r\n"
           b"Content-Type: text/plain; charset=\"\r\n\r\nbody\r\n")
    parsed = parse(raw)
    assert parsed.date is None and parsed.message_id_generated
    assert parsed.to == () and parsed.from_address is None
    assert parsed.defects


def test_unknown_charset() -> None:
    parsed = parse(mails.plain(body="naïve café\n", charset="utf-8").replace(
        b"charset=utf-8", b"charset=x-unknown"))
    assert parsed.text == "naïve café\n"
    assert any("x-unknown" in d for d in parsed.defects)


def test_a_charset_that_is_not_a_name() -> None:
    raw = mails.plain(body="plain words\n").replace(b"charset=utf-8", b'charset="ut\x00f"')
    parsed = parse(raw)
    assert parsed.text == "plain words\n" and any("unknown charset" in d for d in parsed.defects)


def test_huge_single_line_body_is_capped() -> None:
    raw = mails.plain(body="a" * 2_000_000)
    parsed = parse(raw, max_text_chars=100_000)
    assert parsed.text == "a" * 100_000 and parsed.visible_text == parsed.text
    assert any("cut at 100000" in d for d in parsed.defects)
    assert parsed.size == len(raw)


def test_missing_message_id_is_generated_and_stable() -> None:
    raw = mails.plain(message_id=None)
    first, second = parse(raw), parse(raw)
    assert first.message_id_generated and first.message_id == second.message_id
    assert first.message_id == hashlib.sha256(raw).hexdigest()[:32] + "@missing-message-id.invalid"
    assert parse(mails.plain(message_id=None, subject="Other")).message_id != first.message_id


def test_cut_bytes_keep_the_text_before_the_cut() -> None:
    full = mails.with_attachment()
    cut_at = full.index(b"Content-Transfer-Encoding: base64") + 200
    parsed = parse(full[:cut_at], truncated=True, full_size=len(full))
    assert parsed.truncated and parsed.size == len(full)
    assert parsed.text == "The quote is attached.\n"
    (pdf,) = parsed.attachments
    assert (pdf.name, pdf.content, pdf.error) == ("quote.pdf", None, "truncated")
    body_cut = parse(mails.plain(body="First line.\nSecond line.\n")[:-8], truncated=True)
    assert body_cut.text.startswith("First line.\nSec")


def test_cut_after_a_closed_multipart_cuts_nothing() -> None:
    full = mails.with_attachment()
    parsed = parse(full[:full.index(b"--mix-1--") + len(b"--mix-1--")], truncated=True)
    assert parsed.attachments[0].content == mails.PDF


@pytest.mark.parametrize("raw", [
    b"", b"\r\n\r\n", b"\x00" * 100, bytes(range(256)) * 10, b"%PDF-1.4 binary\xff\xfe",
    b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n--x\r\n--x--",
    b"Content-Type: multipart/mixed\r\n\r\nno boundary at all",
    b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64===\r\n",
    b"Content-Type: message/rfc822\r\n\r\nFrom: x\r\n",
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n--r--",
])
def test_junk_never_raises(raw: bytes) -> None:
    parsed = parse(raw, truncated=True)
    assert parsed.message_id_generated and parsed.message_id.endswith(".invalid")
    assert isinstance(parsed.text, str) and "\x00" not in parsed.text


SAMPLES = [mails.plain(), mails.alternative(), mails.mixed_related(), mails.with_attachment(),
           mails.dsn(), mails.dsn(returned="headers"), mails.daemon_bounce(),
           mails.html_only(html="<p>Hi <a href='https://x.io'>x</a></p>")]


@settings(max_examples=300, deadline=None)
@given(sample=st.sampled_from(SAMPLES), cut=st.integers(min_value=0, max_value=9000),
       flips=st.lists(st.tuples(st.integers(min_value=0, max_value=9000),
                                st.integers(min_value=0, max_value=255)), max_size=8))
def test_mangled_mail_never_raises(sample: bytes, cut: int, flips: list[tuple[int, int]]) -> None:
    mangled = bytearray(sample[:cut])
    for position, byte in flips:
        if position < len(mangled):
            mangled[position] = byte
    parsed = parse(bytes(mangled), truncated=cut < len(sample), cap=1000)
    assert parsed.message_id and "\x00" not in parsed.text + parsed.subject
    assert all(a.content is None or len(a.content) <= 1000 for a in parsed.attachments)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=2000))
def test_random_bytes_never_raise(raw: bytes) -> None:
    assert isinstance(parse(raw).text, str)


def test_deep_nesting_never_raises() -> None:
    # around the recursion limit, where one walk of the tree may fail and the next not
    for depth in (*range(850, 1010, 20), 3000):
        head = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
                        for i in range(depth))
        parsed = parse(head + b"Content-Type: text/plain\r\n\r\ndeep\r\n", truncated=True)
        assert parsed.text in ("deep", "") and parsed.defects


def test_a_sent_id_in_the_made_up_domain_is_not_generated() -> None:
    parsed = parse(mails.plain(message_id="<abc@missing-message-id.invalid>"))
    assert parsed.message_id == "abc@missing-message-id.invalid"
    assert not parsed.message_id_generated


# -- the chat view -----------------------------------------------------------------

def test_trims_an_attribution_and_quote() -> None:
    text = ("Tuesday works for us.\n\nOn Mon, 1 Jan 2026, Ann <a@x> wrote:\n"
            "> Can we meet next week?\n>\n> Ann\n")
    parsed = parse(mails.plain(body=text))
    assert parsed.visible_text == "Tuesday works for us."
    assert parsed.text == text  # the full body is kept
    wrapped = ("Yes.\n\nOn Mon, Jan 1, 2026 at 10:00 AM Ann Example <\n"
               "ann@example.com> wrote:\n> Hi\n")
    assert visible_text(wrapped) == "Yes."


def test_trims_outlook_blocks() -> None:
    original = ("Sounds good.\n\n-----Original Message-----\nFrom: Ann <a@x>\n"
                "Sent: Monday, January 1, 2026 10:00 AM\nTo: Bob\nSubject: meet\n\nCan we meet?\n")
    assert visible_text(original) == "Sounds good."
    underscores = "Sounds good.\n\n" + "_" * 32 + "\nFrom: Ann <a@x>\nSent: Monday\nTo: Bob\n\nQ\n"
    assert visible_text(underscores) == "Sounds good."
    block = ("Sounds good.\n\n*From:* Ann <a@x>\n*Sent:* Monday, January 1, 2026\n"
             "*To:* Bob\n*Subject:* meet\n\nCan we meet?\n")
    assert visible_text(block) == "Sounds good."


def test_trims_a_signature_and_a_trailing_quote() -> None:
    signed = "See you then.\n\n-- \nBob Smith\nACME Sales\n+1 555 0100\n"
    assert visible_text(signed) == "See you then."
    assert visible_text("Agreed.\n\n> earlier text\n> more\n") == "Agreed."
    assert visible_text("Agreed.\n\nSent from my iPhone\n") == "Agreed."
    assert visible_text("Agreed.\n--\nBob\n") == "Agreed."
    long_tail = "Steps:\n--\n" + "".join(f"step {i}\n" for i in range(12))
    assert visible_text(long_tail) == long_tail.strip()  # a bare "--" before a long text


def test_keeps_what_is_not_a_quote() -> None:
    untouched = ("Hello,\n\nWe need:\n- 40 seats\n- SSO\nThanks, that is all.\n"
                 "From: our side, Friday is the deadline.\nWarning: legal wants a DPA.\n"
                 "\nBest,\nBob")
    assert visible_text(untouched) == untouched
    interleaved = "> Price?\n40 EUR a seat.\n> Trial?\n14 days.\n"
    assert visible_text(interleaved) == interleaved.strip()
    assert visible_text("> only a quote\n> here\n") == "> only a quote\n> here\n"
    assert visible_text("On Mon, Ann wrote:\n> hi\n") == "On Mon, Ann wrote:\n> hi\n"


def test_html_reply_is_trimmed_too() -> None:
    html = ("<div>Tuesday works.</div><div class=gmail_quote><div>On Mon, 1 Jan 2026, Ann "
            "&lt;a@x&gt; wrote:</div><blockquote>Can we meet?</blockquote></div>")
    assert parse(mails.html_only(html=html)).visible_text == "Tuesday works."


# -- speed -------------------------------------------------------------------------

def test_parsing_is_linear_in_size() -> None:
    def seconds(raw: bytes) -> float:  # the best of three: a busy machine only adds time
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            parse(raw, max_text_chars=10_000_000)
            best = min(best, time.perf_counter() - start)
        return best
    # long lines that start like an attribution: the trap of backtracking patterns
    small = mails.plain(body=("On " + "word " * 2_000 + "\n") * 20)
    large = mails.plain(body=("On " + "word " * 2_000 + "\n") * 200)
    assert seconds(large) < 40 * max(seconds(small), 0.001)
