"""OAuth 2.0 access tokens for the mail logins (SASL XOAUTH2), shared by the SMTP transport and the IMAP poller.

Two grants: the refresh-token grant (Google, and any provider where a person consented once) and the
client-credentials grant (Microsoft 365 app-only access, for a tenant). A token is cached, fetched again a minute
before it expires (or at a tenth of its life, for short ones) and after a refused login (``invalidate``).
Tokens never reach a log or the audit trail: errors carry the token server's error code, never a token.
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass

import httpx

from gateway.settings import Settings

GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GOOGLE_SCOPE = "https://mail.google.com/"
MICROSOFT_TOKEN_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
MICROSOFT_APP_SCOPE = "https://outlook.office365.com/.default"  # app-only (client credentials)
MICROSOFT_USER_SCOPE = (  # delegated (refresh token)
    "https://outlook.office.com/IMAP.AccessAsUser.All https://outlook.office.com/SMTP.Send offline_access"
)


class OAuthError(Exception):
    """The token server would not give a token; ``setting`` names what to fix."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"{setting}: {problem}")


@dataclass(frozen=True)
class OAuthConfig:
    token_url: str
    client_id: str
    client_secret: str | None
    scope: str | None
    refresh_token: str | None

    @property
    def grant(self) -> str:
        return "refresh_token" if self.refresh_token else "client_credentials"


def config_from(settings: Settings) -> OAuthConfig:
    """The token request the settings describe; OAUTH_PROVIDER fills in the URL and scope not given."""
    provider = (settings.oauth_provider or "").lower()
    token_url, scope = settings.oauth_token_url, settings.oauth_scope
    if provider == "google":
        token_url = token_url or GOOGLE_TOKEN_URL
        scope = scope or GOOGLE_SCOPE
    elif provider == "microsoft":
        token_url = token_url or MICROSOFT_TOKEN_URL.format(tenant=settings.oauth_tenant or "common")
        scope = scope or (MICROSOFT_USER_SCOPE if settings.oauth_refresh_token else MICROSOFT_APP_SCOPE)
    return OAuthConfig(
        token_url=token_url or "",
        client_id=settings.oauth_client_id or "",
        client_secret=settings.oauth_client_secret,
        scope=scope,
        refresh_token=settings.oauth_refresh_token,
    )


def xoauth2(user: str, token: str) -> str:
    """The XOAUTH2 initial response (Google's and Microsoft's SASL mechanism), base64."""
    return base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode()).decode("ascii")


def oauthbearer(user: str, token: str) -> str:
    """The OAUTHBEARER initial response (RFC 7628): a GS2 header naming the user, then the bearer token."""
    name = user.replace("=", "=3D").replace(",", "=2C")
    return base64.b64encode(f"n,a={name},\x01auth=Bearer {token}\x01\x01".encode()).decode("ascii")


class TokenSource:
    """One cached access token, fetched when needed; concurrent callers share one request."""

    EARLY = 60.0  # seconds before expiry that a token is fetched anew

    def __init__(self, config: OAuthConfig, timeout: float = 15.0) -> None:
        self.config = config
        self.timeout = timeout
        self._token: str | None = None
        self._expires = 0.0
        self._refresh_token = config.refresh_token
        self._lock = asyncio.Lock()
        self.fetched = 0  # how many tokens were fetched (for /healthz and tests)

    async def token(self) -> str:
        async with self._lock:
            if self._token is None or time.monotonic() >= self._expires:
                await self._fetch()
            assert self._token is not None
            return self._token

    def invalidate(self) -> None:
        """The server refused a login with the cached token: the next call fetches a new one."""
        self._token = None

    async def _fetch(self) -> None:
        config = self.config
        data = {"grant_type": config.grant}
        if config.refresh_token:
            data["refresh_token"] = self._refresh_token or ""
        if config.scope:
            data["scope"] = config.scope
        auth: httpx.Auth | None = None
        if config.client_secret:  # client_secret_basic (RFC 6749 §2.3.1)
            auth = httpx.BasicAuth(config.client_id, config.client_secret)
        else:
            data["client_id"] = config.client_id  # a public client (no secret)
        try:
            async with httpx.AsyncClient(timeout=self.timeout, trust_env=False, auth=auth) as client:
                response = await client.post(config.token_url, data=data)
        except httpx.HTTPError as exc:
            raise OAuthError(
                "GATEWAY_OAUTH_TOKEN_URL", f"cannot reach the token server: {type(exc).__name__}"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
            code = str((body.get("error") if isinstance(body, dict) else None) or response.status_code)
            setting = "GATEWAY_OAUTH_REFRESH_TOKEN" if code == "invalid_grant" else "GATEWAY_OAUTH_CLIENT_ID/SECRET"
            if code in ("invalid_scope",):
                setting = "GATEWAY_OAUTH_SCOPE"
            raise OAuthError(setting, f"the token server refused the {config.grant} grant ({code})")
        try:
            lifetime = max(1.0, float(body.get("expires_in") or 3600))
        except (TypeError, ValueError):
            lifetime = 3600.0
        self._token = str(body["access_token"])
        if body.get("refresh_token"):  # some servers rotate it
            self._refresh_token = str(body["refresh_token"])
        self._expires = time.monotonic() + lifetime - min(self.EARLY, lifetime / 10)
        self.fetched += 1


def token_source(settings: Settings) -> TokenSource | None:
    """The process's token source when SMTP or IMAP logs in with OAuth, else None."""
    if settings.smtp_auth != "oauth2" and settings.imap_auth != "oauth2":
        return None
    return TokenSource(config_from(settings))
