"""gateway.replies: reading what a human wrote, spotting automatic mail, and the decision it carries."""

from __future__ import annotations

import json
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import replies
from gateway.replies import _automatic, automated_kind, extract_reply, html_to_text, parse_decision

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
TOOLS = CORPUS.parent / "tools"


def message(
    body: str | None = None, *, html: str | None = None, charset: str = "utf-8", cte: str | None = None, **headers: str
) -> bytes:
    msg = EmailMessage()
    msg["From"] = headers.pop("From", "Alice <alice@example.com>")
    msg["To"] = "replies+tag@example.test"
    msg["Subject"] = headers.pop("Subject", "Re: Approval needed: send_email [#ABCD2345]")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    if body is not None:
        msg.set_content(body, charset=charset, cte=cte)
    if html is not None:
        if body is None:
            msg.set_content(html, subtype="html")
        else:
            msg.add_alternative(html, subtype="html")
    return bytes(msg)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "Approved\n\nOn Mon, Apr 2, 2012 at 6:26 PM, Gateway <gw@example.test> wrote:\n> Approve send_email?\n",
            "Approved",
        ),
        (
            "No, shorter please.\n\n-----Original Message-----\nFrom: Gateway\nSent: Monday\nTo: me\n\nApprove?",
            "No, shorter please.",
        ),
        (
            "Yes\n\n________________________________\nFrom: Gateway <gw@example.test>\nSent: Monday, 2 April\n"
            "To: Alice\nSubject: Approval needed\n\nApprove?",
            "Yes",
        ),
        ("Ja, passt.\n\nAm 02.04.2012 um 14:20 schrieb Gateway <gw@example.test>:\n> Freigeben?", "Ja, passt."),
        ("Oui\n\nLe 2 avr. 2012 à 14:20, Gateway <gw@example.test> a écrit :\n> ?", "Oui"),
        ("Sí\n\nEl 2 abr 2012, a las 14:20, Gateway <gw@example.test> escribió:\n> ?", "Sí"),
        (
            "OK\n\nOn Mon, Apr 2, 2012 at 6:26 PM, A Very Long Sender Name From The Accounting Department\n"
            "<gw@example.test> wrote:\n> quoted",
            "OK",
        ),
        ("lgtm\n\nSent from my iPhone\n\n> On 2 Apr 2012, at 14:20, Gateway wrote:\n> ?", "lgtm"),
        ("Reject: wrong recipient.\n-- \nAlice Example\nHead of Finance\n", "Reject: wrong recipient."),
        ("> Approve send_email?\n\nYes, go ahead.\n", "Yes, go ahead."),
        ("Approved. Budget: 500 EUR.", "Approved. Budget: 500 EUR."),
    ],
)
def test_plain_replies(body: str, expected: str) -> None:
    assert extract_reply(body) == expected
    assert extract_reply(message(body)) == expected


def test_a_human_note_with_fields_is_not_a_quote_header() -> None:
    body = "Please use these details instead:\nName: Bob\nEmail: bob@example.com\nPhone: 555-0100\n"
    assert extract_reply(body) == body.strip()


def test_html_only_gmail_reply() -> None:
    html = (
        '<div dir="ltr">Approved, <b>thanks</b></div><br><div class="gmail_quote">On Mon, Apr 2, 2012 '
        "Gateway &lt;gw@example.test&gt; wrote:<blockquote>Approve?</blockquote></div>"
    )
    assert extract_reply(message(html=html)) == "Approved, thanks"
    assert extract_reply(html, html=True) == "Approved, thanks"


def test_outlook_html_with_single_quoted_attributes() -> None:
    html = (
        "<div class=WordSection1><p class=MsoNormal>No, not yet.<o:p></o:p></p>"
        "<div style='border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0in 0in 0in'>"
        "<p><b>From:</b> Gateway<br><b>Sent:</b> Monday</p></div><p>Approve?</p></div>"
    )
    assert extract_reply(html, html=True) == "No, not yet."


def test_base64_and_quoted_printable_and_latin1() -> None:
    assert extract_reply(message("Grüße, approved\n\nOn Mon, Gateway <g@x.test> wrote:\n> q", cte="base64")) == (
        "Grüße, approved"
    )
    assert extract_reply(message("Café ok\n", charset="iso-8859-1", cte="quoted-printable")) == "Café ok"


def test_wrongly_declared_charset_falls_back() -> None:
    raw = (
        b"From: a@example.com\r\nSubject: Re: x\r\nContent-Type: text/plain; charset=big5\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n" + "Genehmigt – schön\r\n".encode() + b"\r\n"
    )
    assert extract_reply(raw) == "Genehmigt – schön"
    unknown = raw.replace(b"big5", b"x-no-such-charset")
    assert extract_reply(unknown) == "Genehmigt – schön"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"garbage without headers",
        b'Content-Type: multipart/alternative; boundary="x"\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhi',
        b'Content-Type: text/plain; charset="\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!',
        b"Subject: =?utf-8?b?broken?=\r\nFrom: <<>>\r\n\r\n\xff\xfe\x00",
    ],
)
def test_malformed_messages_never_raise(raw: bytes) -> None:
    assert isinstance(extract_reply(raw), str)
    assert automated_kind(raw) in (None, "auto_reply", "bounce")


