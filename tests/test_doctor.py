"""`gateway doctor` against real parts: Dovecot, aiosmtpd with AUTH, the gateway serving its public URL, and a
DNS server on loopback (dnslib) holding the mail domain's records. A good configuration passes; each broken setting
is its own failing line."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from dnslib.server import DNSServer
from dnslib.zoneresolver import ZoneResolver

from gateway import doctor
from tests.conftest import free_port, imap_settings, make_settings, run_gateway
from tests.processes import clean_env
from tests.test_smtp import PASSWORD, USER, _authenticate, smtp_server

ZONE = """
example.test.                  60 IN TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc.example.test.           60 IN TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.test"
selector1._domainkey.example.test. 60 IN TXT "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"
example.test.                  60 IN MX 10 mx.example.test.
nomail.test.                   60 IN TXT "v=spf1 -all"
"""


@pytest.fixture
def dns() -> Iterator[str]:
    port = free_port()
    server = DNSServer(ZoneResolver(ZONE), port=port, address="127.0.0.1")
    server.start_thread()
    yield f"127.0.0.1:{port}"
    server.stop()


def lines(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {c.name: c for c in checks}


async def test_a_good_configuration_passes_and_each_broken_setting_is_its_own_line(
    database_url: str, dovecot: Any, dns: str, tmp_path: Any
) -> None:
    with smtp_server(authenticator=_authenticate, auth_require_tls=False) as (smtp_port, _):
        port = free_port()
        good = {
            **imap_settings(dovecot),
            "secret_keys": "a-long-random-doctor-secret-0123456789abcdef",
            "smtp_username": USER,
            "smtp_password": PASSWORD,
            "dns_server": dns,
        }
        settings = make_settings(database_url, port, smtp_port, **good)
        async with run_gateway(settings, port):
            checks = await doctor.run(settings, doctor.resolver(dns))
            assert [c.line() for c in checks if not c.ok] == []
            found = lines(checks)
            assert {"database", "SMTP", "IMAP", "IMAP mailbox", "public URL", "SPF", "DMARC", "DKIM", "MX"} <= set(
                found
            )
            assert "selector1" in found["DKIM"].detail and "mx.example.test" in found["MX"].detail

            async def broken(**change: Any) -> list[str]:
                values = {**good, **change}
                bad = make_settings(database_url, port, values.pop("smtp_port", smtp_port), **values)
                return [c.line() for c in await doctor.run(bad, doctor.resolver(dns)) if not c.ok]

            (smtp,) = await broken(smtp_password="wrong")
            assert smtp.startswith("FAIL  SMTP:") and "refused the login" in smtp and "GATEWAY_SMTP_USERNAME" in smtp
            (imap,) = await broken(imap_password="wrong")
            assert imap.startswith("FAIL  IMAP:") and "refused the login" in imap
            (mailbox,) = await broken(imap_mailbox="Nope")
            assert mailbox.startswith("FAIL  IMAP mailbox:") and "GATEWAY_IMAP_MAILBOX" in mailbox
            elsewhere = await broken(secret_keys="another-deployments-secret-0123456789abcdef")  # another gateway
            assert (
                len(elsewhere) == 1
                and elsewhere[0].startswith("FAIL  public URL:")
                and "another gateway" in elsewhere[0]
            )
            dead_port = free_port()
            (url,) = await broken(public_url=f"http://127.0.0.1:{dead_port}")
            assert url.startswith("FAIL  public URL:") and "GATEWAY_PUBLIC_URL" in url
            nomail = await broken(from_address="gw@nomail.test", reply_address="replies@nomail.test")
            assert {line.split(":")[0] for line in nomail} == {"FAIL  DMARC", "FAIL  MX", "warn  DKIM"}
            placeholder = await broken(secret_keys="change-me-to-a-long-random-secret")
            assert placeholder[0].startswith("FAIL  secret key 1:") and "placeholder" in placeholder[0]
            assert len(placeholder) == 2 and "another gateway" in placeholder[1]  # another key: not this gateway
            (unreachable,) = await broken(smtp_port=free_port())
            assert unreachable.startswith("FAIL  SMTP:") and "cannot connect" in unreachable

            # The command: one line per check, exit 0; a broken setting makes it exit 1. --send-test really sends.
            env = {f"GATEWAY_{k.upper()}": str(v) for k, v in settings.model_dump().items() if v not in (None, "")}
            env = {k: v for k, v in env.items() if not k.startswith("GATEWAY_TEMPLATES")}
            ok = await _doctor(env, "--send-test", "alice@example.com")
            assert ok.returncode == 0, ok.stdout
            assert "ok    test mail: sent to alice@example.com" in ok.stdout
            assert (
                ok.stdout.strip().splitlines()[-1].startswith(f"{len(checks) + 1} of {len(checks) + 1} checks passed")
            )
            failing = await _doctor({**env, "GATEWAY_SMTP_PASSWORD": "wrong"})
            assert failing.returncode == 1 and "FAIL  SMTP:" in failing.stdout and "1 to fix" in failing.stdout


async def _doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    import asyncio

    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", "doctor", *args],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_bad_setting_is_one_failing_line(tmp_path: Any) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "doctor"],
        env=clean_env(GATEWAY_SECRET_KEYS="short"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and result.stdout.startswith("FAIL  settings:") and "Traceback" not in result.stderr
