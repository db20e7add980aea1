"""One reusable SMTP connection, with every failure sorted into temporary or permanent."""

from __future__ import annotations

import asyncio
import logging

import aiosmtplib

from gateway.models import OutboxMessage
from gateway.oauth import OAuthError, TokenSource, oauthbearer
from gateway.settings import Settings

log = logging.getLogger("gateway.mail.smtp")


class DeliveryError(Exception):
    """Sending failed. ``permanent`` says whether trying again can help (5xx) or not (4xx, network)."""

    permanent = False

    def __init__(self, reason: str, code: int | None = None) -> None:
        self.reason = reason
        self.code = code
        super().__init__(f"{code} {reason}" if code else reason)


class TemporaryDeliveryError(DeliveryError):
    permanent = False


class PermanentDeliveryError(DeliveryError):
    permanent = True


class ServerProblemError(TemporaryDeliveryError):
    """The server, not the mail: it cannot be reached, refuses our login (535), TLS, or our sender address.
    Never a mail's failure: the mail is held and tried again with backoff until the server (or the settings)
    are fixed, and /healthz names the cause meanwhile."""


def _by_code(code: int, reason: str) -> DeliveryError:
    return PermanentDeliveryError(reason, code) if 500 <= code < 600 else TemporaryDeliveryError(reason, code)


