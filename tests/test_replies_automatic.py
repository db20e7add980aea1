"""gateway.replies._automatic: legacy out-of-office mail without RFC 3834 headers, and humans who only mention
being away (cases written for this project)."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from gateway.replies import automated_kind


def mail(body: str, subject: str = "Re: Approval needed: send_invoice [#ABCD2345]", html: bool = False) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.com>"
    msg["To"] = "replies+tag@example.test"
    msg["Subject"] = subject
    msg.set_content(body, subtype="html" if html else "plain")
    return bytes(msg)


@pytest.mark.parametrize(
    "subject",
    [
        "Out of Office: Approval needed: send_invoice [#ABCD2345]",
        "Out of Office AutoReply: Approval needed",
        "Automatic reply: Approval needed: send_invoice [#ABCD2345]",
        "Abwesenheitsnotiz: Approval needed",
        "Automatische Antwort: Approval needed",
        "Réponse automatique : Approval needed",
        "Respuesta automática: Approval needed",
        "Risposta automatica: Approval needed",
        "Automatisch antwoord: Approval needed",
        "Autosvar: Approval needed",
        "Automaattinen vastaus: Approval needed",
        "Automatická odpověď: Approval needed",
        "自动回复: Approval needed",
        "Автоответ: Approval needed",
    ],
)
def test_legacy_out_of_office_subjects(subject: str) -> None:
    assert automated_kind(mail("Thank you for your message.", subject=subject)) == "auto_reply"


@pytest.mark.parametrize(
    "body",
    [
        "Thank you for your email. I am currently out of the office until 23 March with limited access to email.",
        "Hello,\n\nI'm on parental leave until June. For urgent matters please contact bob@example.com.",
        "Vielen Dank für Ihre Nachricht. Ich bin bis zum 23.03. nicht im Büro. In dringenden Fällen: Bob.",
        "Merci pour votre message. Je suis absente jusqu'au 23 mars.",
        "Gracias por su correo. Estoy fuera de la oficina hasta el lunes.",
        "Ik ben tot en met vrijdag afwezig.",
    ],
)
def test_legacy_out_of_office_bodies_under_a_reply_subject(body: str) -> None:
    assert automated_kind(mail(body)) == "auto_reply"
    assert automated_kind(mail(f"<p>{body}</p>", html=True)) == "auto_reply"


@pytest.mark.parametrize(
    "body",
    [
        "I'm out of office tomorrow, but yes: approved",
        "I am away until Monday, so approved - go ahead now.",
        "No. I'm out of the office until Friday; wait for me.",
        "Ich bin bis Freitag nicht im Büro, aber: genehmigt.",
        "Please hold this until I return on Monday.",
    ],
)
def test_a_human_who_mentions_an_absence_is_a_human(body: str) -> None:
    assert automated_kind(mail(body)) is None


@pytest.mark.parametrize(
    "subject",
    [
        "Re: Vacation request for Bob [#ABCD2345]",
        "Re: Out of office coverage plan [#ABCD2345]",
        "AW: Abwesenheit im März [#ABCD2345]",
        "Re: Rejected invoices: resend? [#ABCD2345]",
        "RE: Undelivered parcels refund [#ABCD2345]",
    ],
)
def test_a_reply_about_absences_or_deliveries_is_not_automatic(subject: str) -> None:
    # Requests may well be about vacations or rejected invoices; the human's reply carries a reply prefix.
    assert automated_kind(mail("Approved.", subject=subject)) is None