def test_html_to_text_never_interprets_markup() -> None:
    assert html_to_text("<p>a</p><script>alert(1)</script><p>b &amp; c</p>") == "a\nb & c"


@pytest.mark.parametrize(
    ("headers", "kind"),
    [
        ({"Auto_Submitted": "auto-replied"}, "auto_reply"),
        ({"Auto_Submitted": "no"}, None),
        ({"X_Autoreply": "yes"}, "auto_reply"),
        ({"Precedence": "bulk"}, "auto_reply"),
        ({"Subject": "Out of Office: Re: Approval needed"}, "auto_reply"),
        ({"Subject": "Automatische Antwort: Freigabe"}, "auto_reply"),
        ({"Subject": "Réponse automatique : absent"}, "auto_reply"),
        ({"From": "MAILER-DAEMON@mx.example.com", "Subject": "Undelivered Mail Returned to Sender"}, "bounce"),
        ({"From": "postmaster@example.com", "Subject": "Delivery Status Notification (Failure)"}, "bounce"),
        ({"Return_Path": "<>"}, "auto_reply"),
        ({"X_Failed_Recipients": "bob@example.com"}, "bounce"),
        ({}, None),
    ],
)
def test_automated_kind(headers: dict[str, str], kind: str | None) -> None:
    assert automated_kind(message("Thanks, noted.", **headers)) == kind


def test_delivery_status_report_is_a_bounce() -> None:
    raw = (
        b"From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\r\nSubject: failure\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nCould not deliver.\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
        b"Final-Recipient: rfc822; bob@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n--b--\r\n"
    )
    assert automated_kind(raw) == "bounce"


@pytest.mark.parametrize(
    ("text", "decision", "comment"),
    [
        ("Approved", "approve", ""),
        ("approve. Thanks!", "approve", "Thanks!"),
        ("Yes, go ahead", "approve", "go ahead"),
        ("LGTM", "approve", ""),
        ("👍", "approve", ""),
        ("👍🏽 nice", "approve", "nice"),
        ("✅", "approve", ""),
        ("ok", "approve", ""),
        ("Go ahead and send it", "approve", "and send it"),
        ("Ja", "approve", ""),
        ("Oui, parfait", "approve", "parfait"),
        ("Sí", "approve", ""),
        ("はい、送ってください", "approve", "送ってください"),
        ("同意", "approve", ""),
        ("No, change the subject line first", "reject", "No, change the subject line first"),
        ("Please make it shorter.", "reject", "Please make it shorter."),
        ("ok but change the subject", "reject", "ok but change the subject"),
        ("Yes, except the attachment", "reject", "Yes, except the attachment"),
        ("Approve? Really?", "reject", "Approve? Really?"),
        ("Not approved", "reject", "Not approved"),
        ("yesterday it was fine", "reject", "yesterday it was fine"),
        ("okayish", "reject", "okayish"),
        ("", "reject", ""),
    ],
)
def test_parse_decision(text: str, decision: str, comment: str) -> None:
    assert parse_decision(text) == (decision, comment)


# --- opt-in: the real fixtures in ../shared/corpus (present in CI; never copied into the project) -------------


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is not beside the project")
@pytest.mark.parametrize(("corpus", "floor"), [("replies.jsonl", 1.0), ("replies_more.jsonl", 0.95)])
def test_reply_corpus_lenient_score_and_no_leaked_quote(corpus: str, floor: float) -> None:
    sys.path.insert(0, str(TOOLS))
    import score_replies

    records = [json.loads(line) for line in (CORPUS / corpus).read_text().splitlines() if line.strip()]
    run = score_replies.project()
    judged = [(rec["id"], *score_replies.judge(rec, run(rec) or "")) for rec in records]
    lenient = sum(j[2] for j in judged)
    assert lenient / len(records) >= floor, [j[0] for j in judged if not j[2]]
    assert [j[0] for j in judged if j[3]] == []  # no quoted history in any agent's feedback


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is not beside the project")
def test_automated_corpus_all_right_and_no_human_flagged() -> None:
    def raw(rec: dict) -> bytes:
        return rec["raw"].encode(rec.get("raw_encoding", "utf-8").split(" ")[0], "surrogateescape")

    automated = [json.loads(x) for x in (CORPUS / "automated.jsonl").read_text().splitlines() if x.strip()]
    wrong = [(r["id"], r["kind"], automated_kind(raw(r))) for r in automated if automated_kind(raw(r)) != r["kind"]]
    assert wrong == []
    replies = [
        json.loads(x)
        for name in ("replies.jsonl", "replies_more.jsonl")
        for x in (CORPUS / name).read_text().splitlines()
        if x.strip()
    ]
    flagged = [r["id"] for r in replies if r["is_full_message"] and automated_kind(raw(r)) is not None]
    assert flagged == []
    assert len(automated) == 171


