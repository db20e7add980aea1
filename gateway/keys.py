"""API keys: a random secret shown once; only its SHA-256 is stored, with a short prefix to show and find it.

A fast hash is right here (unlike passwords): the secret has 190 bits of entropy, so there is nothing to
brute-force, and every API call must verify it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import col, select

from gateway.db import Database
from gateway.models import ApiKey, new_id, random_token, utcnow

log = logging.getLogger("gateway.keys")

KEY_PREFIX = "gw_"


ROLES = ("agent", "responder")


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    role: str = "agent"


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8", "surrogatepass")).hexdigest()


def _split(plaintext: str) -> tuple[str, str] | None:
    if not plaintext.startswith(KEY_PREFIX):
        return None
    prefix, sep, secret = plaintext[len(KEY_PREFIX) :].partition("_")
    if not sep or len(prefix) != 8 or len(secret) < 16:
        return None
    return prefix, secret


def prefix_of(plaintext: str) -> str:
    """The part of a key stored in clear to find it: a generated key's own prefix; for a key chosen by a team
    (GATEWAY_DEV_API_KEY may be any string without spaces), the start of its hash, which reveals nothing."""
    parts = _split(plaintext)
    return parts[0] if parts is not None else f"h{hash_key(plaintext)[:11]}"


def check_chosen_key(plaintext: str) -> None:
    if not plaintext or any(c.isspace() for c in plaintext) or not plaintext.isprintable():
        raise ValueError("an API key must be printable text without spaces")
    if len(plaintext) > 500:
        raise ValueError("an API key must be at most 500 characters")


def generate_key() -> str:
    return f"{KEY_PREFIX}{random_token(8)}_{secrets.token_urlsafe(32)}"


async def create_key(db: Database, name: str, plaintext: str | None = None, role: str = "agent") -> tuple[ApiKey, str]:
    """Store a new key and return it with its plaintext, which is never stored and cannot be shown again."""
    if role not in ROLES:
        raise ValueError(f"a key's role is one of {', '.join(ROLES)}")
    plaintext = plaintext or generate_key()
    check_chosen_key(plaintext)
    key = ApiKey(id=new_id("key"), name=name, prefix=prefix_of(plaintext), key_hash=hash_key(plaintext), role=role)
    async with db.write() as session:
        session.add(key)
    return key, plaintext


async def ensure_key(db: Database, name: str, plaintext: str) -> ApiKey:
    """Make sure this exact key exists and works (for GATEWAY_DEV_API_KEY); harmless to call on every start."""
    check_chosen_key(plaintext)
    async with db.read() as session:
        found = (await session.exec(select(ApiKey).where(ApiKey.prefix == prefix_of(plaintext)))).first()
    if found is not None:
        if not hmac.compare_digest(found.key_hash, hash_key(plaintext)):
            raise ValueError("another key with this prefix already exists")
        if found.revoked_at is not None:
            raise ValueError(f"this key ({found.name}, {found.id}) was revoked")
        return found
    key, _ = await create_key(db, name, plaintext)
    return key


async def list_keys(db: Database) -> list[ApiKey]:
    async with db.read() as session:
        return list((await session.exec(select(ApiKey).order_by(col(ApiKey.created_at)))).all())


class KeyNotFoundError(LookupError):
    def __init__(self, ref: str, matches: int = 0) -> None:
        self.ref = ref
        self.matches = matches
        super().__init__(f"no key named or with id {ref!r}" if not matches else f"{matches} keys are named {ref!r}")


async def revoke_key(db: Database, ref: str) -> ApiKey:
    """Revoke one key by id or by name (a name must be unique among keys still in use). Running processes stop
    accepting it within KeyStore.REVALIDATE seconds; revoking twice keeps the first time."""
    async with db.write() as session:
        by_id = (await session.exec(select(ApiKey).where(ApiKey.id == ref))).first()
        keys = [by_id] if by_id else list((await session.exec(select(ApiKey).where(ApiKey.name == ref))).all())
        if len(keys) > 1:
            keys = [k for k in keys if k.revoked_at is None] or keys[-1:]
        if len(keys) != 1:
            raise KeyNotFoundError(ref, len(keys))
        key = keys[0]
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            session.add(key)
    return key


class KeyStore:
    """Verifies bearer keys. A key found valid is trusted for REVALIDATE seconds, then looked up again, so a
    busy agent costs at most a query or two a second, and a revoked key stops working on every process within
    a second, whatever database they share."""

    REVALIDATE = 0.5
    LAST_USED_EVERY = 300.0  # seconds between writes of a key's last use (from one process)

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._used_written: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def authenticate(self, plaintext: str) -> Principal | None:
        digest = hash_key(plaintext)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[1] < self.REVALIDATE:
            return cached[0]
        if len(plaintext) > 500:
            return None
        async with self._db.read() as session:
            key = (await session.exec(select(ApiKey).where(ApiKey.prefix == prefix_of(plaintext)))).first()
        if key is None or key.revoked_at is not None or not hmac.compare_digest(key.key_hash, digest):
            self._cache.pop(digest, None)
            return None
        principal = Principal(key_id=key.id, name=key.name, role=key.role)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (principal, now)
        if now - self._used_written.get(key.id, -self.LAST_USED_EVERY) >= self.LAST_USED_EVERY:
            self._used_written[key.id] = now
            task = asyncio.create_task(self._mark_used(key.id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return principal

    async def _mark_used(self, key_id: str) -> None:
        try:
            async with self._db.write() as session:
                conn = await session.connection()
                await conn.execute(update(ApiKey).where(col(ApiKey.id) == key_id).values(last_used_at=utcnow()))
        except Exception:  # bookkeeping only: never fails a call
            log.debug("could not record the use of key %s", key_id, exc_info=True)
