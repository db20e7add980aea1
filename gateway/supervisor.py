"""`gateway serve --processes N`: one port served by N processes, so the HTTP side uses more than one core.

Each child is a plain `gateway serve` that binds the port with SO_REUSEPORT; the kernel spreads new connections
over their listening sockets. The workers are shared out too: the first child runs the scheduler, the second
the outbox and webhook senders, and the first four each read their share of the reply mailbox (one IMAP
session each; see gateway.inbound.poller). They hear each other's signals over the database's
bus (LISTEN/NOTIFY on PostgreSQL, Unix sockets beside a SQLite file), as `serve --no-workers` beside
`gateway worker` does.
The supervisor migrates the schema once before any child starts, restarts a child that dies (with backoff),
and passes SIGINT and SIGTERM on, so the children finish their requests and stop.
"""

from __future__ import annotations

import ctypes
import logging
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

log = logging.getLogger("gateway.supervisor")

RESTART_MIN, RESTART_MAX = 1.0, 30.0  # seconds before a dead child is started again, doubling while it keeps dying
STEADY = 30.0  # a child that ran this long before dying is restarted after the shortest delay again
STOP_GRACE = 30.0  # seconds the children get to finish after the signal, before they are killed
MAX_POLLERS = 4  # IMAP servers limit sessions per user (Dovecot 10 per address, Gmail 15)


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A bound (not yet listening) socket that shares ``port`` with the other children."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
        0
    ]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def _die_with_parent() -> None:
    """Runs in the child before exec: a supervisor killed outright (SIGKILL) takes its children with it."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    index: int
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    delay: float = RESTART_MIN
    restart_at: float | None = None
    signalled: bool = False

    def start(self) -> None:
        # A process group of its own: a Ctrl-C at the terminal reaches the supervisor only, which passes it on
        # once (a second SIGINT would make uvicorn quit without finishing its requests).
        self.proc = subprocess.Popen(self.argv, process_group=0, preexec_fn=_die_with_parent)
        self.started = time.monotonic()
        self.restart_at = None
        self.signalled = False

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None and not self.signalled:
            self.signalled = True
            self.proc.send_signal(signum)


@dataclass
class Supervisor:
    host: str
    port: int
    processes: int
    workers: bool = True
    children: list[Child] = field(default_factory=list)
    stopping: int | None = None  # the signal that asked us to stop

    def child_argv(self, index: int) -> list[str]:
        argv = [sys.executable, "-m", "gateway", "serve", "--host", self.host, "--port", str(self.port)]
        argv += ["--reuse-port", "--no-migrate"]
        if not self.workers:
            return [*argv, "--no-workers"]
        pollers = min(self.processes, MAX_POLLERS)
        roles = {0: ["scheduler"], 1: ["senders"]}.get(index, [])
        if index < pollers:
            roles.append("poller")
            argv += ["--poller-part", f"{index}/{pollers}"]
        return [*argv, "--roles", ",".join(roles)] if roles else [*argv, "--no-workers"]

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopping is None:
            self.stopping = signum
            for child in self.children:
                child.signal(signum)

    def run(self) -> int:
        # Held (bound, never listening, so it takes no connections) for the supervisor's life: a port another
        # program holds fails here, once, rather than in every child.
        try:
            guard = reuse_port_socket(self.host, self.port)
        except OSError as exc:
            print(f"gateway: cannot listen on {self.host}:{self.port}: {exc.strerror}", file=sys.stderr)
            return 1
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)
        try:
            self.children = [Child(i, self.child_argv(i)) for i in range(self.processes)]
            for child in self.children:
                child.start()
            self._watch()
            return self._finish()
        finally:
            guard.close()

    def _watch(self) -> None:
        while self.stopping is None:
            now = time.monotonic()
            for child in self.children:
                assert child.proc is not None
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        log.warning("supervisor: starting process %d again", child.index)
                        child.start()
                        if self.stopping is not None:  # the signal came while it started
                            child.signal(self.stopping)
                    continue
                code = child.proc.poll()
                if code is None:
                    continue
                ran = now - child.started
                if ran >= STEADY:
                    child.delay = RESTART_MIN
                child.restart_at = now + child.delay
                log.warning(
                    "supervisor: process %d (pid %d) exited with %s after %.0f s; restarting in %.0f s",
                    child.index,
                    child.proc.pid,
                    code,
                    ran,
                    child.delay,
                )
                child.delay = min(child.delay * 2, RESTART_MAX)
            time.sleep(0.2)

    def _finish(self) -> int:
        deadline = time.monotonic() + STOP_GRACE
        codes = []
        for child in self.children:
            assert child.proc is not None
            try:
                codes.append(child.proc.wait(max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                log.warning("supervisor: process %d did not stop in %.0f s; killing it", child.index, STOP_GRACE)
                child.proc.kill()
                codes.append(child.proc.wait())
        return 0 if all(code in (0, -signal.SIGINT, -signal.SIGTERM) for code in codes) else 1
