"""One reusable SMTP connection, with every failure sorted into temporary or permanent."""

from __future__ import annotations

import asyncio
import logging

import aiosmtplib

from gateway.models import OutboxMessage
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


def _by_code(code: int, reason: str) -> DeliveryError:
    return PermanentDeliveryError(reason, code) if 500 <= code < 600 else TemporaryDeliveryError(reason, code)


class SmtpTransport:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: aiosmtplib.SMTP | None = None

    def _new_client(self) -> aiosmtplib.SMTP:
        s = self._settings
        return aiosmtplib.SMTP(
            hostname=s.smtp_host or "127.0.0.1",
            port=s.smtp_port_effective,
            username=s.smtp_username,
            password=s.smtp_password,
            use_tls=s.smtp_security == "tls",
            start_tls=s.smtp_security == "starttls",
            timeout=s.smtp_timeout,
        )

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        client = self._new_client()
        try:
            await client.connect()
        except aiosmtplib.SMTPResponseException as exc:
            raise _by_code(exc.code, exc.message) from exc
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            raise TemporaryDeliveryError(f"cannot connect to the SMTP server: {exc}") from exc
        self._client = client
        return client

    async def send(self, mail: OutboxMessage) -> None:
        """Deliver one stored message; raises a DeliveryError subclass when it was not accepted."""
        if mail.raw is None:
            raise PermanentDeliveryError("the message was never composed")
        client = await self._connected()
        try:
            errors, _ = await client.sendmail(mail.mail_from, mail.rcpt_to, mail.raw.encode("utf-8"))
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            await self._reset(client)
            if codes and all(500 <= c < 600 for c in codes):
                raise PermanentDeliveryError("; ".join(r.message for r in exc.recipients), codes[0]) from exc
            raise TemporaryDeliveryError(
                "; ".join(r.message for r in exc.recipients), codes[0] if codes else None
            ) from exc
        except aiosmtplib.SMTPServerDisconnected as exc:
            self._client = None
            raise TemporaryDeliveryError(f"the SMTP server closed the connection: {exc}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            await self._reset(client)
            raise _by_code(exc.code, exc.message) from exc
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            await self.close()
            raise TemporaryDeliveryError(f"SMTP error: {exc}") from exc
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
