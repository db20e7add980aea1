from __future__ import annotations

import email
import email.policy

import pytest

from gateway.mail.mime import HeaderInjectionError, alternative, header_value


def parse(raw: str):
    return email.message_from_string(raw, policy=email.policy.default)


def test_round_trip_with_non_ascii_everywhere() -> None:
    text = "Grüße, 東京 — naïve café\n" + "long line " * 30 + "\n.\nFrom here\n"
    html = "<p>Grüße <b>東京</b></p>\n" * 20
    raw = alternative([("Subject", "Überweisung prüfen: 500 € [#ABC]"), ("To", "a@example.com")], text, html)
    assert raw.isascii()
    assert all(len(line) <= 78 for line in raw.split("\r\n"))
    assert "\n" not in raw.replace("\r\n", "")
    msg = parse(raw)
    assert msg["Subject"] == "Überweisung prüfen: 500 € [#ABC]"
    assert msg.get_content_type() == "multipart/alternative"
    assert msg.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n") == text
    assert msg.get_body(preferencelist=("html",)).get_content().replace("\r\n", "\n") == html


def test_long_ascii_headers_are_folded_and_unfold_intact() -> None:
    refs = " ".join(f"<message-{i}@client.example.com>" for i in range(20))
    raw = alternative([("References", refs)], "x", "<p>x</p>")
    assert all(len(line) <= 78 for line in raw.split("\r\n"))
    assert parse(raw)["References"] == refs


def test_line_breaks_in_header_values_are_refused() -> None:
    with pytest.raises(HeaderInjectionError):
        header_value("Subject", "hi\r\nBcc: victim@example.com")
