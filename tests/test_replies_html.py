"""gateway.replies._html: HTML-only replies, the quote containers each client writes (cases written for this
project, after the clients' markup)."""

from __future__ import annotations

import pytest

from gateway.replies import read_reply
from gateway.replies._html import html_to_text, strip_quotes

QUOTED = "Approve sending the invoice to ACME?<br>-- <br>Approval Gateway"


@pytest.mark.parametrize(
    ("client", "markup"),
    [
        (
            "Gmail",
            '<div dir="ltr">Not yet, wait for the PO.</div><br><div class="gmail_quote gmail_quote_container">'
            '<div dir="ltr" class="gmail_attr">On Mon, 16 Mar 2026 at 09:41, Gateway &lt;gw@example.test&gt; wrote:'
            f'<br></div><blockquote class="gmail_quote" style="margin:0 0 0 .8ex">{QUOTED}</blockquote></div>',
        ),
        (
            "Outlook on the web",
            '<div class="elementToProof">Not yet, wait for the PO.</div><div id="appendonsend"></div><hr>'
            '<div id="divRplyFwdMsg" dir="ltr"><b>From:</b> Gateway<br><b>Sent:</b> Monday</div>'
            f"<div>{QUOTED}</div>",
        ),
        (
            "Apple Mail",
            '<div>Not yet, wait for the PO.</div><div><br><blockquote type="cite"><div>On 16 Mar 2026, at 09:41, '
            f"Gateway &lt;gw@example.test&gt; wrote:</div><br><div>{QUOTED}</div></blockquote></div>",
        ),
        (
            "Thunderbird",
            '<p>Not yet, wait for the PO.</p><div class="moz-cite-prefix">On 16/03/2026 09:41, Gateway wrote:<br>'
            f'</div><blockquote type="cite" cite="mid:x@example.test">{QUOTED}</blockquote>',
        ),
        (
            "Yahoo Mail",
            '<div class="ydp1a2b3cyahoo-style-wrap">Not yet, wait for the PO.</div><div id="ydp1a2b3cyahoo_quoted_1"'
            f' class="ydp1a2b3cyahoo_quoted"><div>On Monday, 16 March 2026, Gateway wrote:</div><div>{QUOTED}</div>'
            "</div>",
        ),
        (
            "ProtonMail",
            '<div>Not yet, wait for the PO.</div><div class="protonmail_quote">------- Original Message -------<br>'
            f'<blockquote class="protonmail_quote" type="cite">{QUOTED}</blockquote></div>',
        ),
    ],
)
def test_html_replies_from_each_client(client: str, markup: str) -> None:
    assert read_reply(markup, html=True) == ("Not yet, wait for the PO.", False), client


def test_a_quote_the_human_wrote_below_stays_as_an_inline_reply() -> None:
    markup = (
        "<div>Two things:</div><blockquote>Recipient: billing@acme.example</blockquote>"
        "<div>Use accounts@acme.example instead.</div><blockquote>Amount: 1,200 EUR</blockquote>"
        "<div>That one is right.</div><blockquote>-- Approval Gateway</blockquote>"
    )
    stripped = strip_quotes(markup)
    assert stripped.inline
    text = read_reply(markup, html=True).text
    assert "Use accounts@acme.example instead." in text and "That one is right." in text
    assert "Approval Gateway" not in text  # the trailing quote goes


def test_gmail_signature_under_the_quote_is_not_an_inline_reply() -> None:
    # Gmail with "signature below the quoted text": "-- " and a marked gmail_signature after the quote.
    markup = (
        '<div dir="ltr">Approved.</div><div class="gmail_quote">On Mon, Gateway wrote:<blockquote class="gmail_quote">'
        f'{QUOTED}</blockquote></div>-- <br><div class="gmail_signature">Alice Example<br>Finance</div>'
    )
    assert read_reply(markup, html=True).text == "Approved."


def test_an_unmarked_short_signature_under_the_quote_is_not_an_inline_reply() -> None:
    markup = f"<div>Approved.</div><blockquote>{QUOTED}</blockquote><div>-- <br>Alice Example<br>Finance</div>"
    assert read_reply(markup, html=True).text == "Approved."


def test_a_wrapper_around_the_whole_body_is_looked_into() -> None:
    # Some archivers and clients wrap the whole mail in a quote container; the quote inside it is the history.
    markup = (
        '<div class="gmail_quote"><div>Ship it on Monday.</div><div>-- Bob</div>'
        f'<blockquote class="gmail_quote">{QUOTED}</blockquote></div>'
    )
    assert read_reply(markup, html=True).text.startswith("Ship it on Monday.")
    assert "invoice" not in read_reply(markup, html=True).text


def test_a_reply_that_is_nothing_but_the_quote_has_no_text() -> None:
    # Never hand the quoted request back as the human's words (it starts with "Approve…").
    assert read_reply(f"<br><blockquote>{QUOTED}</blockquote><br>", html=True).text == ""


def test_thunderbird_forward_container_is_a_forward() -> None:
    markup = (
        '<p>No: see what the client wrote.</p><div class="moz-forward-container">-------- Forwarded Message --------'
        "<table><tr><th>From:</th><td>client@example.org</td></tr></table><div>Approve it!</div></div>"
    )
    assert read_reply(markup, html=True) == ("No: see what the client wrote.", True)


def test_html_to_text_block_edges_and_entities() -> None:
    assert html_to_text("<div>a</div><div><p>b&nbsp;&amp;&#160;c</p></div>x<br>y") == "a\nb & c\nx\ny"
