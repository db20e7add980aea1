"""Email address handling shared by the API, the mail composer and (later) the inbound sender checks."""

from __future__ import annotations

from email.headerregistry import Address
from email.utils import parseaddr
from functools import lru_cache

from gateway.errors import InvalidInputError


def normalise(address: str) -> str:
    """Canonical form for comparing who someone is: the bare address, lowercased."""
    return parseaddr(address)[1].strip().lower()


def validate(address: str) -> str:
    """A single bare address (``name <a@b>`` is accepted and reduced), or InvalidInputError."""
    if not isinstance(address, str):
        raise InvalidInputError("an email address must be a single line of text")
    return _validate(address)


@lru_cache(maxsize=4096)
def _validate(address: str) -> str:
    # Cached: approvers repeat, and the stdlib's RFC 5322 parser costs ~0.1 ms an address. Errors are not
    # cached (lru_cache does not keep exceptions), so a bad address costs the full check each time.
    if "\n" in address or "\r" in address:
        raise InvalidInputError("an email address must be a single line of text")
    bare = parseaddr(address)[1].strip()
    local, at, domain = bare.rpartition("@")
    if not at or not local or "." not in domain or domain.startswith(".") or domain.endswith("."):
        raise InvalidInputError(f"{address!r} is not an email address")
    if len(bare) > 254 or any(c.isspace() for c in bare):
        raise InvalidInputError(f"{address!r} is not an email address")
    try:
        Address(addr_spec=bare)
    except (ValueError, IndexError) as exc:
        raise InvalidInputError(f"{address!r} is not an email address") from exc
    return bare


def plus_address(mailbox: str, tag: str) -> str:
    """``replies@x`` with tag ``t`` gives ``replies+t@x``; an existing tag is replaced."""
    local, _, domain = mailbox.rpartition("@")
    local = local.split("+", 1)[0]
    return f"{local}+{tag}@{domain}"


def domain_of(address: str) -> str:
    return address.rpartition("@")[2] or "localhost"
