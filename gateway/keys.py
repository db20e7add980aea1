"""API keys: a random secret shown once; only its SHA-256 is stored, with a short prefix to show and find it.

A fast hash is right here (unlike passwords): the secret has 190 bits of entropy, so there is nothing to
brute-force, and every API call must verify it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlmodel import select

from gateway.db import Database
from gateway.models import ApiKey, new_id, random_token

KEY_PREFIX = "gw_"


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def _split(plaintext: str) -> tuple[str, str] | None:
    if not plaintext.startswith(KEY_PREFIX):
        return None
    prefix, sep, secret = plaintext[len(KEY_PREFIX) :].partition("_")
    if not sep or len(prefix) != 8 or len(secret) < 16:
        return None
    return prefix, secret


def generate_key() -> str:
    return f"{KEY_PREFIX}{random_token(8)}_{secrets.token_urlsafe(32)}"


async def create_key(db: Database, name: str, plaintext: str | None = None) -> tuple[ApiKey, str]:
    """Store a new key and return it with its plaintext, which is never stored and cannot be shown again."""
    plaintext = plaintext or generate_key()
    parts = _split(plaintext)
    if parts is None:
        raise ValueError(f"an API key looks like {KEY_PREFIX}<8 characters>_<secret>")
    key = ApiKey(id=new_id("key"), name=name, prefix=parts[0], key_hash=hash_key(plaintext))
    async with db.write() as session:
        session.add(key)
    return key, plaintext


async def ensure_key(db: Database, name: str, plaintext: str) -> ApiKey:
    """Make sure this exact key exists (for GATEWAY_DEV_API_KEY); harmless to call on every start."""
    parts = _split(plaintext)
    if parts is None:
        raise ValueError(f"an API key looks like {KEY_PREFIX}<8 characters>_<secret>")
    async with db.read() as session:
        found = (await session.exec(select(ApiKey).where(ApiKey.prefix == parts[0]))).first()
    if found is not None:
        if not hmac.compare_digest(found.key_hash, hash_key(plaintext)):
            raise ValueError("another key with this prefix already exists")
        return found
    key, _ = await create_key(db, name, plaintext)
    return key


class KeyStore:
    """Verifies bearer keys, caching hits so a busy agent does not cost a query per call."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[str, Principal] = {}

    async def authenticate(self, plaintext: str) -> Principal | None:
        digest = hash_key(plaintext)
        cached = self._cache.get(digest)
        if cached is not None:
            return cached
        parts = _split(plaintext)
        if parts is None:
            return None
        async with self._db.read() as session:
            key = (await session.exec(select(ApiKey).where(ApiKey.prefix == parts[0]))).first()
        if key is None or key.revoked_at is not None or not hmac.compare_digest(key.key_hash, digest):
            return None
        principal = Principal(key_id=key.id, name=key.name)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = principal
        return principal
