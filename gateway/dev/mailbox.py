"""The captured mail of `gateway dev`: a real SMTP server (aiosmtpd) on a loopback port, feeding a list."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.models import new_id, utcnow

URL_RE = re.compile(r"https?://[^\s<>\"')\]]+")


@dataclass
class CapturedMessage:
    id: str
    to: list[str]
    subject: str
    message_id: str
    links: list[str]
    received_at: datetime
    raw: bytes
    text: str = ""
    mail_from: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    html: str = ""  # the HTML part, as the recipient's mail client shows it
    kind: str = ""  # approval | question | notification | "" (a notice), from X-Gateway-Request


@dataclass
class DevReply:
    """A reply written on the mailbox page: kept with its outcome, and downloadable for `gateway parse-reply`."""

    id: str
    message_id: str  # the captured message it answers
    raw: bytes
    text: str
    outcome: str
    reason: str | None
    at: datetime


def html_body(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("html",))
    if part is None:
        return ""
    try:
        return str(part.get_content())
    except (LookupError, ValueError):
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


_KINDS = {"apr": "approval", "qst": "question", "ntf": "notification"}


def text_body(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    if part is None:
        part = msg.get_body(preferencelist=("html",))
    if part is None:
        return ""
    try:
        content: Any = part.get_content()
    except (LookupError, ValueError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return str(content)


def parse_capture(raw: bytes, rcpt_tos: list[str], public_base: str) -> CapturedMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    text = text_body(msg)
    links = [u for u in dict.fromkeys(URL_RE.findall(text)) if u.startswith(f"{public_base}/r/")]
    return CapturedMessage(
        id=new_id("dev"),
        to=list(rcpt_tos),
        subject=str(msg.get("Subject", "")),
        message_id=str(msg.get("Message-ID", "")).strip(),
        links=links,
        received_at=utcnow(),
        raw=raw,
        text=text,
        mail_from=str(msg.get("From", "")),
        headers={
            k: str(v) for k, v in msg.items() if k in ("Reply-To", "Date", "Cc", "In-Reply-To") and str(v).strip()
        },
        html=html_body(msg),
        kind=_KINDS.get(str(msg.get("X-Gateway-Request", "")).split("_", 1)[0], ""),
    )


class DevMailbox:
    """Keeps the newest ``limit`` messages in memory; enough for trying the gateway out."""

    def __init__(self, public_base: str, limit: int = 2000) -> None:
        self.public_base = public_base
        self.messages: deque[CapturedMessage] = deque(maxlen=limit)
        self.replies: deque[DevReply] = deque(maxlen=limit)  # newest first
        self.arrived = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self.port: int | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        self.messages.appendleft(parse_capture(raw, list(envelope.rcpt_tos), self.public_base))
        async with self.arrived:
            self.arrived.notify_all()
        return "250 Message accepted for delivery"

    def get(self, message_id: str) -> CapturedMessage | None:
        return next((m for m in self.messages if m.id == message_id), None)

    def reply(self, reply_id: str) -> DevReply | None:
        return next((r for r in self.replies if r.id == reply_id), None)

    def replies_to(self, message_id: str) -> list[DevReply]:
        return [r for r in self.replies if r.message_id == message_id]

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            # SMTPUTF8 on: `gateway dev` accepts internationalised addresses (GATEWAY_SMTP_UTF8 is on there)
            lambda: SMTP(self, hostname="gateway-dev", ident="gateway dev", enable_SMTPUTF8=True),
            host,
            port,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
