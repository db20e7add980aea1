from __future__ import annotations

import contextlib
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.links.tokens import Signer, TokenError, TokenExpiredError

KEY_A = "first-secret-key-aaaaaaaaaaaa"
KEY_B = "second-secret-key-bbbbbbbbbbb"


def test_link_round_trip_and_expiry() -> None:
    signer = Signer([KEY_A], 3600)
    token = signer.sign_link("rcp_abc", time.time() + 60)
    assert signer.verify_link(token).recipient_id == "rcp_abc"
    with pytest.raises(TokenExpiredError) as info:
        signer.verify_link(token, now=time.time() + 120)
    assert info.value.recipient_id == "rcp_abc"


def test_link_without_request_expiry_uses_the_max_age() -> None:
    signer = Signer([KEY_A], 100)
    claim = signer.verify_link(signer.sign_link("rcp_abc", None))
    assert time.time() + 90 < claim.expires_at <= time.time() + 101


def _flip(token: str, index: int) -> str:
    return token[:index] + ("A" if token[index] != "A" else "B") + token[index + 1 :]


# The last base64 character of a signature can differ only in unused padding bits (same bytes, same token),
# so tampering is tested in the middle of the signature and in the payload.
@pytest.mark.parametrize(
    "mutate", [lambda t: _flip(t, len(t) - 10), lambda t: _flip(t, 3), lambda t: t[5:], lambda t: "x" + t]
)
def test_tampered_link_is_refused(mutate) -> None:
    signer = Signer([KEY_A], 3600)
    with pytest.raises(TokenError):
        signer.verify_link(mutate(signer.sign_link("rcp_abc", None)))


def test_keys_rotate_last_signs_all_verify() -> None:
    old = Signer([KEY_A], 3600)
    rotated = Signer([KEY_A, KEY_B], 3600)
    new_only = Signer([KEY_B], 3600)
    old_token = old.sign_link("rcp_1", None)
    assert rotated.verify_link(old_token).recipient_id == "rcp_1"
    new_token = rotated.sign_link("rcp_2", None)
    assert new_only.verify_link(new_token).recipient_id == "rcp_2"
    with pytest.raises(TokenError):
        new_only.verify_link(old_token)
    assert rotated.verify_reply(old.sign_reply("rcp_3")) == "rcp_3"
    assert new_only.verify_reply(rotated.sign_reply("rcp_4")) == "rcp_4"


def test_purposes_do_not_mix() -> None:
    signer = Signer([KEY_A], 3600)
    csrf = signer.sign_csrf("rcp_abc")
    with pytest.raises(TokenError):
        signer.verify_link(csrf)
    with pytest.raises(TokenError):
        signer.verify_csrf(signer.sign_link("rcp_abc", None), "rcp_abc")


def test_csrf_is_bound_to_the_recipient() -> None:
    signer = Signer([KEY_A], 3600)
    signer.verify_csrf(signer.sign_csrf("rcp_a"), "rcp_a")
    with pytest.raises(TokenError):
        signer.verify_csrf(signer.sign_csrf("rcp_a"), "rcp_b")


def test_reply_tag_survives_case_folding_and_fits_a_local_part() -> None:
    signer = Signer([KEY_A], 3600)
    recipient = "rcp_abuh6kr2tpxxesk6unrdq6zwks"
    tag = signer.sign_reply(recipient)
    assert tag == tag.lower() and all(c.isalnum() or c == "-" for c in tag)
    assert len("replies+" + tag) <= 64
    assert signer.verify_reply(tag.upper()) == recipient
    with pytest.raises(TokenError):
        signer.verify_reply(tag[:-1] + ("a" if tag[-1] != "a" else "b"))
    with pytest.raises(TokenError):
        Signer([KEY_B], 3600).verify_reply(tag)
    with pytest.raises(TokenError):
        signer.verify_reply("nonsense")


# --- never anything but TokenError (Hypothesis) ---------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_the_verifiers_raise_only_token_errors_on_any_text(text: str) -> None:
    signer = Signer([KEY_A, KEY_B], 3600)
    for verify in (
        signer.verify_link,
        signer.verify_reply,
        signer.verify_inbox,
        lambda t: signer.verify_csrf(t, "rcp_x"),
    ):
        with contextlib.suppress(TokenError):
            verify(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.integers(min_value=0, max_value=80))
def test_a_tampered_reply_tag_is_refused_not_crashed(insert: str, at: int) -> None:
    signer = Signer([KEY_A], 3600)
    tag = signer.sign_reply("rcp_abcdefgh")
    at = min(at, len(tag))
    tampered = tag[:at] + insert + tag[at:]
    try:
        found = signer.verify_reply(tampered)
    except TokenError:
        return
    assert found == "rcp_abcdefgh" and tampered.strip().lower() == tag  # only case and edge whitespace may differ


def test_a_non_ascii_reply_tag_is_a_token_error() -> None:
    signer = Signer([KEY_A], 3600)
    for tag in ("abc-ünï", "ünï-" + signer.sign_reply("rcp_x").split("-")[1], "\x00-\x00"):
        with pytest.raises(TokenError):
            signer.verify_reply(tag)


def test_a_signed_link_with_an_odd_payload_is_refused() -> None:
    from itsdangerous import URLSafeTimedSerializer

    from gateway.links.tokens import LINK_SALT

    forge = URLSafeTimedSerializer([KEY_A], salt=LINK_SALT)  # as if a key had signed something else
    signer = Signer([KEY_A], 3600)
    for payload in (["rcp_x", "soon"], ["rcp_x", None], ["rcp_x", True], {"a": 1}, ["rcp_x"], "rcp_x"):
        with pytest.raises(TokenError):
            signer.verify_link(forge.dumps(payload))


def test_an_inbox_link_names_its_address_expires_and_is_no_other_token() -> None:
    signer = Signer([KEY_A], 3600)
    token = signer.sign_inbox("alice@example.com", now=1_000)
    assert signer.verify_inbox(token, now=1_000 + 3599) == "alice@example.com"
    with pytest.raises(TokenExpiredError):
        signer.verify_inbox(token, now=1_000 + 3601)
    with pytest.raises(TokenError):
        signer.verify_link(token)
    with pytest.raises(TokenError):
        signer.verify_inbox(signer.sign_link("rcp_abc", None))
