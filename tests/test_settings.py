from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gateway.settings import ConfigError, load_settings, normalise_database_url

SERVE = {
    "secret_keys": "k" * 20,
    "public_url": "https://gw.example.com",
    "from_address": "gw@example.com",
    "smtp_host": "smtp.example.com",
}


def test_serve_needs_its_settings() -> None:
    load_settings("serve", _env_file=None, **SERVE)
    for name in SERVE:
        values = {k: v for k, v in SERVE.items() if k != name}
        with pytest.raises(ConfigError) as info:
            load_settings("serve", _env_file=None, **values)
        assert info.value.setting == f"GATEWAY_{name.upper()}"


@pytest.mark.parametrize(
    ("extra", "setting"),
    [
        ({"secret_keys": "short"}, "GATEWAY_SECRET_KEYS"),
        ({"secret_keys": " , "}, "GATEWAY_SECRET_KEYS"),
        ({"public_url": "gw.example.com"}, "GATEWAY_PUBLIC_URL"),
        ({"from_address": "nobody"}, "GATEWAY_FROM_ADDRESS"),
        ({"smtp_username": "u"}, "GATEWAY_SMTP_PASSWORD"),
        ({"imap_host": "imap.example.com"}, "GATEWAY_IMAP_USERNAME"),
        ({"imap_username": "u", "imap_password": "p"}, "GATEWAY_IMAP_HOST"),
        ({"smtp_security": "ssl"}, "GATEWAY_SMTP_SECURITY"),
        ({"smtp_port": "twenty-five"}, "GATEWAY_SMTP_PORT"),
        ({"database_url": "mysql://x"}, "GATEWAY_DATABASE_URL"),
        ({"default_expires_in": -5}, "GATEWAY_DEFAULT_EXPIRES_IN"),
    ],
)
def test_bad_settings_name_the_variable(extra: dict, setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings("serve", _env_file=None, **{**SERVE, **extra})
    assert info.value.setting == setting


def test_derived_values() -> None:
    s = load_settings("serve", _env_file=None, **{**SERVE, "secret_keys": "a" * 16 + ", " + "b" * 16})
    assert s.secret_key_list == ["a" * 16, "b" * 16]
    assert s.smtp_port_effective == 587 and s.imap_port_effective == 993
    assert s.reply_address_effective == "gw@example.com"
    assert normalise_database_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert normalise_database_url("postgresql://u@h/db") == "postgresql+asyncpg://u@h/db"


def test_cli_reports_one_line_and_exit_2(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gateway: configuration error: GATEWAY_")
    assert "Traceback" not in result.stderr


def test_env_file_is_read(tmp_path, monkeypatch) -> None:
    (tmp_path / ".env").write_text("GATEWAY_SMTP_PORT=not-a-port\n")
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("GATEWAY_"):
            monkeypatch.delenv(key)
    with pytest.raises(ConfigError) as info:
        load_settings("tool")
    assert info.value.setting == "GATEWAY_SMTP_PORT"
