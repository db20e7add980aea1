"""OAuth 2.0 mail logins against real parts: a token server on loopback, Dovecot's oauth2 passdb checking tokens
against it, and aiosmtpd with an XOAUTH2 authenticator asking the same server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult

from gateway import oauth
from gateway.mail.smtp import ServerProblemError, SmtpTransport
from gateway.oauth import OAuthError, TokenSource, config_from
from gateway.runtime import Runtime
from tests import dovecot as dc
from tests.conftest import IN_CI, free_port, imap_settings, make_settings
from tests.oauth_server import TokenServer, oauth_settings
from tests.test_smtp import Recorder, mail


@pytest.fixture
async def tokens() -> AsyncIterator[TokenServer]:
    server = TokenServer()
    await server.start()
    yield server
    await server.stop()


# --- the token source --------------------------------------------------------------------------------------


async def test_tokens_are_cached_refreshed_before_expiry_and_after_a_refusal(tokens: TokenServer) -> None:
    source = TokenSource(config_from(make_settings("sqlite://", 1, 1, **oauth_settings(tokens))))
    first = await source.token()
    assert tokens.active(first) and tokens.grants == ["refresh_token"]
    assert await asyncio.gather(*(source.token() for _ in range(10))) == [first] * 10  # cached, one request
    source.invalidate()  # a refused login
    second = await source.token()
    assert second != first and source.fetched == 2
    tokens.lifetime = 2  # short-lived: fetched again at a tenth of its life before it runs out
    source.invalidate()
    short = await source.token()
    await asyncio.sleep(2 - 0.2 + 0.05)
    assert await source.token() != short and tokens.grants.count("refresh_token") == 4


async def test_a_revoked_refresh_token_is_a_clear_error_naming_the_setting(tokens: TokenServer) -> None:
    tokens.refresh_tokens.clear()
    source = TokenSource(config_from(make_settings("sqlite://", 1, 1, **oauth_settings(tokens))))
    with pytest.raises(OAuthError) as refused:
        await source.token()
    assert refused.value.setting == "GATEWAY_OAUTH_REFRESH_TOKEN" and "invalid_grant" in str(refused.value)
    assert "good-refresh-token" not in str(refused.value)  # never the secret itself
    wrong_client = TokenSource(
        config_from(make_settings("sqlite://", 1, 1, **oauth_settings(tokens, oauth_client_secret="nope")))
    )
    with pytest.raises(OAuthError, match="invalid_client"):
        await wrong_client.token()
    nowhere = TokenSource(
        config_from(
            make_settings(
                "sqlite://", 1, 1, **oauth_settings(tokens, oauth_token_url=f"http://127.0.0.1:{free_port()}/t")
            )
        )
    )
    with pytest.raises(OAuthError, match="GATEWAY_OAUTH_TOKEN_URL"):
        await nowhere.token()


async def test_client_credentials_for_app_only_access(tokens: TokenServer) -> None:
    settings = make_settings("sqlite://", 1, 1, **oauth_settings(tokens, oauth_refresh_token=None))
    assert await TokenSource(config_from(settings)).token()
    assert tokens.grants == ["client_credentials"]


def test_providers_fill_in_the_token_url_and_scope() -> None:
    google = config_from(make_settings("sqlite://", 1, 1, oauth_provider="google", oauth_refresh_token="r"))
    assert google.token_url == oauth.GOOGLE_TOKEN_URL and google.scope == "https://mail.google.com/"
    app = config_from(make_settings("sqlite://", 1, 1, oauth_provider="microsoft", oauth_tenant="contoso.com"))
    assert app.token_url == "https://login.microsoftonline.com/contoso.com/oauth2/v2.0/token"
    assert app.scope == "https://outlook.office365.com/.default" and app.grant == "client_credentials"
    user = config_from(make_settings("sqlite://", 1, 1, oauth_provider="microsoft", oauth_refresh_token="r"))
    assert "IMAP.AccessAsUser.All" in (user.scope or "") and user.grant == "refresh_token"


# --- SMTP: aiosmtpd with XOAUTH2 ---------------------------------------------------------------------------


class OAuthRecorder(Recorder):
    def __init__(self, server: TokenServer) -> None:
        super().__init__()
        self.server = server
        self.refused = 0
        self.mechanisms: list[str] = []

    async def auth_XOAUTH2(self, smtp: SMTPServer, args: list[str]) -> AuthResult:
        initial = args[1] if len(args) > 1 else await smtp.challenge_auth("")
        text = base64.b64decode(initial).decode() if isinstance(initial, str) else initial.decode()
        fields = dict(part.split("=", 1) for part in text.split("\x01") if "=" in part)
        token = fields.get("auth", "").removeprefix("Bearer ")
        self.mechanisms.append("XOAUTH2")
        if fields.get("user") == self.server.user and self.server.active(token):
            return AuthResult(success=True, auth_data=fields["user"])
        return await self._refuse(smtp)

    async def auth_OAUTHBEARER(self, smtp: SMTPServer, args: list[str]) -> AuthResult:
        initial = args[1] if len(args) > 1 else await smtp.challenge_auth("")
        text = base64.b64decode(initial).decode() if isinstance(initial, str) else initial.decode()
        gs2, _, rest = text.partition("\x01")
        user = gs2.split("a=", 1)[1].split(",", 1)[0] if "a=" in gs2 else ""
        fields = dict(part.split("=", 1) for part in rest.split("\x01") if "=" in part)
        token = fields.get("auth", "").removeprefix("Bearer ")
        self.mechanisms.append("OAUTHBEARER")
        if user == self.server.user and self.server.active(token):
            return AuthResult(success=True, auth_data=user)
        return await self._refuse(smtp)

    async def _refuse(self, smtp: SMTPServer) -> AuthResult:
        self.refused += 1
        await smtp.challenge_auth('{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}')
        return AuthResult(success=False, handled=False, message="535 5.7.8 Username and Password not accepted")


@contextlib.contextmanager
def oauth_smtp(server: TokenServer, exclude: tuple[str, ...] = ()) -> Iterator[tuple[int, OAuthRecorder]]:
    recorder = OAuthRecorder(server)
    port = free_port()
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port,
        auth_require_tls=False,
        auth_required=True,
        auth_exclude_mechanism=["LOGIN", "PLAIN", *exclude],
    )
    controller.start()
    try:
        yield port, recorder
    finally:
        controller.stop()


@pytest.mark.parametrize("offered", ["OAUTHBEARER", "XOAUTH2"])
async def test_smtp_with_oauth_and_a_token_that_expired(tokens: TokenServer, offered: str) -> None:
    """OAUTHBEARER where the server offers it, else XOAUTH2; a token the server refuses is fetched anew once."""
    exclude = () if offered == "OAUTHBEARER" else ("OAUTHBEARER",)
    with oauth_smtp(tokens, exclude) as (port, server):
        settings = make_settings(
            "sqlite://", 1, port, smtp_auth="oauth2", smtp_username="gateway", **oauth_settings(tokens)
        )
        source = oauth.token_source(settings)
        assert source is not None
        smtp = SmtpTransport(settings, source)
        try:
            await smtp.send(mail("alice@example.com"))
            await smtp.close()
            tokens.expire_all()  # the cached token still looks fresh to us, but the server refuses it
            await smtp.send(mail("bob@example.com"))
        finally:
            await smtp.close()
        assert [rcpt for _, rcpt, _, _ in server.accepted] == [["alice@example.com"], ["bob@example.com"]]
        assert server.refused == 1 and source.fetched == 2  # refused once, a new token, sent once
        assert set(server.mechanisms) == {offered}
        tokens.refresh_tokens.clear()
        tokens.expire_all()
        revoked = SmtpTransport(settings, source)
        with pytest.raises(ServerProblemError, match="GATEWAY_OAUTH_REFRESH_TOKEN"):  # held, not failed
            await revoked.send(mail("carol@example.com"))


# --- IMAP: Dovecot's oauth2 passdb -------------------------------------------------------------------------


@pytest.fixture(params=["xoauth2 oauthbearer", "xoauth2"])
def oauth_dovecot(request: pytest.FixtureRequest, tokens: TokenServer) -> Iterator[Any]:
    """Dovecot checking tokens with the token server: offering OAUTHBEARER (which the gateway then uses) and
    XOAUTH2, or XOAUTH2 alone (as Microsoft 365 does)."""
    if not dc.available():
        if IN_CI:
            pytest.fail("Dovecot is not installed (apt-get install dovecot-imapd)")
        pytest.skip("Dovecot is not installed")
    server = dc.Dovecot(introspection_url=f"{tokens.url}/introspect", oauth_mechanisms=request.param)
    server.setup()
    server.start()
    yield server
    server.cleanup()


# Each mechanism once, each database once (the four combinations cost a CI minute and test nothing more).
@pytest.mark.parametrize(
    ("database_url", "oauth_dovecot"), [("sqlite", "xoauth2 oauthbearer"), ("postgres", "xoauth2")], indirect=True
)
async def test_the_poller_logs_in_with_oauth_survives_expiry_and_a_revoked_grant(
    database_url: str, smtp_sink: Any, tokens: TokenServer, oauth_dovecot: Any
) -> None:
    imap = {**imap_settings(oauth_dovecot), "imap_auth": "oauth2", "imap_password": None}
    settings = make_settings(database_url, free_port(), smtp_sink.port, **imap, **oauth_settings(tokens))
    runtime = Runtime(settings)
    svc = await runtime.start()
    poller = runtime.poller
    assert poller is not None and svc.oauth is not None
    poller.RETRY_MAX = 0.5  # type: ignore[misc]  # keep the test's reconnects quick

    async def until(predicate: Any, timeout: float = 20) -> None:
        for _ in range(int(timeout / 0.05)):
            if predicate():
                return
            await asyncio.sleep(0.05)
        raise AssertionError("condition not reached")

    try:
        await until(lambda: poller.status.connected)
        assert tokens.introspections >= 1  # Dovecot asked the token server
        await asyncio.to_thread(oauth_dovecot.append, b"Subject: one\r\nMessage-ID: <one@x>\r\n\r\nhello\r\n")
        await until(lambda: poller.status.processed == 1)

        # The token expires mid-run; the server restarts, so the poller must log in again: a new token.
        fetched = svc.oauth.fetched
        tokens.expire_all()
        await asyncio.to_thread(oauth_dovecot.restart)
        await until(lambda: poller.status.connected and svc.oauth.fetched > fetched)
        await asyncio.to_thread(oauth_dovecot.append, b"Subject: two\r\nMessage-ID: <two@x>\r\n\r\nhello\r\n")
        await until(lambda: poller.status.processed == 2)

        # The grant is revoked: a clear error naming the setting, and mail that arrives meanwhile waits.
        tokens.refresh_tokens.clear()
        tokens.expire_all()
        await asyncio.to_thread(oauth_dovecot.restart)
        await until(lambda: poller.status.login_refused)
        assert "GATEWAY_OAUTH_REFRESH_TOKEN" in (poller.status.last_error or "")
        await asyncio.to_thread(oauth_dovecot.append, b"Subject: three\r\nMessage-ID: <three@x>\r\n\r\nhello\r\n")
        tokens.refresh_tokens.add("good-refresh-token")  # fixed
        await until(lambda: poller.status.processed == 3)  # nothing lost
        assert not poller.status.login_refused
    finally:
        await runtime.stop()
