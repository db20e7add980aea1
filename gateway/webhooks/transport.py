"""Delivers one webhook: resolve, refuse private targets, POST the signed body, judge the answer.

Private, loopback, link-local and other non-public addresses are refused unless the operator allows them: a
callback_url comes from an agent, and must not become a way into the gateway's own network. The check runs on
every attempt (addresses change), against every address the name resolves to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

import httpx

from gateway.mail.smtp import PermanentDeliveryError, TemporaryDeliveryError
from gateway.models import OutboxMessage
from gateway.settings import Settings
from gateway.webhooks import signing


class PrivateTargetError(PermanentDeliveryError):
    """The target resolves to an address the gateway will not call."""

    def __init__(self, url: str, address: str) -> None:
        super().__init__(f"refused: {url} resolves to the non-public address {address}")
        self.url = url
        self.address = address


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def check_target(url: str) -> None:
    """Raise PrivateTargetError if ``url``'s host is (or resolves to) a non-public address."""
    host = urlsplit(url).hostname or ""
    try:
        candidates = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise TemporaryDeliveryError(f"cannot resolve {host}: {exc}") from exc
        candidates = sorted({str(info[4][0]) for info in infos})
    for address in candidates:
        if not is_public(address.split("%")[0]):
            raise PrivateTargetError(url, address)


class WebhookTransport:
    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.client = client or httpx.AsyncClient(timeout=settings.webhook_timeout, follow_redirects=False)

    async def send(self, mail: OutboxMessage) -> None:
        url = mail.rcpt_to[0]
        secret = self.settings.webhook_secret
        if not secret:
            raise TemporaryDeliveryError("GATEWAY_WEBHOOK_SECRET is not set, so the webhook cannot be signed")
        if not self.settings.webhook_allow_private:
            await check_target(url)
        body = mail.raw or ""  # webhook rows are always written whole
        try:
            response = await self.client.post(url, content=body, headers=signing.headers(secret, mail.message_id, body))
        except httpx.HTTPError as exc:
            raise TemporaryDeliveryError(f"{type(exc).__name__}: {exc}"[:300]) from exc
        if 200 <= response.status_code < 300:
            return
        # 410 Gone is the receiver saying "stop"; everything else may be temporary (Standard Webhooks retries).
        if response.status_code == 410:
            raise PermanentDeliveryError("Gone", response.status_code)
        raise TemporaryDeliveryError(f"HTTP {response.reason_phrase}", response.status_code)

    async def close(self) -> None:
        await self.client.aclose()
