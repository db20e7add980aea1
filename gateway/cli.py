"""The `gateway` command. Configuration problems end in one line naming the setting, and exit status 2."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from gateway import __version__
from gateway.settings import ConfigError, Settings, load_settings

DEV_DB = "./gateway-dev.sqlite3"
DEV_FROM = "gateway@gateway.localhost"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="Email-first approval gateway for AI agents.")
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = sub.add_parser("dev", help="everything in one process: SQLite, captured mail, dev mailbox")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--db", default=None, help=f"SQLite file (default {DEV_DB})")

    serve = sub.add_parser("serve", help="production: HTTP API, link pages and (by default) the workers")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-workers", action="store_true", help="run only HTTP; run `gateway worker` apart")
    serve.add_argument(
        "--processes",
        type=int,
        default=1,
        help="serve from this many processes on the one port, the workers shared out among them",
    )
    # Set by the supervisor of `--processes N` for its children.
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--no-migrate", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--roles", default=None, help=argparse.SUPPRESS)  # which workers: senders,scheduler,poller
    serve.add_argument("--poller-part", default="0/1", help=argparse.SUPPRESS)  # this one's share of the mailbox

    sub.add_parser("worker", help="only the background workers (outbox and webhook senders, poller, scheduler)")
    migrate = sub.add_parser("migrate", help="apply the schema migrations (creates a SQLite database)")
    _db_option(migrate)

    doctor = sub.add_parser("doctor", help="check the live configuration: one line per check, with what to fix")
    doctor.add_argument("--send-test", metavar="ADDRESS", default=None, help="also send one real test mail")

    parse = sub.add_parser("parse-reply", help="show what the gateway reads from one email (.eml)")
    parse.add_argument("file", help="an RFC 822 message; - reads standard input")

    mcp = sub.add_parser(
        "mcp", help="serve request_approval, ask_human, notify_human and check_messages to an MCP client over stdio"
    )
    mcp.add_argument(
        "--to",
        action="append",
        default=None,
        help="who is asked (repeatable; default $GATEWAY_MCP_TO)",
    )
    mcp.add_argument("--url", default=None, help="the gateway (default $GATEWAY_URL)")
    mcp.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds an asking tool waits before it answers 'still waiting' with the request's id, which"
        " check_request resumes (default $GATEWAY_MCP_TOOL_WAIT, else 50: many MCP clients end a call after 60)",
    )
    mcp.add_argument("--expires-in", type=int, default=None, help="seconds before a request expires")
    mcp.add_argument(
        "--agent",
        default=None,
        help="the agent the humans' replies and messages reach (default $GATEWAY_MCP_AGENT, else mcp-agent)",
    )

    requests = sub.add_parser("requests", help="the operator's view of every agent's requests")
    requests_sub = requests.add_subparsers(dest="requests_command", required=True, metavar="ACTION")
    listing = requests_sub.add_parser("list", help="requests, newest first")
    listing.add_argument("--status", default=None)
    listing.add_argument("--recipient", default=None, help="only requests sent to this address")
    listing.add_argument("--run", default=None, help="only this run_id")
    listing.add_argument("--kind", choices=["approval", "question"], default=None)
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--before", default=None, help="continue after this id (printed at the end of a page)")
    show = requests_sub.add_parser("show", help="one request: its fields, recipients, answers and audit trail")
    show.add_argument("id")
    for p in (listing, show):
        _db_option(p)

    audit = sub.add_parser("audit", help="the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_sub.add_parser("verify", help="check every request's hash chain; exit 1 if any is broken")
    verify.add_argument("--request", default=None, help="check only this request")
    _db_option(verify)

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = keys_sub.add_parser("create", help="create an API key and print it once")
    create.add_argument("name")
    create.add_argument(
        "--responder",
        action="store_true",
        help="a key that answers requests on their recipients' behalf (a chat bot, a portal), never makes any",
    )
    keys_list = keys_sub.add_parser("list", help="every key: name, id, created, last used, revoked")
    revoke = keys_sub.add_parser("revoke", help="revoke a key (by name or id): refused everywhere within a second")
    revoke.add_argument("key", metavar="NAME|ID")
    for p in (create, keys_list, revoke):
        _db_option(p)

    outbox = sub.add_parser("outbox", help="outgoing mail: see what failed, send it again")
    outbox_sub = outbox.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")
    o_list = outbox_sub.add_parser("list", help="mails by status (default: failed), newest first")
    o_list.add_argument("--status", choices=["failed", "pending", "sent"], default="failed")
    o_list.add_argument("--limit", type=int, default=50)
    retry = outbox_sub.add_parser("retry", help="send failed mails again (the running senders take them at once)")
    retry.add_argument("ids", nargs="*", metavar="ID", help="outbox ids (from `gateway outbox list`)")
    retry.add_argument("--all-failed", action="store_true", help="every failed mail")
    for p in (o_list, retry):
        _db_option(p)
    return parser


def _db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None, help="SQLite file to open (default: the configured database)")


def _fail_config(exc: ConfigError) -> int:
    print(f"gateway: configuration error: {exc}", file=sys.stderr)
    return 2


class RefusedError(Exception):
    """A command that cannot run (no database, a busy port, an unknown key): one line, exit 2."""


def _refused(message: str) -> int:
    print(f"gateway: {message}", file=sys.stderr)
    return 2


class JsonFormatter(logging.Formatter):
    """One JSON object a line (GATEWAY_LOG_FORMAT=json), for log pipelines that parse fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _logging() -> None:
    level = os.environ.get("GATEWAY_LOG_LEVEL", "INFO").upper()
    if os.environ.get("GATEWAY_LOG_FORMAT", "text").lower() == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=level, handlers=[handler])
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-command chatter
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _json_logs() -> bool:
    return os.environ.get("GATEWAY_LOG_FORMAT", "text").lower() == "json"


