"""MIME: parsing leniently, finding the body, decoding text whatever its charset label says."""

from __future__ import annotations

import email
import email.header
import email.policy
from email.message import Message


def parse_message(raw: bytes) -> Message:
    """Parse leniently (compat32: no header objects, several times faster, and it never raises on a bad
    header); a broken part is handled where it is decoded."""
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def _decode(payload: bytes, declared: str | None) -> str:
    """Bytes to text. Try UTF-8 first when it decodes cleanly (a body labelled Big5 or Latin-1 is often UTF-8),
    then the declared charset, then Windows-1252, which decodes anything."""
    candidates = ["utf-8", declared, "cp1252", "latin-1"]
    if declared and declared.lower().replace("_", "-") in ("us-ascii", "ascii"):
        candidates = ["utf-8", "cp1252", "latin-1"]
    for charset in candidates:
        if not charset:
            continue
        try:
            return payload.decode(charset)
        except Exception:  # unknown, malformed (a NUL in its name) or not this charset
            continue
    return payload.decode("latin-1", "replace")


def part_text(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # a transfer encoding the library trips on: take the bytes as they are
        payload = None
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    try:
        declared = part.get_content_charset()
    except Exception:
        declared = None
    return _decode(payload, declared)


def body_parts(msg: Message) -> tuple[str | None, str | None]:
    """The first inline text/plain and text/html of the message (attachments and forwarded mails skipped)."""
    plain: str | None = None
    html: str | None = None
    for part in msg.walk():
        if part.is_multipart():
            continue
        if part.get_content_maintype() == "message":
            continue
        disposition = safe_header(part, "Content-Disposition").lower()
        if disposition.startswith("attachment"):
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain" and plain is None:
            plain = part_text(part)
        elif ctype == "text/html" and html is None:
            html = part_text(part)
    return plain, html


def header(msg: Message, name: str) -> str:
    value = msg.get(name)
    return str(value).strip() if value is not None else ""


def safe_header(msg: Message, name: str) -> str:
    try:
        return header(msg, name)
    except Exception:  # a malformed header is as good as none
        return ""


def decoded_subject(value: str) -> str:
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except Exception:
        return value
