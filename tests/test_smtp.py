"""The SMTP transport against real aiosmtpd servers: with and without SMTPUTF8, with AUTH, with STARTTLS.

A mail's failure is its own (the next mail on the connection is unharmed), and a server that refuses the gateway
itself (a wrong password) is a held mail, not a failed one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from gateway.mail.smtp import PermanentDeliveryError, ServerProblemError, SmtpTransport
from gateway.models import OutboxMessage
from tests.certs import self_signed
from tests.conftest import free_port, make_settings

USER, PASSWORD = "gateway", "s3cret-smtp-password"


@dataclass
class Recorder:
    """An aiosmtpd handler that keeps each accepted envelope: (mail_from, rcpt_tos, smtputf8, body)."""

    accepted: list[tuple[str, list[str], bool, bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        self.accepted.append(
            (
                str(envelope.mail_from),
                list(envelope.rcpt_tos),
                bool(envelope.smtp_utf8),
                envelope.original_content or b"",
            )
        )
        return "250 OK"


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


@contextlib.contextmanager
def smtp_server(**options: Any) -> Iterator[tuple[int, Recorder]]:
    """aiosmtpd on a free port. Its Controller offers SMTPUTF8 unless told not to (enable_SMTPUTF8=False)."""
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield port, recorder
    finally:
        controller.stop()


def mail(to: str, body: str = "hello") -> OutboxMessage:
    raw = f"From: gateway@example.test\r\nTo: {to}\r\nSubject: test\r\n\r\n{body}\r\n"
    return OutboxMessage(
        id=f"out_{abs(hash((to, body)))}", kind="notice", mail_from="gateway@example.test", rcpt_to=[to], raw=raw
    )


def transport(port: int, **settings: Any) -> SmtpTransport:
    return SmtpTransport(make_settings("sqlite+aiosqlite:///:memory:", free_port(), port, **settings))


async def test_an_address_the_server_cannot_take_fails_alone_and_the_next_mail_goes_out() -> None:
    """The issue's case: a non-ASCII recipient on a server without SMTPUTF8, then a legitimate mail on the same
    connection (it used to get "503 nested MAIL command" and fail for good)."""
    with smtp_server(enable_SMTPUTF8=False) as (port, server):
        smtp = transport(port)
        try:
            with pytest.raises(PermanentDeliveryError, match="SMTPUTF8"):
                await smtp.send(mail("bób@example.com"))
            await smtp.send(mail("carol1@example.com"))
        finally:
            await smtp.close()
    assert [rcpt for _, rcpt, _, _ in server.accepted] == [["carol1@example.com"]]


async def test_smtputf8_is_used_when_the_server_offers_it() -> None:
    with smtp_server(enable_SMTPUTF8=True) as (port, server):
        smtp = transport(port)
        try:
            await smtp.send(mail("bób@example.com", "grüße"))
            await smtp.send(mail("carol1@example.com"))
        finally:
            await smtp.close()
    (_, first, utf8, body), (_, second, plain, _) = server.accepted
    assert first == ["bób@example.com"] and utf8 and "grüße" in body.decode()
    assert second == ["carol1@example.com"] and not plain  # SMTPUTF8 only where a mail needs it


async def test_any_error_inside_a_transaction_drops_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever breaks after MAIL FROM (here a bug in the client, raised once at RCPT), the connection is not
    reused half-way through a transaction: the next mail is delivered."""
    with smtp_server() as (port, server):
        smtp = transport(port)
        real = aiosmtplib.SMTP._send_recipients
        calls = 0

        async def broken_once(self: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise UnicodeEncodeError("ascii", "ó", 0, 1, "a client-side encoding bug")
            return await real(self, *args, **kwargs)

        monkeypatch.setattr(aiosmtplib.SMTP, "_send_recipients", broken_once)
        try:
            with pytest.raises(PermanentDeliveryError, match="cannot be sent as written"):
                await smtp.send(mail("dave@example.com"))
            await smtp.send(mail("carol1@example.com"))
        finally:
            await smtp.close()
    assert calls == 2 and [rcpt for _, rcpt, _, _ in server.accepted] == [["carol1@example.com"]]


async def test_a_refused_login_is_the_servers_problem_not_the_mails() -> None:
    with smtp_server(authenticator=_authenticate, auth_require_tls=False) as (port, server):
        wrong = transport(port, smtp_username=USER, smtp_password="wrong-password")
        with pytest.raises(ServerProblemError, match="refused the login") as refused:
            await wrong.send(mail("alice@example.com"))
        assert not refused.value.permanent and refused.value.code == 535
        await wrong.close()
        right = transport(port, smtp_username=USER, smtp_password=PASSWORD)
        try:
            await right.send(mail("alice@example.com"))
        finally:
            await right.close()
    assert [rcpt for _, rcpt, _, _ in server.accepted] == [["alice@example.com"]]


async def test_an_unreachable_server_is_the_servers_problem() -> None:
    smtp = transport(free_port())  # nothing listens there
    with pytest.raises(ServerProblemError, match="cannot connect"):
        await smtp.send(mail("alice@example.com"))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("smtp-tls")
    key, cert = root / "key.pem", root / "cert.pem"
    self_signed(key, cert)
    return cert, key


async def test_starttls_with_auth_against_a_private_ca(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    options = {"tls_context": context, "require_starttls": True, "authenticator": _authenticate}
    with smtp_server(**options) as (port, server):
        smtp = transport(port, smtp_security="starttls", smtp_ca_file=cert, smtp_username=USER, smtp_password=PASSWORD)
        try:
            await smtp.send(mail("alice@example.com"))
        finally:
            await smtp.close()
        untrusted = transport(port, smtp_security="starttls", smtp_username=USER, smtp_password=PASSWORD)
        with pytest.raises(ServerProblemError, match="cannot connect"):  # the certificate is not trusted
            await untrusted.send(mail("bob@example.com"))
        plain = transport(port, smtp_security="none", smtp_username=USER, smtp_password=PASSWORD)
        with pytest.raises(ServerProblemError):  # this server takes no login before STARTTLS
            await plain.send(mail("bob@example.com"))
        await asyncio.gather(untrusted.close(), plain.close())
    assert [rcpt for _, rcpt, _, _ in server.accepted] == [["alice@example.com"]]
