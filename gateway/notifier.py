"""Wakes waiters the moment a request's decision is committed, without polling.

In-process only: a waiter registers before it reads the request, so a decision committed between the read and
the wait is never missed. (Waking waiters on other replicas is PostgreSQL's LISTEN/NOTIFY's job.)
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar


class Waiter(Protocol):
    """Anything woken by ``set()``: an :class:`asyncio.Event`, or a stream that reads on the spot."""

    def set(self) -> None: ...


W = TypeVar("W", bound=Waiter)


class Notifier:
    def __init__(self) -> None:
        self._waiters: defaultdict[str, set[Waiter]] = defaultdict(set)

    @contextmanager
    def subscribe(self, key: str) -> Iterator[asyncio.Event]:
        with self.watch(key, asyncio.Event()) as event:
            yield event

    @contextmanager
    def watch(self, key: str, waiter: W) -> Iterator[W]:
        self._waiters[key].add(waiter)
        try:
            yield waiter
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[key]

    def notify(self, key: str) -> int:
        waiters = self._waiters.get(key, ())
        for event in waiters:
            event.set()
        return len(waiters)

    def notify_all(self) -> int:
        """Wake every waiter (after a lost cross-process signal connection: each re-reads its request)."""
        count = 0
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()
                count += 1
        return count

    @property
    def waiting(self) -> int:
        return sum(len(w) for w in self._waiters.values())
