"""gateway.replies._text: plain-text replies as mail clients write them (each case written for this project)."""

from __future__ import annotations

import pytest

from gateway.replies import read_reply
from gateway.replies._text import read_text

ASK = "> Approve sending the invoice to ACME?\n>\n> -- \n> Approval Gateway\n"


@pytest.mark.parametrize(
    ("client", "separator"),
    [
        ("Gmail", "---------- Forwarded message ---------"),
        ("Thunderbird", "-------- Forwarded Message --------"),
        ("Apple Mail", "Begin forwarded message:"),
        ("Apple Mail (German)", "Anfang der weitergeleiteten Nachricht:"),
        ("Gmail (German)", "---------- Weitergeleitete Nachricht ---------"),
        ("Thunderbird (French)", "-------- Message transféré --------"),
        ("Apple Mail (French)", "Début du message réexpédié :"),
        ("Gmail (Spanish)", "---------- Mensaje reenviado ---------"),
        ("Gmail (Swedish)", "---------- Vidarebefordrat meddelande ---------"),
        ("Mail.ru (Russian)", "-------- Пересылаемое сообщение --------"),
        ("Lotus Notes", "----- Forwarded by Carla Diaz/Finance/Acme on 03/14/2026 09:12 AM -----"),
    ],
)
def test_a_forwarded_message_below_the_new_text_is_dropped_and_flagged(client: str, separator: str) -> None:
    body = (
        f"Rejected: the supplier changed the terms, see their note.\n\n{separator}\n"
        "From: Supplier <sales@supplier.example>\nDate: 13 March 2026 17:02\nSubject: New terms\n\n"
        "Payment now due in 7 days.\n"
    )
    reading = read_text(body)
    assert reading.text == "Rejected: the supplier changed the terms, see their note.", client
    assert reading.forwarded


def test_a_forward_alone_is_no_reply_even_with_text_below() -> None:
    body = "---------- Forwarded message ---------\nFrom: Bob <bob@example.org>\n\nApproved, obviously.\n"
    assert read_text(body) == ("", True)  # the "Approved" is Bob's, in the forwarded mail, not the sender's


@pytest.mark.parametrize("note", ["FYI", "fyi -", "See below.", "Siehe unten", "Pour info :"])
def test_a_note_that_only_points_at_the_forward_hands_it_over(note: str) -> None:
    body = f"{note}\n\n---------- Forwarded message ---------\nFrom: Bob <bob@example.org>\n\nThe budget is 500.\n"
    reading = read_text(body)
    assert "The budget is 500." in reading.text and reading.text.startswith(note.rstrip(" -:"))
    assert reading.forwarded


@pytest.mark.parametrize(
    ("convention", "attribution"),
    [
        ("Gmail, German, date after the verb", "Am Mo., 16. März 2026 um 09:41 Uhr schrieb Gateway <gw@example.test>:"),
        ("Thunderbird, German, verb first", "Gateway schrieb am 16.03.2026 um 09:41:"),
        ("Thunderbird, French, non-breaking space", "Le 16/03/2026 à 09:41, Gateway a écrit\u00a0:"),
        (
            "Gmail, Arabic, in bidi marks",
            "\u202bفي الاثنين، 16 مارس 2026 في 9:41 ص، كتب Gateway <gw@example.test>:\u202c",
        ),
        (
            "Gmail, Hebrew, in bidi marks",
            "\u202bבתאריך יום ב׳, 16 במרץ 2026 ב-9:41 מאת \u202aGateway\u202c <gw@example.test>:\u202c",
        ),
        ("Gmail, Chinese, full-width colon", "Gateway <gw@example.test> 于2026年3月16日周一 09:41写道："),
        ("Gmail, Japanese", "2026年3月16日(月) 9:41 Gateway <gw@example.test>:"),
        ("Gmail, Korean", "2026년 3월 16일 (월) 오전 9:41, Gateway <gw@example.test>님이 작성:"),
        ("Outlook for Mac, wrapped", 'On 16/03/2026, 09:41, "Gateway" <gw@example.test>\nwrote:'),
    ],
)
def test_attributions_in_other_languages_and_formats(convention: str, attribution: str) -> None:
    body = f"Nein, bitte nicht.\n\n{attribution}\n\n{ASK}"
    assert read_text(body).text == "Nein, bitte nicht.", convention
    assert read_text(body.replace("\n", "\r\n")).text == "Nein, bitte nicht.", f"{convention}, CRLF"


