"""Replies written the way real mail clients write them, built from the request mail actually received.

Gmail: multipart/alternative, quoted-printable UTF-8, "On … wrote:" and a gmail_quote div.
Outlook: HTML-first, base64, windows-1252, the divRplyFwdMsg header block, "From:/Sent:/To:/Subject:".
Apple Mail: text/plain only, ISO-8859-1 quoted-printable, "> " quotes under "On … wrote:".
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid


def _base(original: EmailMessage, sender: str | None, to: str | None) -> EmailMessage:
    reply = EmailMessage()
    reply["From"] = sender or str(original["To"])
    reply["To"] = to or str(original["Reply-To"])
    reply["Subject"] = f"Re: {original['Subject']}"
    reply["Date"] = format_datetime(datetime.now(UTC))
    reply["Message-ID"] = make_msgid(domain="client.example")
    reply["In-Reply-To"] = str(original["Message-ID"])
    reply["References"] = str(original["Message-ID"])
    return reply


def _original_text(original: EmailMessage) -> str:
    part = original.get_body(preferencelist=("plain",))
    return str(part.get_content()) if part is not None else ""


def gmail(original: EmailMessage, text: str, *, sender: str | None = None, to: str | None = None) -> bytes:
    reply = _base(original, sender, to)
    quoted = "\n".join(f"> {line}" for line in _original_text(original).splitlines())
    gateway = original["From"].addresses[0].addr_spec
    attribution = f"On Mon, Nov 16, 2026 at 9:41 AM Approval Gateway <{gateway}> wrote:"
    reply.set_content(f"{text}\n\n{attribution}\n\n{quoted}\n", cte="quoted-printable")
    body_html = "<br>".join(html.escape(x) for x in text.splitlines())
    reply.add_alternative(
        f'<div dir="ltr">{body_html}</div><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">'
        f'{html.escape(attribution)}<br></div><blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;'
        f'border-left:1px solid rgb(204,204,204);padding-left:1ex">{html.escape(_original_text(original))}'
        "</blockquote></div>",
        subtype="html",
        cte="quoted-printable",
    )
    return bytes(reply)


def outlook(original: EmailMessage, text: str, *, sender: str | None = None, to: str | None = None) -> bytes:
    reply = _base(original, sender, to)
    reply["Thread-Topic"] = str(original["Subject"])
    reply["X-MS-Has-Attach"] = ""
    gateway = original["From"].addresses[0].addr_spec
    plain = (
        f"{text}\n\n________________________________\nFrom: Approval Gateway <{gateway}>\n"
        f"Sent: Monday, November 16, 2026 9:41 AM\nTo: {original['To']}\nSubject: {original['Subject']}\n\n"
        f"{_original_text(original)}\n"
    )
    reply.set_content(plain, charset="windows-1252", cte="base64")
    body_html = "".join(f'<p class="MsoNormal">{html.escape(x)}<o:p></o:p></p>' for x in text.splitlines())
    reply.add_alternative(
        f'<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1252"></head><body>'
        f'<div class="WordSection1">{body_html}<div id="divRplyFwdMsg" dir="ltr"><font face="Calibri">'
        f"<b>From:</b> Approval Gateway<br><b>Sent:</b> Monday, November 16, 2026 9:41 AM<br><b>To:</b> "
        f"{html.escape(str(original['To']))}<br><b>Subject:</b> {html.escape(str(original['Subject']))}</font>"
        f"<div>&nbsp;</div></div><div>{html.escape(_original_text(original))}</div></div></body></html>",
        subtype="html",
        charset="windows-1252",
        cte="base64",
    )
    return bytes(reply)


def apple_mail(original: EmailMessage, text: str, *, sender: str | None = None, to: str | None = None) -> bytes:
    reply = _base(original, sender, to)
    reply["X-Mailer"] = "Apple Mail (2.3774.300.61)"
    quoted = "\n".join(f"> {line}" for line in _original_text(original).splitlines())
    attribution = "> On 16 Nov 2026, at 09:41, Approval Gateway <gw@example.test> wrote:"
    body = f"{text}\n\nSent from my iPhone\n\n{attribution}\n>\n{quoted}\n"
    reply.set_content(body, charset="iso-8859-1", cte="quoted-printable")
    return bytes(reply)


def out_of_office(original: EmailMessage) -> bytes:
    reply = _base(original, None, None)
    del reply["Subject"]
    reply["Subject"] = f"Automatic reply: {original['Subject']}"
    reply["Auto-Submitted"] = "auto-replied"
    reply.set_content("I am out of the office until Monday with limited access to email.\n")
    return bytes(reply)


def bounce(original: EmailMessage) -> bytes:
    to = str(original["Reply-To"])
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.test>\r\n"
        f"To: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: {make_msgid(domain='mx.example.test')}\r\nAuto-Submitted: auto-replied\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host mx.example.test.\r\n"
        "--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.test\r\n\r\n"
        "Final-Recipient: rfc822; alice@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n--b1--\r\n"
    ).encode()


def message_id_of(raw: bytes) -> str:
    import email

    return str(email.message_from_bytes(raw)["Message-ID"])
