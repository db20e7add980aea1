"""A small OAuth 2.0 authorization server on loopback, for the mail logins' tests: a token endpoint (refresh-token
and client-credentials grants, RFC 6749) and an introspection endpoint (RFC 7662) that Dovecot's oauth2 passdb
and the test SMTP server ask whether a token is good."""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from tests.conftest import free_port
from tests.loopback import LoopbackServer, read_body

CLIENT_ID, CLIENT_SECRET = "gateway-client", "gateway-client-secret"


@dataclass
class TokenServer(LoopbackServer):
    user: str = "gateway"
    lifetime: int = 3600  # seconds an access token lives (expires_in)
    port: int = field(default_factory=free_port)
    refresh_tokens: set[str] = field(default_factory=lambda: {"good-refresh-token"})
    issued: dict[str, float] = field(default_factory=dict)  # access token -> expiry (time.time())
    grants: list[str] = field(default_factory=list)
    introspections: int = 0

    @property
    def url(self) -> str:
        return self.base

    def active(self, token: str) -> bool:
        return self.issued.get(token, 0) > time.time()

    def expire_all(self) -> None:
        """Every access token issued so far stops working (as when they expire, or are revoked)."""
        self.issued = {t: 0.0 for t in self.issued}

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if scope["path"] == "/token":
            status, answer = self._token(form, headers.get("authorization", ""))
        elif scope["path"] == "/introspect":
            self.introspections += 1
            token = form.get("token", "")
            status, answer = 200, ({"active": True, "username": self.user} if self.active(token) else {"active": False})
        else:
            status, answer = 404, {"error": "not_found"}
        payload = json.dumps(answer).encode()
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
        )
        await send({"type": "http.response.body", "body": payload})

    def _token(self, form: dict[str, str], authorization: str) -> tuple[int, dict[str, Any]]:
        scheme, _, encoded = authorization.partition(" ")
        client = base64.b64decode(encoded).decode() if scheme.lower() == "basic" else ""
        if client != f"{CLIENT_ID}:{CLIENT_SECRET}":
            return 401, {"error": "invalid_client"}
        grant = form.get("grant_type", "")
        self.grants.append(grant)
        if grant == "refresh_token" and form.get("refresh_token") not in self.refresh_tokens:
            return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
        if grant not in ("refresh_token", "client_credentials"):
            return 400, {"error": "unsupported_grant_type"}
        token = "at-" + secrets.token_urlsafe(24)
        self.issued[token] = time.time() + self.lifetime
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime}


def oauth_settings(server: TokenServer, **extra: Any) -> dict[str, Any]:
    return {
        "oauth_token_url": f"{server.url}/token",
        "oauth_client_id": CLIENT_ID,
        "oauth_client_secret": CLIENT_SECRET,
        "oauth_refresh_token": "good-refresh-token",
        **extra,
    }
