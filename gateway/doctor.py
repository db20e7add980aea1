"""`gateway doctor`: the live configuration checked the way mail will use it, one line per check with what to fix.

Each check is a small async function returning :class:`Check` results; none raises (a failure is a result). The
checks talk to the real servers: SMTP and IMAP connect and log in (password or OAuth), the public URL must answer
as *this* gateway (its /healthz carries a fingerprint derived from the secret keys, so a proxy's error page or
another deployment does not pass), and the mail domains' DNS records are looked up with dnspython.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from gateway import addresses
from gateway.links.tokens import Signer
from gateway.settings import Settings

_NEW_KEY = "use `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
PLACEHOLDER_RE = re.compile(r"change[-_ ]?me|example|placeholder|your[-_ ]|^(secret|password|test)$|xxxx", re.I)
DKIM_SELECTORS = ("default", "google", "selector1", "selector2", "k1", "s1", "s2", "mail", "dkim", "mx", "pm", "smtp")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False  # reported, but does not fail the run (e.g. no DKIM record found under known selectors)

    def line(self) -> str:
        mark = "ok  " if self.ok else ("warn" if self.warning else "FAIL")
        return f"{mark}  {self.name}: {self.detail}" + (f" -> {self.fix}" if self.fix and not self.ok else "")


# --- the checks ---------------------------------------------------------------------------------------


def check_secrets(settings: Settings) -> list[Check]:
    keys = settings.secret_key_list
    if not keys:
        return [Check("secret keys", False, "GATEWAY_SECRET_KEYS is not set", "set 32+ random characters")]
    out = []
    for n, key in enumerate(keys, 1):
        if PLACEHOLDER_RE.search(key):
            out.append(Check(f"secret key {n}", False, "looks like a placeholder", _NEW_KEY))
        elif len(key) < 32:
            out.append(Check(f"secret key {n}", False, f"{len(key)} characters", "use at least 32 random characters"))
        else:
            out.append(Check(f"secret key {n}", True, f"{len(key)} characters"))
    for name, value in (("SMTP password", settings.smtp_password), ("IMAP password", settings.imap_password)):
        if value and PLACEHOLDER_RE.search(value):
            out.append(Check(name, False, "looks like a placeholder", f"set GATEWAY_{name.split()[0]}_PASSWORD"))
    if settings.inbound_secret is not None and len(settings.inbound_secret) < 24:
        out.append(Check("inbound secret", False, "shorter than 24 characters", "use 32+ random characters"))
    return out


async def check_database(settings: Settings) -> list[Check]:
    from gateway.db import Database

    db = Database(settings.async_database_url)
    try:
        await db.ping()
        return [Check("database", True, "answers")]
    except Exception as exc:
        return [Check("database", False, f"{type(exc).__name__}: {str(exc)[:200]}", "check GATEWAY_DATABASE_URL")]
    finally:
        await db.dispose()


async def check_smtp(settings: Settings) -> list[Check]:
    from gateway.mail.smtp import DeliveryError, SmtpTransport
    from gateway.oauth import token_source

    where = f"{settings.smtp_host}:{settings.smtp_port_effective}"
    if not settings.smtp_host:
        return [Check("SMTP", False, "GATEWAY_SMTP_HOST is not set", "set your mail server")]
    transport = SmtpTransport(settings, token_source(settings))
    try:
        client = await transport.connect()
    except DeliveryError as exc:
        return [Check("SMTP", False, f"{where}: {exc.reason}", _smtp_fix(exc.reason))]
    try:
        tls = client.get_transport_info("sslcontext") is not None or settings.smtp_security == "tls"
        login = "no login" if not settings.smtp_username else f"{settings.smtp_auth} login as {settings.smtp_username}"
        checks = [Check("SMTP", True, f"{where} answers ({'TLS' if tls else 'no TLS'}, {login} accepted)")]
        if settings.smtp_security == "none" and settings.smtp_host not in ("127.0.0.1", "localhost", "::1"):
            checks.append(
                Check("SMTP TLS", False, "GATEWAY_SMTP_SECURITY=none to a remote server", "use starttls or tls")
            )
        if settings.smtp_utf8 and not client.supports_extension("smtputf8"):
            checks.append(
                Check("SMTPUTF8", False, "GATEWAY_SMTP_UTF8=true, but the server does not offer it", "unset it")
            )
        return checks
    finally:
        await transport.close()


def _smtp_fix(reason: str) -> str:
    if "login" in reason or "OAUTH" in reason:
        return "check GATEWAY_SMTP_USERNAME and the password or OAuth settings"
    if "certificate" in reason.lower() or "ssl" in reason.lower():
        return "check GATEWAY_SMTP_SECURITY (starttls on 587, tls on 465) and GATEWAY_SMTP_CA_FILE"
    return "check GATEWAY_SMTP_HOST, GATEWAY_SMTP_PORT and GATEWAY_SMTP_SECURITY"


async def check_imap(settings: Settings) -> list[Check]:
    if not settings.imap_host:
        if settings.inbound_secret or settings.mailgun_signing_key:
            return [Check("replies", True, "by webhook only (/inbound/*); no IMAP mailbox")]
        return [
            Check(
                "replies",
                False,
                "no way in: neither GATEWAY_IMAP_HOST nor an inbound webhook secret",
                "set GATEWAY_IMAP_HOST (and credentials) or GATEWAY_INBOUND_SECRET",
                warning=True,
            )
        ]
    from gateway.inbound.poller import ImapPoller, LoginRefusedError
    from gateway.oauth import token_source

    class _Svc:  # the poller's connect needs only the settings and the token source
        def __init__(self) -> None:
            self.settings = settings
            self.oauth = token_source(settings)

    where = f"{settings.imap_host}:{settings.imap_port_effective}"
    poller = ImapPoller(_Svc())  # type: ignore[arg-type]
    try:
        client = await poller.connect()
    except LoginRefusedError as exc:
        return [
            Check("IMAP", False, f"{where}: {exc}", "check GATEWAY_IMAP_USERNAME and the password or OAuth settings")
        ]
    except Exception as exc:  # network, TLS, protocol: each is a line, not a traceback
        return [
            Check(
                "IMAP",
                False,
                f"{where}: {type(exc).__name__}: {str(exc)[:200]}",
                "check GATEWAY_IMAP_HOST, _PORT and _SECURITY",
            )
        ]
    checks = [Check("IMAP", True, f"{where} answers, {settings.imap_auth} login as {settings.imap_username} accepted")]
    try:
        selected = await client.select(settings.imap_mailbox)
        if selected.result == "OK":
            checks.append(Check("IMAP mailbox", True, f"{settings.imap_mailbox} exists"))
        else:
            checks.append(
                Check(
                    "IMAP mailbox", False, f"{settings.imap_mailbox} cannot be selected", "check GATEWAY_IMAP_MAILBOX"
                )
            )
        await client.protocol.capability()  # as the session sees them after the login
        idle = client.has_capability("IDLE")
        checks.append(Check("IMAP IDLE", idle, "offered" if idle else "not offered: replies are polled", warning=True))
    finally:
        with contextlib.suppress(Exception):  # leaving anyway
            await asyncio.wait_for(client.logout(), 5)
    return checks


async def check_public_url(settings: Settings) -> list[Check]:
    url = f"{settings.public_base}/healthz"
    try:
        async with httpx.AsyncClient(timeout=10, follow_redirects=False, trust_env=False) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        return [
            Check(
                "public URL",
                False,
                f"{url}: {type(exc).__name__}",
                "is the gateway running and GATEWAY_PUBLIC_URL its address?",
            )
        ]
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    theirs = body.get("gateway") if isinstance(body, dict) else None
    keys = settings.secret_key_list
    if not keys or theirs != Signer(keys, 1).fingerprint:
        what = "another gateway (other secret keys)" if theirs else f"HTTP {response.status_code}, not this gateway"
        return [
            Check(
                "public URL",
                False,
                f"{url} answers as {what}",
                "point GATEWAY_PUBLIC_URL (and the proxy) at this gateway",
            )
        ]
    return [Check("public URL", True, f"{settings.public_base} answers as this gateway")]


Resolve = Callable[[str, str], Awaitable[list[str]]]


def resolver(nameserver: str | None = None) -> Resolve:
    import dns.asyncresolver
    import dns.exception

    res = dns.asyncresolver.Resolver(configure=nameserver is None)
    if nameserver:
        host, _, port = nameserver.partition(":")
        res.nameservers = [host]
        res.port = int(port or 53)
    res.lifetime = 5.0

    async def resolve(name: str, kind: str) -> list[str]:
        try:
            answer = await res.resolve(name, kind)
        except (dns.exception.DNSException, OSError):
            return []
        if kind == "TXT":
            return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]
        return [r.to_text() for r in answer]

    return resolve


async def check_dns(settings: Settings, resolve: Resolve) -> list[Check]:
    checks = []
    sender = settings.from_address or ""
    domain = addresses.domain_of(sender).lower()
    spf = [t for t in await resolve(domain, "TXT") if t.lower().startswith("v=spf1")]
    checks.append(
        Check(
            "SPF",
            len(spf) == 1,
            f"{domain}: {spf[0]}" if len(spf) == 1 else f"{domain}: {len(spf)} SPF records",
            "publish one TXT record `v=spf1 include:<your provider> ~all`",
        )
    )
    dmarc = [t for t in await resolve(f"_dmarc.{domain}", "TXT") if t.lower().startswith("v=dmarc1")]
    checks.append(
        Check(
            "DMARC",
            bool(dmarc),
            f"_dmarc.{domain}: {dmarc[0]}" if dmarc else f"_dmarc.{domain}: none",
            "publish `v=DMARC1; p=none; rua=mailto:...` at _dmarc, then tighten",
        )
    )
    selectors = [settings.dkim_selector] if settings.dkim_selector else list(DKIM_SELECTORS)
    found = []
    for selector in selectors:
        if any("p=" in t for t in await resolve(f"{selector}._domainkey.{domain}", "TXT")):
            found.append(selector)
    checks.append(
        Check(
            "DKIM",
            bool(found),
            f"{domain}: selector {', '.join(found)}" if found else f"{domain}: no key under {', '.join(selectors)}",
            "turn on DKIM signing at your provider (or set GATEWAY_DKIM_SELECTOR to the one you use)",
            warning=not settings.dkim_selector,
        )
    )
    reply_domain = addresses.domain_of(settings.reply_address_effective or sender).lower()
    mx = await resolve(reply_domain, "MX")
    checks.append(
        Check(
            "MX",
            bool(mx),
            f"{reply_domain}: {', '.join(sorted(mx))}" if mx else f"{reply_domain}: no MX record",
            "replies cannot arrive: publish the MX of the mailbox (or provider) that receives them",
        )
    )
    return checks


async def run(settings: Settings, resolve: Resolve | None = None) -> list[Check]:
    """Every check, in the order a person would fix them."""
    checks = check_secrets(settings)
    checks += await check_database(settings)
    checks += await check_smtp(settings)
    checks += await check_imap(settings)
    checks += await check_public_url(settings)
    checks += await check_dns(settings, resolve or resolver(settings.dns_server))
    return checks


async def send_test(settings: Settings, to: str) -> Check:
    """One real mail through the outbox: stored as an outbox row (claimed by this run, so a running gateway's
    sender leaves it alone), sent over the configured SMTP, its outcome recorded as any mail's, and reported."""
    from datetime import timedelta
    from email.utils import format_datetime, make_msgid

    from gateway.db import Database
    from gateway.mail import mime
    from gateway.mail.outbox import OutboxSender
    from gateway.mail.smtp import SmtpTransport
    from gateway.models import OutboxMessage, build, new_id, utcnow
    from gateway.oauth import token_source
    from gateway.services import Services
    from gateway.templating import make_environment

    try:
        address = addresses.validate(to)
    except addresses.InvalidAddressError as exc:
        return Check("test mail", False, exc.message, "give one address")
    db = Database(settings.async_database_url)
    signer = Signer(settings.secret_key_list or ["doctor-placeholder-key"], 3600)
    svc = Services(settings=settings, db=db, signer=signer, templates=make_environment(settings.templates_dir))
    sender = settings.from_address or "gateway@localhost"
    message_id = make_msgid(domain=addresses.domain_of(sender))
    headers = [
        ("Subject", "gateway doctor: a test mail"),
        ("From", sender),
        ("To", address),
        ("Date", format_datetime(utcnow())),
        ("Message-ID", message_id),
        ("Auto-Submitted", "auto-generated"),
    ]
    text = "This is a test mail from `gateway doctor`. Nothing to do."
    row = build(
        OutboxMessage,
        id=new_id("out"),
        kind="test",
        mail_from=sender,
        rcpt_to=[address],
        message_id=message_id,
        raw=mime.alternative(headers, text, f"<p>{text}</p>"),
        lease_until=utcnow() + timedelta(minutes=5),
    )
    transport = SmtpTransport(settings, token_source(settings))
    try:
        async with db.write() as session:
            session.add(row)
        outbox = OutboxSender(svc, transport)
        outcome = await outbox.attempt(row, transport)
        await outbox.record([(row, outcome, False)])
        async with db.read() as session:
            final = await session.get(OutboxMessage, row.id)
    finally:
        await transport.close()
        await db.dispose()
    if final is not None and final.status == "sent":
        return Check("test mail", True, f"sent to {address} ({message_id})")
    status = final.status if final else "lost"
    error = (final.last_error if final else "") or ""
    return Check("test mail", False, f"to {address}: {status}: {error}", "see the SMTP line above")
