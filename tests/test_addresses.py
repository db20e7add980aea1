"""The address validator: what can be delivered passes, in its canonical form; nothing else does, and no input
makes it raise anything but InvalidAddressError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import addresses
from gateway.addresses import InvalidAddressError


@pytest.mark.parametrize(
    ("given_", "expected"),
    [
        ("alice@example.com", "alice@example.com"),
        ("Alice Liddell <alice@Example.com>", "alice@Example.com"),
        ('"Liddell, Alice" <alice@example.com>', "alice@example.com"),
        ("o'neil+tag@mail.example.co.uk", "o'neil+tag@mail.example.co.uk"),
        ("bób@example.com", "bób@example.com"),  # EAI: allowed here; the SMTPUTF8 check is at submit
        ("bob@bücher.de", "bob@xn--bcher-kva.de"),  # IDN: the ASCII form the DNS knows
    ],
)
def test_deliverable_addresses(given_: str, expected: str) -> None:
    assert addresses.validate(given_) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "a@b..com",  # a 500 from the stdlib's HeaderParseError once
        "a@b",
        "a.@b.com",
        ".a@b.com",
        "a..b@c.com",
        '"a b"@x.com',
        "x@[127.0.0.1]",
        "x@1.2.3.4",
        "a@-b.com",
        "a@b-.com",
        "a@b.com, c@d.com",
        "a@b.com\r\nBcc: victim@x.com",
        "a\x00@b.com",
        "",
        "@b.com",
        "a@",
        "a" * 65 + "@b.com",
        "a@" + "b" * 64 + ".com",
        "(comment)a@b.com",
        "a@b.com (comment)",
    ],
)
def test_undeliverable_addresses_are_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(InvalidAddressError) as refused:
        addresses.validate(bad)
    assert "is not an email address" in refused.value.message


def test_not_text_is_refused() -> None:
    for value in (None, 3, ["a@b.com"], b"a@b.com"):
        with pytest.raises(InvalidAddressError):
            addresses.validate(value)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_an_address_or_a_clear_refusal(text: str) -> None:
    try:
        bare = addresses.validate(text)
    except InvalidAddressError:
        return
    assert addresses.validate(bare) == bare  # the canonical form is stable
    assert "\n" not in bare and "\r" not in bare and " " not in bare and bare.count("@") == 1
    assert addresses.normalise(bare) == bare.lower()


_ATOM = st.text(st.sampled_from("abcxyz0129!#$%&'*+-/=?^_`{|}~ßé"), min_size=1, max_size=10)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_ATOM, min_size=1, max_size=3),
    st.lists(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True), min_size=1, max_size=3),
    st.sampled_from(["com", "de", "example"]),
)
def test_every_dot_atom_at_a_host_name_is_accepted(local: list[str], labels: list[str], tld: str) -> None:
    address = f"{'.'.join(local)}@{'.'.join([*labels, tld])}"
    assert addresses.validate(address) == address


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_normalise_never_raises(text: str) -> None:
    assert isinstance(addresses.normalise(text), str)
