"""Delivers one webhook: resolve, refuse private targets, POST the signed body to the address that was checked.

Private, loopback, link-local and other non-public addresses are refused unless the operator allows them: a
callback_url comes from an agent, and must not become a way into the gateway's own network. The check runs on
every attempt (addresses change), against every address the name resolves to, and the connection then goes to
one of those very addresses: a second lookup at connect time would let a name that answered with a public
address for the check answer with a private one for the connection (DNS rebinding). TLS still verifies the
certificate for the name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
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


async def check_target(url: str) -> list[str]:
    """The addresses ``url``'s host resolves to, all public; PrivateTargetError if any is not."""
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
    return candidates


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to the address a host name was checked against, never to a fresh lookup of the name.

    ``pins`` maps a host to its checked addresses; a host without pins is refused unless ``allow_unpinned``
    (the operator allowed private targets, so there is nothing to check).
    """

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None, allow_unpinned: bool = False) -> None:
        self.inner = inner or httpcore.AnyIOBackend()
        self.allow_unpinned = allow_unpinned
        self.pins: dict[str, list[str]] = {}

    def pin(self, host: str, addresses: Iterable[str]) -> None:
        self.pins[host.lower()] = list(addresses)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = self.pins.get(host.lower().strip("[]"))
        if addresses is None:
            if not self.allow_unpinned:
                raise httpcore.ConnectError(f"{host} was not checked before connecting")
            addresses = [host]
        error: Exception | None = None
        for address in addresses:  # in turn, as a resolver's answers would be tried
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks go over TCP")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, backend: PinnedBackend) -> None:
        # No proxy from the environment: through a proxy the name would be resolved elsewhere, unchecked.
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=backend,
        )


class WebhookTransport:
    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.backend = PinnedBackend(allow_unpinned=settings.webhook_allow_private)
        self.client = client or httpx.AsyncClient(
            timeout=settings.webhook_timeout,
            follow_redirects=False,
            transport=_PinnedTransport(self.backend),
            trust_env=False,
        )

    async def send(self, mail: OutboxMessage) -> None:
        url = mail.rcpt_to[0]
        secret = self.settings.webhook_secret
        if not secret:
            raise TemporaryDeliveryError("GATEWAY_WEBHOOK_SECRET is not set, so the webhook cannot be signed")
        if not self.settings.webhook_allow_private:
            self.backend.pin(urlsplit(url).hostname or "", await check_target(url))
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
