"""Reading human replies: what is new in a reply, whether a mail is automatic, and what it decides.

Pure functions, no I/O. The rules are general (how mail clients quote, sign, forward and bounce), each naming the
client or convention it reads, never tuned to a single message.
"""

from __future__ import annotations

from email.message import Message
from typing import NamedTuple

from gateway.replies._automatic import AutomatedKind, automated_kind
from gateway.replies._decision import Decision, parse_decision
from gateway.replies._html import html_to_text, strip_quotes
from gateway.replies._mime import body_parts, decoded_subject, parse_message, part_text
from gateway.replies._text import read_text

__all__ = [
    "AutomatedKind",
    "Decision",
    "Reply",
    "automated_kind",
    "decoded_subject",
    "extract_reply",
    "html_to_text",
    "parse_decision",
    "parse_message",
    "part_text",
    "read_reply",
]


class Reply(NamedTuple):
    text: str
    forwarded: bool  # the mail carried a forwarded message below the new text (which is not part of it)


def read_reply(raw: bytes | str | Message, *, html: bool = False) -> Reply:
    """The new text of a reply, without quoted history, forwarded messages or signature.

    ``raw`` as bytes is a whole RFC 822 message (the text part is preferred, else the HTML one), or that message
    already parsed (by :func:`parse_message`: the pipeline parses each mail once); as str it is a bare body, HTML
    when ``html``. Never raises: a message it cannot take apart gives its body as plain text, not an error (the
    human's words are not lost to a parser's fault).
    """
    try:
        return _read(raw, html=html)
    except Exception:
        return Reply(_last_resort_text(raw), False)


def extract_reply(raw: bytes | str | Message, *, html: bool = False) -> str:
    """:func:`read_reply`'s text."""
    return read_reply(raw, html=html).text


def _read(raw: bytes | str | Message, *, html: bool) -> Reply:
    if isinstance(raw, bytes | Message):
        plain, markup = body_parts(parse_message(raw) if isinstance(raw, bytes) else raw)
        if plain is not None and plain.strip():
            return Reply(*read_text(plain))
        if markup is None:
            return Reply("", False)
        raw = markup
    elif not html:
        return Reply(*read_text(raw))
    stripped = strip_quotes(raw)
    text = html_to_text(stripped.markup)
    if stripped.inline:  # the human wrote below a quote: the whole is the reply, as it stands
        return Reply(text.strip(), stripped.forwarded)
    reading = read_text(text)
    return Reply(reading.text, stripped.forwarded or reading.forwarded)


def _last_resort_text(raw: bytes | str | Message) -> str:
    try:
        if isinstance(raw, Message):
            raw = raw.as_bytes()
        if isinstance(raw, bytes):
            head, sep, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
            raw = (body if sep else head).decode("utf-8", "replace")
        lines = raw.replace("\x00", "").splitlines()
        return "\n".join(line for line in lines if not line.startswith(">")).strip()[:100_000]
    except Exception:
        return ""
