"""The IMAP poller: reads new mail from the reply mailbox and feeds it to the inbound pipeline.

UID-based: it remembers the last UID it finished (per mailbox and UIDVALIDITY) and starts over safely when
UIDVALIDITY changes (the Message-ID record makes a second read harmless). It waits with IDLE, renewed well
inside the 29-minute limit, or polls where the server has no IDLE. Mail is fetched in small UID batches and
every command runs under a timeout (aioimaplib can hang on a large FETCH: iroco-co/aioimaplib#118). A message
is moved to the processed folder only after its outcome is committed. Any network or server error ends the
session; the poller reconnects with backoff.

Several pollers can share one mailbox, each taking the senders whose address hashes to its part (`serve
--processes N` runs one in each of up to four processes, so replies are read on more than one core). A part
reads only the From headers of new mail, fetches its own messages whole, and keeps its own last UID; one
sender's mail always falls to the same part, so it is still processed in mailbox order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import ssl
import time
import zlib
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import aioimaplib

from gateway.inbound import pipeline
from gateway.models import KeyValue
from gateway.oauth import OAuthError, oauthbearer
from gateway.services import Services

log = logging.getLogger("gateway.inbound.imap")

T = TypeVar("T")
FETCH_CHUNK = 50
COMMAND_TIMEOUT = 60.0
UIDVALIDITY_RE = re.compile(rb"\[UIDVALIDITY (\d+)\]")
EXISTS_RE = re.compile(rb"\*? ?\d+ EXISTS")
FETCH_UID_RE = re.compile(rb"\bUID (\d+)")


class ImapError(Exception):
    """The server refused a command, or answered in a way we cannot use; the session is started over."""

    def __init__(self, command: str, result: str, lines: list[Any]) -> None:
        self.command = command
        self.result = result
        self.lines = lines
        text = b" ".join(x for x in lines if isinstance(x, bytes))[:200].decode("utf-8", "replace")
        super().__init__(f"IMAP {command} answered {result}: {text}")


@dataclass
class MailboxState:
    uidvalidity: int
    last_uid: int


@dataclass
class PollerStatus:
    connected: bool = False
    processed: int = 0
    last_error: str | None = None
    last_check: float | None = None  # time.time() when the mailbox was last read to the end
    started: float = 0.0  # time.time() when the poller started: lag counts from here until a first read
    login_refused: bool = False  # the server said NO to our login (a setting's fault, not the network's)
    ever_connected: bool = False


class LoginRefusedError(Exception):
    """The IMAP server refused the login: the credentials (or the account) are wrong, not the network."""

    def __init__(self, user: str, answer: str) -> None:
        self.user = user
        self.answer = answer
        super().__init__(f"the IMAP server refused the login of {user!r} (GATEWAY_IMAP_USERNAME/PASSWORD): {answer}")


class ConnectionLostError(Exception):
    """The server closed the connection (aioimaplib does not fail pending commands when that happens)."""


async def timed(awaitable: Awaitable[T], lost: asyncio.Event, seconds: float = COMMAND_TIMEOUT) -> T:
    """Await an IMAP command until it answers, the connection drops, or time runs out.

    An abandoned command is cancelled but never awaited: aioimaplib's may never finish, and
    ``asyncio.wait_for`` would wait for it for ever.
    """
    task = asyncio.ensure_future(awaitable)
    watcher = asyncio.ensure_future(lost.wait())
    try:
        done, _ = await asyncio.wait({task, watcher}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # cancelled: the command is abandoned too
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # no "never retrieved" warnings
    if lost.is_set():
        raise ConnectionLostError("the IMAP server closed the connection")
    raise TimeoutError(f"no answer from the IMAP server in {seconds:.0f} s")


def ok(response: Any, command: str) -> Any:
    if response.result != "OK":
        raise ImapError(command, response.result, list(response.lines))
    return response


def parse_fetch(lines: list[Any]) -> list[tuple[int, bytes]]:
    """(uid, message) pairs from a UID FETCH (UID BODY.PEEK[]) answer, whatever order the items come in."""
    found: list[tuple[int, bytes]] = []
    uid: int | None = None
    body: bytes | None = None
    for line in lines:
        if isinstance(line, bytearray | memoryview):
            body = bytes(line)
            continue
        if not isinstance(line, bytes):
            continue
        if b" FETCH " in line or (line.startswith(b"* ") and b"FETCH" in line):
            if uid is not None and body is not None:
                found.append((uid, body))
            uid, body = None, None
        match = FETCH_UID_RE.search(line)
        if match:
            uid = int(match.group(1))
    if uid is not None and body is not None:
        found.append((uid, body))
    return found


def part_of(sender: str, parts: int) -> int:
    """Which of ``parts`` pollers reads mail from ``sender`` (stable across processes and restarts)."""
    return zlib.crc32(sender.lower().encode("utf-8", "surrogateescape")) % parts


class ImapPoller:
    def __init__(self, svc: Services, part: tuple[int, int] = (0, 1)) -> None:
        self.svc = svc
        self.settings = svc.settings
        self.status = PollerStatus()
        self._lost = asyncio.Event()
        self._mail_reported = False  # the server told of new mail (an untagged EXISTS) since the last search
        self._logged_in = False  # in the current session
        self._pause = asyncio.sleep  # between sessions (a test counts the pauses instead of waiting them out)
        self.mailbox = self.settings.imap_mailbox
        self.part, self.parts = part
        if not 0 <= self.part < self.parts:
            raise ValueError(f"poller part {self.part} of {self.parts}")
        self.state_key = (
            f"imap:{self.settings.imap_username}@{self.settings.imap_host}:{self.settings.imap_port_effective}"
            f"/{self.mailbox}"
        ) + (f"#{self.part}/{self.parts}" if self.parts > 1 else "")

    # --- state ------------------------------------------------------------------------------------------

    async def load_state(self) -> MailboxState | None:
        async with self.svc.db.read() as session:
            row = await session.get(KeyValue, self.state_key)
            if row is None and self.parts > 1:  # newly split: go on from where the single poller stopped
                row = await session.get(KeyValue, self.state_key.rsplit("#", 1)[0])
        if row is None:
            return None
        data = json.loads(row.value)
        return MailboxState(int(data["uidvalidity"]), int(data["last_uid"]))

    async def save_state(self, state: MailboxState) -> None:
        value = json.dumps({"uidvalidity": state.uidvalidity, "last_uid": state.last_uid})
        async with self.svc.db.write() as session:
            row = await session.get(KeyValue, self.state_key)
            if row is None:
                session.add(KeyValue(key=self.state_key, value=value))
            else:
                row.value = value
                session.add(row)

    # --- connection -------------------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        ca = self.settings.imap_ca_file
        return ssl.create_default_context(cafile=str(ca) if ca else None)

    async def connect(self) -> aioimaplib.IMAP4:
        s = self.settings
        self._lost = asyncio.Event()
        host, port = s.imap_host or "127.0.0.1", s.imap_port_effective
        client: aioimaplib.IMAP4
        if s.imap_security == "tls":
            client = aioimaplib.IMAP4_SSL(host, port, timeout=COMMAND_TIMEOUT, ssl_context=self.ssl_context())
        else:
            client = aioimaplib.IMAP4(host, port, timeout=COMMAND_TIMEOUT)
        client.protocol.conn_lost_cb = lambda _exc: self._lost.set()
        self._watch_exists(client)
        await timed(client.wait_hello_from_server(), self._lost)
        if s.imap_security == "starttls":
            await self.starttls(client, host)
        if s.imap_auth == "oauth2":
            answer = await self._oauth_login(client)
        else:
            answer = await timed(client.login(s.imap_username or "", s.imap_password or ""), self._lost)
        if answer.result != "OK":
            text = b" ".join(x for x in answer.lines if isinstance(x, bytes))[:200].decode("utf-8", "replace")
            raise self._refused(LoginRefusedError(s.imap_username or "", f"{answer.result} {text}".strip()))
        self.status.login_refused = False
        self._logged_in = True
        return client

    def _refused(self, error: LoginRefusedError) -> LoginRefusedError:
        """Name the refusal in the status at once (the session's LOGOUT still runs before `run` sees the error,
        and /healthz must not show the flag with an older error)."""
        self.status.login_refused = True
        self.status.last_error = str(error)[:300]
        return error

    async def _oauth_login(self, client: aioimaplib.IMAP4) -> Any:
        """AUTHENTICATE OAUTHBEARER (where offered) or XOAUTH2 with the process's token; a refused token is fetched
        anew and tried once more.

        On a bad token the server sends a SASL error challenge ("+ <base64 JSON>") and waits for an empty line
        before its NO (RFC 7628); aioimaplib never answers it, so the command would hang. This connection's
        protocol answers it here."""
        tokens = self.svc.oauth
        assert tokens is not None
        protocol = client.protocol
        original = protocol._continuation

        def continuation(line: bytes) -> None:
            command = protocol.pending_sync_command
            if command is not None and command.name == "AUTHENTICATE":
                protocol.transport.write(b"\r\n")
                return
            original(line)

        protocol._continuation = continuation
        user = self.settings.imap_username or ""
        answer: Any = None
        for attempt in (1, 2):
            try:
                token = await tokens.token()
            except OAuthError as exc:
                raise self._refused(LoginRefusedError(user, f"no OAuth token: {exc}")) from None
            if client.has_capability("AUTH=OAUTHBEARER"):  # RFC 7628, where offered; else XOAUTH2
                command = aioimaplib.Command(
                    "AUTHENTICATE", protocol.new_tag(), "OAUTHBEARER", oauthbearer(user, token), loop=protocol.loop
                )
                answer = await timed(protocol.execute(command, scrub=token), self._lost)
                if answer.result == "OK":
                    protocol.state = aioimaplib.AUTH
            else:
                answer = await timed(protocol.xoauth2(user, token), self._lost)
            if answer.result == "OK":
                await timed(protocol.capability(), self._lost)  # XOAUTH2 leaves the pre-login ones (no MOVE)
                return answer
            tokens.invalidate()
            if attempt == 2:
                break
        return answer

    def _watch_exists(self, client: aioimaplib.IMAP4) -> None:
        """Note every "* n EXISTS", whichever command's answer it comes with.

        The server tells of new mail at the end of whatever command is running (IDLE only tells of what the
        session has not heard yet), and aioimaplib files such an EXISTS with that command's answer (UID MOVE),
        where nothing looks for it, or drops it (UID FETCH, UID STORE). Without this, a reply that arrived while
        a batch was processed waited for the IDLE to renew.
        """
        protocol = client.protocol
        untagged = protocol._untagged_response

        def watch(line: bytes) -> Any:
            if EXISTS_RE.match(line):
                self._mail_reported = True
            return untagged(line)

        protocol._untagged_response = watch

    async def starttls(self, client: aioimaplib.IMAP4, host: str) -> None:
        """aioimaplib has no STARTTLS of its own: send it, then upgrade the transport in place."""
        protocol = client.protocol
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        ok(await timed(protocol.execute(command), self._lost), "STARTTLS")
        loop = asyncio.get_running_loop()
        protocol.transport = await timed(
            loop.start_tls(protocol.transport, protocol, self.ssl_context(), server_hostname=host), self._lost
        )
        await timed(protocol.capability(), self._lost)

    # --- the loop ---------------------------------------------------------------------------------------

    RETRY_FIRST = 1.0
    RETRY_MAX = 60.0

    async def run(self) -> None:
        """Sessions, one after another. The pause between them starts short again after every session that
        logged in (a server restart costs a second or two), and doubles, up to RETRY_MAX, while the server
        cannot be reached or refuses the login."""
        self.status.started = self.status.started or time.time()
        delay = self.RETRY_FIRST
        while True:
            self._logged_in = False
            try:
                await self.session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # network, TLS, server or database: start over after a pause
                self.status.connected = False
                self.status.last_error = (
                    str(exc) if isinstance(exc, LoginRefusedError) else f"{type(exc).__name__}: {exc}"
                )[:300]
            if self._logged_in:
                delay = self.RETRY_FIRST
            self.status.connected = False
            log.warning("imap: %s; reconnecting in %.0f s", self.status.last_error, delay)
            await self._pause(delay * random.uniform(0.8, 1.2))
            if not self._logged_in:
                delay = min(delay * 2, self.RETRY_MAX)

    async def session(self) -> None:
        client = await self.connect()
        try:
            selected = ok(await timed(client.select(self.mailbox), self._lost), "SELECT")
            uidvalidity = self._uidvalidity(selected.lines)
            state = await self.load_state()
            if state is None or state.uidvalidity != uidvalidity:
                if state is not None:
                    log.warning("imap: UIDVALIDITY of %s changed; reading it from the start", self.mailbox)
                state = MailboxState(uidvalidity, 0)
                await self.save_state(state)
            await self.ensure_processed_folder(client)
            self.status.connected = True
            self.status.ever_connected = True
            self.status.last_error = None
            while True:
                self._mail_reported = False
                await self.drain(client, state)
                if not self._mail_reported:  # else: mail came while draining, and IDLE would not tell of it
                    await self.wait_for_mail(client)
        finally:
            with contextlib.suppress(Exception):  # the connection may already be gone
                await timed(client.logout(), self._lost, 2)

    async def ensure_processed_folder(self, client: aioimaplib.IMAP4) -> None:
        folder = self.settings.imap_processed_mailbox
        if folder:
            await timed(client.create(folder), self._lost)  # NO when it exists: fine

    async def drain(self, client: aioimaplib.IMAP4, state: MailboxState) -> int:
        """Process every message above the last finished UID; returns how many."""
        found = ok(
            await timed(client.uid_search("UID", f"{state.last_uid + 1}:*", charset=None), self._lost), "UID SEARCH"
        )
        uids = sorted(int(x) for line in found.lines if isinstance(line, bytes) for x in line.split() if x.isdigit())
        uids = [u for u in uids if u > state.last_uid]  # "n:*" always includes the highest UID
        done = 0
        for start in range(0, len(uids), FETCH_CHUNK):
            chunk = uids[start : start + FETCH_CHUNK]
            mine = await self.mine(client, chunk)
            if mine:
                fetched = ok(
                    await timed(client.uid("fetch", ",".join(map(str, mine)), "(UID BODY.PEEK[])"), self._lost),
                    "UID FETCH",
                )
                messages = dict(parse_fetch(list(fetched.lines)))
                batch = [(uid, messages[uid]) for uid in mine if uid in messages]
                done += await self.process_batch(batch, senders=mine)
                await self.set_aside(client, [u for u in mine if u in messages])
            state.last_uid = chunk[-1]
            await self.save_state(state)
        self.status.last_check = time.time()
        return done

    async def mine(self, client: aioimaplib.IMAP4, uids: list[int]) -> dict[int, str | None]:
        """The UIDs this poller's part reads, in order, each with its sender when the From headers were read
        to choose them (when this poller is the only one it takes all, and reads no headers)."""
        if self.parts == 1:
            return dict.fromkeys(uids)
        fetched = ok(
            await timed(
                client.uid("fetch", ",".join(map(str, uids)), "(UID BODY.PEEK[HEADER.FIELDS (FROM)])"), self._lost
            ),
            "UID FETCH",
        )
        # A message whose header came back other than as a literal (a server may send an empty one as "") counts
        # as from nobody: it still falls to exactly one part, rather than to none.
        headers = dict(parse_fetch(list(fetched.lines)))
        senders = {uid: pipeline.sender_of(headers[uid]).lower() if uid in headers else "" for uid in uids}
        return {uid: sender for uid, sender in senders.items() if part_of(sender, self.parts) == self.part}

    async def process_batch(self, batch: list[tuple[int, bytes]], senders: dict[int, str | None] | None = None) -> int:
        """Run a fetched batch through the pipeline concurrently (its reads and SMTP waits overlap), one sender's
        messages in mailbox order, so "approve" then "no, wait" from one person keeps its order. ``senders``:
        each UID's sender where :meth:`mine` has read it already."""
        known = senders or {}
        by_sender: dict[str, list[tuple[int, pipeline.Inbound]]] = {}
        for uid, raw in batch:
            mail = pipeline.received(raw, "imap")  # parsed once, here: its sender orders it, then it is processed
            sender = known.get(uid)
            by_sender.setdefault(mail.sender if sender is None else sender, []).append((uid, mail))

        async def in_order(items: list[tuple[int, pipeline.Inbound]]) -> None:
            for uid, mail in items:
                outcome = await pipeline.process(self.svc, mail)
                log.info("imap: uid %s -> %s %s", uid, outcome.outcome, outcome.reason or "")
                self.status.processed += 1

        await asyncio.gather(*(in_order(items) for items in by_sender.values()))
        return len(batch)

    async def set_aside(self, client: aioimaplib.IMAP4, uids: list[int]) -> None:
        """Move processed mail out of the inbox (its outcome is already committed), or flag it as seen."""
        if not uids:
            return
        uid_set = ",".join(map(str, uids))
        folder = self.settings.imap_processed_mailbox
        if not folder:
            ok(await timed(client.uid("store", uid_set, "+FLAGS", r"(\Seen)"), self._lost), "UID STORE")
            return
        if client.has_capability("MOVE"):
            ok(await timed(client.uid("move", uid_set, folder), self._lost), "UID MOVE")
            return
        ok(await timed(client.uid("copy", uid_set, folder), self._lost), "UID COPY")
        ok(await timed(client.uid("store", uid_set, "+FLAGS", r"(\Deleted)"), self._lost), "UID STORE")
        ok(await timed(client.expunge(), self._lost), "EXPUNGE")

    async def wait_for_mail(self, client: aioimaplib.IMAP4) -> None:
        """Until the server says new mail exists (IDLE), or for one polling interval."""
        if not client.has_capability("IDLE"):
            await asyncio.sleep(self.settings.imap_poll_interval)
            ok(await timed(client.noop(), self._lost), "NOOP")
            return
        renew = self.settings.imap_idle_renew
        idle = await timed(client.idle_start(timeout=renew), self._lost)
        try:
            while True:
                pushed = await timed(client.wait_server_push(timeout=renew + 30), self._lost, renew + 60)
                if pushed == aioimaplib.STOP_WAIT_SERVER_PUSH:
                    return  # time to renew the IDLE
                if any(isinstance(x, bytes) and (b"EXISTS" in x or b"RECENT" in x) for x in pushed):
                    return
        finally:
            if not self._lost.is_set():
                client.idle_done()
                await timed(idle, self._lost, 30)

    @staticmethod
    def _uidvalidity(lines: list[Any]) -> int:
        for line in lines:
            if isinstance(line, bytes):
                match = UIDVALIDITY_RE.search(line)
                if match:
                    return int(match.group(1))
        raise ImapError("SELECT", "OK", lines)