@pytest.mark.parametrize("first", ["No, the numbers are wrong.", "No.", "no", "Em breve!", "On it?", "Op, wait"])
def test_a_reply_starting_like_an_attribution_word_is_kept(first: str) -> None:
    # "No" (Portuguese), "Em", "On" start attributions in some languages; a whole sentence followed by a blank
    # line and then the real attribution is the reply itself.
    body = f"{first}\n\nOn Mon, Jan 1, 2026 at 10:00 AM Bob <bob@example.com> wrote:\n> Approve sending it?\n"
    assert extract_reply(body) == first


# --- never an exception (Hypothesis): arbitrary bytes, MIME trees, headers and charsets ----------------------

_CHARSETS = st.sampled_from(
    ["utf-8", "iso-8859-1", "windows-1252", "us-ascii", "big5", "utf-16", "utf\x00-8", "x-unknown", "", "ut f8", "é"]
)
_CTES = st.sampled_from(["7bit", "8bit", "quoted-printable", "base64", "x-uuencode", "binary", "bogus", ""])
_CTYPES = st.sampled_from(["text/plain", "text/html", "message/rfc822", "message/delivery-status", "application/pdf"])
_HEADER_NAMES = st.sampled_from(
    [
        "Subject",
        "From",
        "To",
        "Cc",
        "Auto-Submitted",
        "Precedence",
        "Return-Path",
        "X-Autoreply",
        "Content-Type",
        "Content-Disposition",
        "Message-ID",
        "X-Failed-Recipients",
        "List-Id",
        "Reply-To",
    ]
)
_HEADER_VALUES = st.one_of(
    st.text(max_size=80).map(lambda t: t.replace("\r", " ").replace("\n", " ")),
    st.sampled_from(["=?utf-8?q?=FF=FE?=", "=?bogus?b?!!!?=", "=?utf-8?b?", "<>", "auto-replied", ";;;", "\x00"]),
)


@st.composite
def mime_trees(draw: st.DrawFn, depth: int = 0) -> bytes:
    """A message as a client, a bounce or a broken robot might write it: any nesting, any charset label, any
    transfer encoding, bodies of any bytes, headers of any text."""
    headers = [f"{n}: {v}" for n, v in draw(st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), max_size=6))]
    if depth < 3 and draw(st.booleans()):
        boundary = "b" + str(depth)
        parts = draw(st.lists(mime_trees(depth + 1), min_size=0, max_size=3))
        subtype = draw(st.sampled_from(["mixed", "alternative", "report", "related"]))
        head = [*headers, f'Content-Type: multipart/{subtype}; boundary="{boundary}"']
        body = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
        if draw(st.booleans()):
            body += b"--" + boundary.encode() + b"--\r\n"
        return "\r\n".join(head).encode("utf-8", "surrogatepass") + b"\r\n\r\n" + body
    ctype, charset, cte = draw(_CTYPES), draw(_CHARSETS), draw(_CTES)
    head = [*headers, f'Content-Type: {ctype}; charset="{charset}"', f"Content-Transfer-Encoding: {cte}"]
    body = draw(
        st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")))
    )
    return "\r\n".join(head).encode("utf-8", "surrogatepass") + b"\r\n\r\n" + body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mime_trees())
def test_the_reply_functions_never_raise_on_any_mime_tree(raw: bytes) -> None:
    # The readers themselves, not only the public functions (whose last resort would hide a reader's fault).
    parsed = replies.parse_message(raw)
    assert isinstance(replies._read(parsed, html=False).text, str)
    assert _automatic._automated_kind(parsed) in (None, "auto_reply", "bounce")
    text = extract_reply(raw)
    assert isinstance(text, str)
    assert automated_kind(raw) in (None, "auto_reply", "bounce")
    decision, comment = parse_decision(text)
    assert decision in ("approve", "reject") and isinstance(comment, str)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_the_reply_functions_never_raise_on_any_bytes(raw: bytes) -> None:
    assert isinstance(extract_reply(raw), str)
    assert automated_kind(raw) in (None, "auto_reply", "bounce")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=2000), st.booleans())
def test_the_reply_functions_never_raise_on_any_text(text: str, html: bool) -> None:
    assert isinstance(extract_reply(text, html=html), str)
    decision, comment = parse_decision(text)
    assert decision in ("approve", "reject")
    if decision == "reject":
        assert comment == text.strip()  # a rejection keeps all of the new text: the agent's feedback


def test_a_nul_in_a_charset_name_still_gives_the_text() -> None:
    raw = (
        b'From: a@example.com\r\nContent-Type: text/plain; charset="utf\x00-8"\r\n'
        b"Content-Transfer-Encoding: 8bit\r\n\r\nNein, zu teuer: nur die H\xe4lfte.\r\n"
    )
    assert extract_reply(raw) == "Nein, zu teuer: nur die Hälfte."