@pytest.mark.parametrize(
    "block",
    [
        # Outlook, French: "De :" and the rest, with the space French puts before a colon
        "De : Gateway <gw@example.test>\nEnvoyé : lundi 16 mars 2026 09:41\nÀ : Alice\nObjet : Approbation\n",
        # Outlook, Italian
        "Da: Gateway <gw@example.test>\nInviato: lunedì 16 marzo 2026 09:41\nA: Alice\nOggetto: Approvazione\n",
        # Outlook with bold field names turned into asterisks by a plain-text conversion
        "*From:* Gateway <gw@example.test>\n*Sent:* Monday, March 16, 2026 9:41 AM\n*To:* Alice\n*Subject:* Approval\n",
        # Lotus Notes: the sender with the date, then an indented To/cc/Subject block
        '"Approval Gateway" <gw@example.test>\n03/16/2026 09:41 AM\n\n        To:     Alice/Finance/Acme@Acme\n'
        "        cc:\n        Subject:        Approval needed\n",
        "Approval Gateway/IT/Acme@Acme on 03/16/2026 09:41:12 AM\n\nTo:   Alice Example/Finance/Acme@Acme\n"
        "cc:\nSubject:   Approval needed\n",
        # Outlook's variants of the separator
        "-----Original Message-----\nFrom: Gateway\n",
        "———— Original Message ————\nFrom: Gateway\n",
        "-----Ursprüngliche Nachricht-----\nVon: Gateway\n",
    ],
)
def test_corporate_client_header_blocks(block: str) -> None:
    assert read_text(f"Please wait for Monday.\n\n{block}\nApprove sending the invoice?\n").text == (
        "Please wait for Monday."
    )


def test_an_inline_reply_between_quoted_lines_is_kept_whole() -> None:
    body = (
        "On Mon, 16 Mar 2026 at 09:41, Gateway <gw@example.test> wrote:\n"
        "> Recipient: billing@acme.example\n"
        "Use accounts@acme.example instead.\n"
        "> Amount: 1,200 EUR\n"
        "That one is right.\n"
    )
    text = read_text(body).text
    assert "Use accounts@acme.example instead." in text and text.endswith("That one is right.")


def test_a_link_the_client_wrapped_out_of_a_quote_is_not_an_inline_reply() -> None:
    body = (
        "Looks good.\n\nOn Mon, 16 Mar 2026 at 09:41, Gateway <gw@example.test> wrote:\n"
        "> Review the draft (https://gateway.example/drafts/\n12345)\n> before approving.\n"
    )
    assert read_text(body).text == "Looks good."


def test_a_signature_under_the_quote_does_not_make_an_inline_reply() -> None:
    body = (
        "Yes, send it.\n\nOn Mon, 16 Mar 2026 at 09:41, Gateway <gw@example.test> wrote:\n> Approve?\n"
        "-- \nAlice Example\nHead of Finance\n> older line\n"
    )
    assert read_text(body).text == "Yes, send it."


def test_a_lone_from_line_left_at_the_end_is_dropped() -> None:
    # Outlook for Mac writes "From:" above the section an HTML reader cuts; the line stays behind alone.
    assert read_text("Fine by me.\n\nFrom: Gateway <gw@example.test>\n").text == "Fine by me."


def test_a_human_sentence_with_a_colon_and_a_date_is_not_an_attribution() -> None:
    body = "Approved: but only after 16.03.2026, 10:00:\nthe team must review first."
    assert read_text(body).text == body


def test_read_reply_reports_the_forward_for_a_whole_message() -> None:
    raw = (
        b"From: alice@example.com\r\nSubject: Re: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        b"No.\r\n\r\n---------- Forwarded message ---------\r\nFrom: b@example.org\r\n\r\nYes!\r\n"
    )
    assert read_reply(raw) == ("No.", True)
