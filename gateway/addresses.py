"""Email addresses: one validator for everything an agent sends, one normal form for comparing who someone is.

The validator accepts what can really be delivered: a dot-atom local part (RFC 5322; UTF-8 letters allowed,
RFC 6531, which needs an SMTP server with SMTPUTF8) at a domain of LDH labels (an internationalised domain is
kept in its ASCII form, so the envelope never needs SMTPUTF8 for it). Quoted local parts, comments, IP
literals and control characters are refused: each is a way to confuse a mail system, and no real approver
needs one. No input makes these functions raise anything but InvalidInputError.
"""

from __future__ import annotations

import re
from email.utils import parseaddr
from functools import lru_cache

from gateway.errors import InvalidInputError

_ATEXT = r"A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\U0010ffff"
_LOCAL_RE = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
_LABEL_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_NAMED_RE = re.compile(r".*<([^<>]*)>", re.DOTALL)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")


class InvalidAddressError(InvalidInputError):
    """``address`` is not one deliverable address; ``problem`` says why."""

    def __init__(self, address: object, problem: str) -> None:
        self.address = address
        self.problem = problem
        shown = repr(address) if isinstance(address, str) and len(address) <= 120 else "the address"
        super().__init__(f"{shown} is not an email address: {problem}")


def normalise(address: str) -> str:
    """Canonical form for comparing who someone is: the bare address, lowercased, its domain in ASCII.
    Anything unreadable gives "" (nobody), never an exception."""
    try:
        bare = parseaddr(address)[1].strip()
    except Exception:
        return ""
    local, at, domain = bare.rpartition("@")
    if not at:
        return bare.lower()
    return f"{local}@{_ascii_domain(domain) or domain}".lower()


def validate(address: object) -> str:
    """A single bare address (``name <a@b>`` is accepted and reduced), or InvalidAddressError."""
    if not isinstance(address, str):
        raise InvalidAddressError(address, "it must be text")
    return _validate(address)


@lru_cache(maxsize=4096)
def _validate(address: str) -> str:
    # Cached: approvers repeat. Errors are not cached (lru_cache keeps no exceptions).
    if _CONTROL_RE.search(address):
        raise InvalidAddressError(address, "it must be a single line without control characters")
    if len(address) > 1000:
        raise InvalidAddressError(address, "it is too long")
    named = _NAMED_RE.fullmatch(address.strip())  # "Name <addr>": the name may be anything on one line
    bare = (named.group(1) if named else address).strip()
    local, at, domain = bare.rpartition("@")
    if not at or not local or not domain:
        raise InvalidAddressError(address, "it needs a local part, an @ and a domain")
    if not _LOCAL_RE.fullmatch(local):
        raise InvalidAddressError(address, "the part before the @ may hold letters, digits and .!#$%&'*+-/=?^_`{|}~")
    if len(local.encode("utf-8")) > 64:
        raise InvalidAddressError(address, "the part before the @ is longer than 64 bytes")
    ascii_domain = _ascii_domain(domain)
    if ascii_domain is None:
        raise InvalidAddressError(address, "the domain is not a valid host name (labels of letters, digits, -)")
    bare = f"{local}@{ascii_domain}"
    if len(bare.encode("utf-8")) > 254:
        raise InvalidAddressError(address, "it is longer than 254 bytes")
    return bare


def _ascii_domain(domain: str) -> str | None:
    """The domain as the DNS knows it (IDNA for non-ASCII labels), or None when it cannot be one."""
    try:
        text = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except Exception:
        return None
    labels = text.lower().split(".")
    if len(labels) < 2 or len(text) > 253 or not all(_LABEL_RE.fullmatch(label) for label in labels):
        return None
    if labels[-1].isdigit():  # an IP address or a numeric TLD: not a mail domain
        return None
    return text


def needs_smtputf8(address: str) -> bool:
    """Whether sending to this (validated) address needs the server's SMTPUTF8 extension."""
    return not address.isascii()


def plus_address(mailbox: str, tag: str) -> str:
    """``replies@x`` with tag ``t`` gives ``replies+t@x``; an existing tag is replaced."""
    local, _, domain = mailbox.rpartition("@")
    local = local.split("+", 1)[0]
    return f"{local}+{tag}@{domain}"


def domain_of(address: str) -> str:
    return address.rpartition("@")[2] or "localhost"