def _say(lines: list[str]) -> None:
    """The start-up banner: printed as it is, or as one JSON log record under GATEWAY_LOG_FORMAT=json."""
    if _json_logs():
        logging.getLogger("gateway").info(" | ".join(line.strip() for line in lines))
        return
    for line in lines:
        print(line, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "dev":
            return _dev(args)
        if args.command == "serve":
            return _serve(args)
        if args.command == "worker":
            return _worker()
        if args.command == "migrate":
            return _migrate(args)
        if args.command == "keys":
            return _keys(args)
        if args.command == "outbox":
            return _outbox(args)
        if args.command == "parse-reply":
            return _parse_reply(args.file)
        if args.command == "doctor":
            return _doctor(args.send_test)
        if args.command == "mcp":
            return _mcp(args)
        if args.command == "audit":
            return _audit_verify(args)
        if args.command == "requests":
            return _requests(args)
    except ConfigError as exc:
        return _fail_config(exc)
    except RefusedError as exc:
        return _refused(str(exc))
    except KeyboardInterrupt:
        return 130
    return 2


# --- the database a command opens ---------------------------------------------------------------------


def _tool_settings(args: argparse.Namespace) -> Settings:
    """The settings of a command that opens the database: --db wins; with no database configured anywhere,
    the dev database in this folder when there is one (where `gateway dev` runs)."""
    if getattr(args, "db", None):
        return load_settings("tool", database_url=f"sqlite+aiosqlite:///{args.db}")
    settings = load_settings("tool")
    if "database_url" not in settings.model_fields_set and os.path.exists(DEV_DB):
        return load_settings("tool", database_url=f"sqlite+aiosqlite:///{DEV_DB}")
    return settings


def _sqlite_path(settings: Settings) -> str | None:
    from sqlalchemy.engine import make_url

    url = make_url(settings.async_database_url)
    if url.get_backend_name() != "sqlite":
        return None
    return url.database or ""


def _db_run(settings: Settings, work: Any, *, create: bool = False, needs_schema: bool = True) -> Any:
    """Run ``work(db)`` on the configured database; every way it cannot be opened is one RefusedError naming it.
    A command that only reads or changes rows never creates a database (an empty SQLite file in the wrong
    folder helps nobody); ``create`` is for `migrate`."""
    from alembic.util.exc import CommandError
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    from gateway.db import Database

    where = _safe_url(settings)
    path = _sqlite_path(settings)
    if path is not None and not create and (path in ("", ":memory:") or not os.path.exists(path)):
        raise RefusedError(
            f"no database at {os.path.abspath(path) if path else where}: run `gateway migrate` (or `gateway dev`)"
            " there first, or point --db / GATEWAY_DATABASE_URL at it"
        )

    async def run() -> Any:
        db = Database(settings.async_database_url)
        try:
            if needs_schema:
                async with db.engine.connect() as conn:
                    tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
                if "requests" not in tables:
                    raise RefusedError(f"{where} holds no gateway schema: run `gateway migrate` first")
            return await work(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(run())
    except (SQLAlchemyError, OSError) as exc:
        reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise RefusedError(f"cannot use the database {where}: {reason}") from None
    except CommandError as exc:  # Alembic: e.g. a schema newer than this gateway knows
        raise RefusedError(f"cannot migrate the database {where}: {str(exc)[:300]} (a newer gateway's?)") from None


def _listen(host: str, port: int) -> Any:
    """The server's socket, bound before anything is printed: a busy port is one line, not a banner and then a
    failure."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as exc:
        raise RefusedError(f"cannot listen on {host}:{port}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        reason = "the port is in use (another gateway?)" if exc.errno == 98 else (exc.strerror or str(exc))
        raise RefusedError(f"cannot listen on {host}:{port}: {reason}; choose another with --port") from None
    return sock


def _run_http(
    app: object, host: str, port: int, reuse_port: bool = False, sock: Any = None, forwarded: str = ""
) -> int:
    """``forwarded``: the proxies whose X-Forwarded-For/-Proto headers are believed (GATEWAY_FORWARDED_ALLOW_IPS);
    none by default, so nobody can put another address in the audit trail."""
    import uvicorn

    from gateway.app import Server
    from gateway.supervisor import reuse_port_socket

    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        proxy_headers=bool(forwarded),
        forwarded_allow_ips=forwarded or None,
    )
    server = Server(config)
    if sock is None:
        sock = reuse_port_socket(host, port) if reuse_port else _listen(host, port)
    # Everything loaded so far (modules, mappers, routes, compiled schemas) lives as long as the process: moved
    # out of the collector's sight, a full collection no longer walks it (one took tens of ms under load, the
    # submit p99).
    gc.collect()
    gc.freeze()
    server.run(sockets=[sock])  # uvloop and httptools when installed
    return 0 if server.started else 1


def _preflight(settings: Settings, dev_key: str | None = None) -> None:
    """Open the database and bring its schema up to date before the server starts, so an unreachable database or
    a refused dev key is one line (exit 2), never a traceback from inside the server's start."""
    from gateway.keys import ensure_key
    from gateway.runtime import upgrade_schema

    async def run(db: Any) -> None:
        await upgrade_schema(db)
        if dev_key:
            try:
                await ensure_key(db, "dev", dev_key)
            except ValueError as exc:
                raise ConfigError("GATEWAY_DEV_API_KEY", str(exc)) from None

    _db_run(settings, run, create=True, needs_schema=False)


def _dev(args: argparse.Namespace) -> int:
    from gateway.app import create_app
    from gateway.dev.mailbox import DevMailbox
    from gateway.keys import create_key
    from gateway.runtime import Runtime
    from gateway.services import Services

    overrides: dict[str, object] = {"smtp_utf8": True}  # the dev capture server offers SMTPUTF8
    if args.db:
        overrides["database_url"] = f"sqlite+aiosqlite:///{args.db}"
    elif "GATEWAY_DATABASE_URL" not in os.environ:
        overrides["database_url"] = f"sqlite+aiosqlite:///{DEV_DB}"
    if "GATEWAY_PUBLIC_URL" not in os.environ:
        overrides["public_url"] = f"http://{args.host}:{args.port}"
    if "GATEWAY_FROM_ADDRESS" not in os.environ:
        overrides["from_address"] = DEV_FROM
    settings = load_settings("dev", **overrides)
    _logging()
    base = settings.public_base
    dev_key = os.environ.get("GATEWAY_DEV_API_KEY") or None
    sock = _listen(args.host, args.port)
    try:
        _preflight(settings, dev_key)
    except BaseException:
        sock.close()
        raise

    async def ready(svc: Services) -> None:
        key = dev_key or (await create_key(svc.db, "dev"))[1]
        mailbox = runtime.dev_mailbox
        lines = [f"gateway dev is running at {base}", f"  API key:      {key}"]
        if not dev_key:
            lines.append("                (set GATEWAY_DEV_API_KEY to keep one key across restarts)")
        lines += [
            f"  Dev mailbox:  {base}/dev/mailbox",
            f"  API docs:     {base}/docs",
            f"  Mail capture: SMTP on 127.0.0.1:{mailbox.port if mailbox else '?'}",
            f"  Webhooks:     signed with {svc.settings.webhook_secret}",
            f"  Database:     {_safe_url(settings)}",
        ]
        _say(lines)

    runtime = Runtime(settings, dev_mailbox=DevMailbox(base), on_ready=ready, share_signals=False)
    return _run_http(create_app(runtime), args.host, args.port, sock=sock, forwarded=settings.forwarded_allow_ips)


def _serve(args: argparse.Namespace) -> int:
    from gateway.app import create_app
    from gateway.runtime import Runtime

    settings = load_settings("serve")
    _logging()
    if args.processes < 1:
        raise ConfigError("--processes", "must be at least 1")
    if args.processes > 1:
        from gateway.supervisor import Supervisor

        _listen(args.host, args.port).close()  # refuse a busy port before any child starts
        _preflight(settings)  # once, before the children start (they do not migrate)
        _say(
            [
                f"gateway serve on {args.host}:{args.port} in {args.processes} processes,"
                f" public URL {settings.public_base}, database {_safe_url(settings)}"
            ]
        )
        return Supervisor(args.host, args.port, args.processes, workers=not args.no_workers).run()
    roles = None if args.roles is None else frozenset(r for r in args.roles.split(",") if r)
    part, _, parts = args.poller_part.partition("/")
    sock = None
    if not args.reuse_port:
        sock = _listen(args.host, args.port)
        if not args.no_migrate:
            try:
                _preflight(settings)
            except BaseException:
                sock.close()
                raise
    runtime = Runtime(
        settings,
        workers=not args.no_workers,
        roles=roles,
        poller_part=(int(part), int(parts)),
        migrate_on_start=not args.no_migrate,
    )
    if not args.reuse_port:
        _say(
            [
                f"gateway serve on {args.host}:{args.port}, public URL {settings.public_base},"
                f" database {_safe_url(settings)}"
            ]
        )
    return _run_http(
        create_app(runtime),
        args.host,
        args.port,
        reuse_port=args.reuse_port,
        sock=sock,
        forwarded=settings.forwarded_allow_ips,
    )


def _worker() -> int:
    from gateway.runtime import Runtime

    settings = load_settings("worker")
    _logging()
    _db_run(settings, lambda db: db.ping(), create=True, needs_schema=False)  # reachable, or one line

    async def run() -> None:
        runtime = Runtime(settings)
        await runtime.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        _say([f"gateway worker running, database {_safe_url(settings)}"])
        try:
            await stop.wait()
        finally:
            await runtime.stop()

    asyncio.run(run())
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from gateway.runtime import upgrade_schema

    settings = _tool_settings(args)
    _db_run(settings, upgrade_schema, create=True, needs_schema=False)
    print(f"gateway: schema is up to date ({_safe_url(settings)})")
    return 0


def _keys(args: argparse.Namespace) -> int:
    from gateway import keys

    settings = _tool_settings(args)
    where = _safe_url(settings)
    if args.keys_command == "create":
        from gateway.runtime import upgrade_schema

        async def create(db: Any) -> tuple[Any, str]:
            await upgrade_schema(db)  # a new deployment's first step: the database may be new too
            return await keys.create_key(db, args.name, role=role)

        role = "responder" if args.responder else "agent"
        _, plaintext = _db_run(settings, create, create=True, needs_schema=False)
        print(plaintext)
        print(f"({role} key {args.name!r} created in {where}; it is shown only this once)", file=sys.stderr)
        return 0
    if args.keys_command == "revoke":

        async def revoke(db: Any) -> Any:
            try:
                return await keys.revoke_key(db, args.key)
            except keys.KeyNotFoundError as exc:
                hint = " (revoke it by id)" if exc.matches else ""
                raise RefusedError(f"{exc} in {where}{hint}") from None

        key = _db_run(settings, revoke)
        print(f"revoked {key.name} ({key.id}) at {key.revoked_at:%Y-%m-%d %H:%M:%S} UTC")
        return 0
    found = _db_run(settings, keys.list_keys)
    print(f"# {where}", file=sys.stderr)
    print(f"{'NAME':<20} {'ID':<32} {'ROLE':<10} {'CREATED':<17} {'LAST USED':<17} REVOKED")
    for key in found:
        print(
            f"{key.name[:20]:<20} {key.id:<32} {key.role:<10} {_when(key.created_at):<17}"
            f" {_when(key.last_used_at):<17} {_when(key.revoked_at)}"
        )
    return 0


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment is not None else "-"


def _outbox(args: argparse.Namespace) -> int:
    from gateway.mail import operator

    settings = _tool_settings(args)
    if args.outbox_command == "list":
        if not 1 <= args.limit <= 1000:
            raise RefusedError("outbox list: --limit must be between 1 and 1000")
        rows = _db_run(settings, lambda db: operator.list_mail(db, args.status, args.limit))
        print(f"# {_safe_url(settings)}: {len(rows)} {args.status} mail(s)", file=sys.stderr)
        for row in rows:
            print(f"{row.id}  {_when(row.created_at)}  {row.kind:<14} {', '.join(row.rcpt_to)}  {row.last_error or ''}")
        return 0
    if not args.ids and not args.all_failed:
        raise RefusedError("outbox retry: name the mails (IDs from `gateway outbox list`) or pass --all-failed")
    count = _db_run(settings, lambda db: operator.retry_failed(db, None if args.all_failed else args.ids))
    print(f"{count} failed mail(s) queued again; the senders of a running gateway take them within seconds")
    return 0


def _doctor(send_test: str | None) -> int:
    from gateway import doctor

    try:
        settings = load_settings("serve")
    except ConfigError as exc:
        print(doctor.Check("settings", False, str(exc), "fix that setting first").line())
        return 1
    checks = asyncio.run(doctor.run(settings))
    if send_test:
        checks.append(asyncio.run(doctor.send_test(settings, send_test)))
    for check in checks:
        print(check.line())
    failed = [c for c in checks if not c.ok and not c.warning]
    print(f"{len(checks) - len(failed)} of {len(checks)} checks passed" + (f"; {len(failed)} to fix" if failed else ""))
    return 1 if failed else 0


def _parse_reply(path: str) -> int:
    from gateway.replies import automated_kind, parse_decision, read_reply

    try:
        raw = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()  # noqa: SIM115
    except OSError as exc:
        print(f"gateway: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    kind = automated_kind(raw)
    text, forwarded = read_reply(raw)
    print(f"automated: {kind or 'no'}")
    if forwarded:
        print("forwarded: yes (a forwarded message is not part of the reply's text)")
    if kind is not None:
        print("decision:  none (automatic mail never decides)")
    elif not text.strip():
        print("decision:  none (no new text)")
    else:
        decision, comment = parse_decision(text)
        print(f"decision:  {decision} (for an approval; for a question the text is the answer)")
        print(f"comment:   {comment!r}")
    print("--- new text ---")
    print(text)
    return 0


def _safe_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.async_database_url).render_as_string(hide_password=True)


def _mcp(args: argparse.Namespace) -> int:
    to = [a.strip() for value in (args.to or [os.environ.get("GATEWAY_MCP_TO", "")]) for a in value.split(",")]
    to = [a for a in to if a]
    if not to:
        print("gateway mcp: say who is asked: --to ADDRESS or GATEWAY_MCP_TO", file=sys.stderr)
        return 2
    if not os.environ.get("GATEWAY_API_KEY"):
        print("gateway mcp: set GATEWAY_API_KEY (and GATEWAY_URL) to the gateway's", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)  # stdout carries the protocol
    try:
        from gateway.mcp_server import serve_stdio
    except ImportError:
        print("gateway mcp: the MCP server needs the mcp extra: pip install 'gateway[mcp]'", file=sys.stderr)
        return 2
    agent = args.agent or os.environ.get("GATEWAY_MCP_AGENT") or "mcp-agent"
    wait_for = args.timeout or float(os.environ.get("GATEWAY_MCP_TOOL_WAIT") or 0) or None
    asyncio.run(serve_stdio(to, base_url=args.url, wait_for=wait_for, expires_in=args.expires_in, agent=agent))
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from gateway import audit

    settings = _tool_settings(args)

    async def run(db: Any) -> tuple[int, int, list[audit.Break]]:
        async with db.read() as session:
            return await audit.verify(session, args.request)

    requests, events, breaks = _db_run(settings, run)
    print(f"# {_safe_url(settings)}", file=sys.stderr)
    for b in breaks:
        where = f"event #{b.seq}" if b.seq is not None else f"event id {b.event_id}"
        print(f"BROKEN {b.request_id} {where} (id {b.event_id}): {b.problem}")
    verdict = "intact" if not breaks else f"{len(breaks)} break(s)"
    print(f"audit: {requests} request(s), {events} event(s) checked: {verdict}")
    return 0 if not breaks else 1


def _requests(args: argparse.Namespace) -> int:
    from gateway.approvals import console
    from gateway.approvals.service import Filters

    settings = _tool_settings(args)
    if args.requests_command == "list" and not 1 <= args.limit <= 1000:
        raise RefusedError("requests list: --limit must be between 1 and 1000")

    async def run(db: Any) -> str | None:
        if args.requests_command == "show":
            return await console.show_text(db, args.id)
        filters = Filters(
            kind=args.kind,
            status=args.status,
            run_id=args.run,
            recipient=args.recipient,
            before=args.before,
            limit=args.limit,
        )
        return await console.list_text(db, filters)

    text = _db_run(settings, run)
    print(f"# {_safe_url(settings)}", file=sys.stderr)
    if text is None:
        print(f"gateway requests show: no request {args.id}", file=sys.stderr)
        return 1
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