class SmtpTransport:
    def __init__(self, settings: Settings, tokens: TokenSource | None = None) -> None:
        self._settings = settings
        self._tokens = tokens if settings.smtp_auth == "oauth2" else None
        self._client: aiosmtplib.SMTP | None = None

    def _new_client(self) -> aiosmtplib.SMTP:
        s = self._settings
        # With OAuth the login is ours, after the connect (_oauth_login): OAUTHBEARER where offered, else XOAUTH2.
        login = {} if self._tokens is not None else {"username": s.smtp_username, "password": s.smtp_password}
        return aiosmtplib.SMTP(
            hostname=s.smtp_host or "127.0.0.1",
            port=s.smtp_port_effective,
            use_tls=s.smtp_security == "tls",
            start_tls=s.smtp_security == "starttls",
            timeout=s.smtp_timeout,
            cert_bundle=str(s.smtp_ca_file) if s.smtp_ca_file else None,
            **login,  # type: ignore[arg-type]
        )

    async def connect(self) -> aiosmtplib.SMTP:
        """The connection, opened and logged in as for a mail (gateway doctor's check); DeliveryError if not."""
        return await self._connected()

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        where = f"{self._settings.smtp_host or '127.0.0.1'}:{self._settings.smtp_port_effective}"
        for attempt in (1, 2):
            client = self._new_client()
            try:
                await self._open(client)
                break
            except aiosmtplib.SMTPAuthenticationError as exc:
                client.close()
                if self._tokens is not None and attempt == 1:  # a stale token: fetch another, try once more
                    self._tokens.invalidate()
                    continue
                raise ServerProblemError(
                    f"the SMTP server {where} refused the login of GATEWAY_SMTP_USERNAME: {exc.message}", exc.code
                ) from exc
        self._client = client
        return client

    async def _open(self, client: aiosmtplib.SMTP) -> None:
        where = f"{self._settings.smtp_host or '127.0.0.1'}:{self._settings.smtp_port_effective}"
        try:
            await client.connect()
            if client.last_ehlo_response is None:  # learn the extensions (SMTPUTF8) before the first mail
                await client.ehlo()
            if self._tokens is not None:
                await self._oauth_login(client, await self._tokens.token())
        except aiosmtplib.SMTPAuthenticationError:
            raise
        except OAuthError as exc:
            client.close()
            raise ServerProblemError(f"no OAuth token for the SMTP login: {exc}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            client.close()
            raise ServerProblemError(
                f"the SMTP server {where} refused the connection: {exc.message}", exc.code
            ) from exc
        except (TimeoutError, aiosmtplib.SMTPException, OSError, ValueError) as exc:
            client.close()
            raise ServerProblemError(f"cannot connect to the SMTP server {where}: {exc}") from exc

    async def _oauth_login(self, client: aiosmtplib.SMTP, token: str) -> None:
        """SASL OAUTHBEARER (RFC 7628) where the server offers it, else XOAUTH2 (Google's and Microsoft's)."""
        user = self._settings.smtp_username or ""
        methods = client.server_auth_methods
        if "oauthbearer" in methods:
            response = await client.execute_command(b"AUTH", b"OAUTHBEARER", oauthbearer(user, token).encode())
            if response.code == 334:  # the error challenge (a JSON status): answer it to get the final refusal
                response = await client.execute_command(b"AQ==")  # a %x01, base64 (RFC 7628 §3.2.3)
            if response.code != 235:
                raise aiosmtplib.SMTPAuthenticationError(response.code, response.message)
        elif "xoauth2" in methods:
            await client.auth_xoauth2(user, token)
        else:
            raise aiosmtplib.SMTPException("the server offers neither OAUTHBEARER nor XOAUTH2 (GATEWAY_SMTP_AUTH)")

    async def send(self, mail: OutboxMessage) -> None:
        """Deliver one stored message; raises a DeliveryError subclass when it was not accepted.

        A mail's failure is its own: after anything but a clean answer the connection is reset or dropped, so
        the next mail never starts inside this one's half-finished transaction."""
        if mail.raw is None:
            raise PermanentDeliveryError("the message was never composed")
        client = await self._connected()
        utf8 = not all(a.isascii() for a in (mail.mail_from, *mail.rcpt_to)) or not mail.raw.isascii()
        options: list[str] = []
        if utf8 and client.supports_extension("smtputf8"):
            options.append("SMTPUTF8")
        elif utf8 and not all(a.isascii() for a in (mail.mail_from, *mail.rcpt_to)):
            raise PermanentDeliveryError(
                f"{', '.join(mail.rcpt_to)}: the address needs SMTPUTF8, which the SMTP server does not offer"
            )
        try:
            errors, _ = await client.sendmail(
                mail.mail_from, mail.rcpt_to, mail.raw.encode("utf-8"), mail_options=options
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            await self._reset(client)
            if codes and all(500 <= c < 600 for c in codes):
                raise PermanentDeliveryError("; ".join(r.message for r in exc.recipients), codes[0]) from exc
            raise TemporaryDeliveryError(
                "; ".join(r.message for r in exc.recipients), codes[0] if codes else None
            ) from exc
        except aiosmtplib.SMTPServerDisconnected as exc:
            await self.close()
            raise TemporaryDeliveryError(f"the SMTP server closed the connection: {exc}") from exc
        except aiosmtplib.SMTPSenderRefused as exc:  # our MAIL FROM (or a login it wants): the settings' fault
            await self._reset(client)
            raise ServerProblemError(
                f"the SMTP server refused the sender {mail.mail_from} (GATEWAY_FROM_ADDRESS, or its login):"
                f" {exc.message}",
                exc.code,
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            await self._reset(client)
            raise _by_code(exc.code, exc.message) from exc
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            await self.close()
            raise TemporaryDeliveryError(f"SMTP error: {exc}") from exc
        except (ValueError, UnicodeError) as exc:  # an address or message the client refuses to put on the wire
            await self.close()
            raise PermanentDeliveryError(f"cannot be sent as written: {exc}") from exc
        except BaseException:  # cancelled or a bug mid-transaction: never reuse this connection
            self._drop()
            raise
        if errors:
            # Some recipients refused: we send one recipient per message, so this is rare.
            code, message = next(iter(errors.values()))
            raise _by_code(code, message)

    async def _reset(self, client: aiosmtplib.SMTP) -> None:
        try:
            await client.rset()
        except Exception:  # the connection is unusable; the next send reconnects
            await self.close()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                async with asyncio.timeout(2):
                    await client.quit()
            except Exception:
                client.close()

    def _drop(self) -> None:
        """Close at once, without QUIT (for a transaction cut short by a cancel or a bug)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()
