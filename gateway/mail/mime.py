"""Writes the gateway's own multipart/alternative mails.

Every header value here is ours or validated to one line, so a direct writer is safe, and it is several times
faster than ``email``'s generator (which folds every header and compiles a regex per message): it sits on the
submit path, once per recipient. Parsing is left to the standard library.
"""

from __future__ import annotations

import binascii
import secrets
from email.header import Header

CRLF = "\r\n"
MAX_HEADER_LINE = 78
_BARE_ADDRESS_HEADERS = {"to", "cc"}


class HeaderInjectionError(ValueError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"header {name} holds a line break")


def header_value(name: str, value: str) -> str:
    """One header line's value: RFC 2047-encoded if not ASCII, folded at spaces if long."""
    if "\r" in value or "\n" in value:
        raise HeaderInjectionError(name)
    if not value.isascii():
        if name.lower() in _BARE_ADDRESS_HEADERS and "@" in value and not any(c in value for c in ' <>",'):
            return value  # an internationalised address (RFC 6532): UTF-8 as it is, sent with SMTPUTF8
        return Header(value, "utf-8", header_name=name).encode(linesep=CRLF)
    if len(name) + 2 + len(value) <= MAX_HEADER_LINE:
        return value
    lines: list[str] = []
    current = ""
    for word in value.split(" "):
        budget = MAX_HEADER_LINE - (len(name) + 2 if not lines else 1)
        if current and len(current) + 1 + len(word) > budget:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    lines.append(current)
    return (CRLF + " ").join(lines)


def quoted_printable(body: str) -> str:
    """UTF-8 quoted-printable with CRLF line ends (binascii: C speed, RFC 2045 line lengths)."""
    data = body.replace("\r\n", "\n").encode("utf-8")
    return binascii.b2a_qp(data, quotetabs=False, istext=True, header=False).decode("ascii").replace("\n", CRLF)


def alternative(headers: list[tuple[str, str]], text: str, html: str) -> str:
    """A complete message: the headers, then a text and an HTML part, quoted-printable UTF-8, CRLF lines."""
    boundary = f"=_gw_{secrets.token_hex(12)}"
    out = [f"{name}: {header_value(name, value)}" for name, value in headers]
    out += [
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
        "",
        "This is a multi-part message in MIME format.",
    ]
    for subtype, body in (("plain", text), ("html", html)):
        out += [
            f"--{boundary}",
            f'Content-Type: text/{subtype}; charset="utf-8"',
            "Content-Transfer-Encoding: quoted-printable",
            "",
            quoted_printable(body),
        ]
    out += [f"--{boundary}--", ""]
    return CRLF.join(out)
