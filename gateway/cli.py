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
    sub.add_parser("migrate", help="apply the schema migrations")

    parse = sub.add_parser("parse-reply", help="show what the gateway reads from one email (.eml)")
    parse.add_argument("file", help="an RFC 822 message; - reads standard input")

    mcp = sub.add_parser("mcp", help="serve request_approval and ask_human to an MCP client over stdio")
    mcp.add_argument(
        "--to",
        action="append",
        default=None,
        help="who is asked (repeatable; default $GATEWAY_MCP_TO)",
    )
    mcp.add_argument("--url", default=None, help="the gateway (default $GATEWAY_URL)")
    mcp.add_argument("--timeout", type=float, default=None, help="seconds a tool waits for a human (default: no limit)")
    mcp.add_argument("--expires-in", type=int, default=None, help="seconds before a request expires")

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

    audit = sub.add_parser("audit", help="the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_sub.add_parser("verify", help="check every request's hash chain; exit 1 if any is broken")
    verify.add_argument("--request", default=None, help="check only this request")

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = keys_sub.add_parser("create", help="create an API key and print it once")
    create.add_argument("name")
    return parser


def _fail_config(exc: ConfigError) -> int:
    print(f"gateway: configuration error: {exc}", file=sys.stderr)
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
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-command chatter
    logging.getLogger("alembic").setLevel(logging.WARNING)


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
            return _migrate()
        if args.command == "keys":
            return _keys_create(args.name)
        if args.command == "parse-reply":
            return _parse_reply(args.file)
        if args.command == "mcp":
            return _mcp(args)
        if args.command == "audit":
            return _audit_verify(args.request)
        if args.command == "requests":
            return _requests(args)
    except ConfigError as exc:
        return _fail_config(exc)
    except KeyboardInterrupt:
        return 130
    return 2


def _run_http(app: object, host: str, port: int, reuse_port: bool = False) -> int:
    import uvicorn

    from gateway.supervisor import reuse_port_socket

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    sockets = [reuse_port_socket(host, port)] if reuse_port else None
    # Everything loaded so far (modules, mappers, routes, compiled schemas) lives as long as the process: moved
    # out of the collector's sight, a full collection no longer walks it (one took tens of ms under load, the
    # submit p99).
    gc.collect()
    gc.freeze()
    server.run(sockets=sockets)  # uvloop and httptools when installed
    return 0 if server.started else 1


def _dev(args: argparse.Namespace) -> int:
    from gateway.app import create_app
    from gateway.dev.mailbox import DevMailbox
    from gateway.keys import create_key, ensure_key
    from gateway.runtime import Runtime
    from gateway.services import Services

    overrides: dict[str, object] = {}
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
    dev_key = os.environ.get("GATEWAY_DEV_API_KEY")

    async def ready(svc: Services) -> None:
        if dev_key:
            try:
                await ensure_key(svc.db, "dev", dev_key)
            except ValueError as exc:
                raise ConfigError("GATEWAY_DEV_API_KEY", str(exc)) from None
            key = dev_key
        else:
            _, key = await create_key(svc.db, "dev")
        mailbox = runtime.dev_mailbox
        print(f"gateway dev is running at {base}", flush=True)
        print(f"  API key:      {key}", flush=True)
        if not dev_key:
            print("                (set GATEWAY_DEV_API_KEY to keep one key across restarts)", flush=True)
        print(f"  Dev mailbox:  {base}/dev/mailbox", flush=True)
        print(f"  API docs:     {base}/docs", flush=True)
        print(f"  Mail capture: SMTP on 127.0.0.1:{mailbox.port if mailbox else '?'}", flush=True)
        print(f"  Webhooks:     signed with {svc.settings.webhook_secret}", flush=True)
        print(f"  Database:     {settings.database_url}", flush=True)

    runtime = Runtime(settings, dev_mailbox=DevMailbox(base), on_ready=ready, share_signals=False)
    return _run_http(create_app(runtime), args.host, args.port)


def _serve(args: argparse.Namespace) -> int:
    from gateway.app import create_app
    from gateway.runtime import Runtime

    settings = load_settings("serve")
    _logging()
    if args.processes < 1:
        raise ConfigError("--processes", "must be at least 1")
    if args.processes > 1:
        from gateway.supervisor import Supervisor

        _migrate_quietly(settings)  # once, before the children start (they do not)
        print(
            f"gateway serve on {args.host}:{args.port} in {args.processes} processes,"
            f" public URL {settings.public_base}",
            flush=True,
        )
        return Supervisor(args.host, args.port, args.processes, workers=not args.no_workers).run()
    roles = None if args.roles is None else frozenset(r for r in args.roles.split(",") if r)
    part, _, parts = args.poller_part.partition("/")
    runtime = Runtime(
        settings,
        workers=not args.no_workers,
        roles=roles,
        poller_part=(int(part), int(parts)),
        migrate_on_start=not args.no_migrate,
    )
    if not args.reuse_port:
        print(f"gateway serve on {args.host}:{args.port}, public URL {settings.public_base}", flush=True)
    return _run_http(create_app(runtime), args.host, args.port, reuse_port=args.reuse_port)


def _worker() -> int:
    from gateway.runtime import Runtime

    settings = load_settings("worker")
    _logging()

    async def run() -> None:
        runtime = Runtime(settings)
        await runtime.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print("gateway worker running", flush=True)
        try:
            await stop.wait()
        finally:
            await runtime.stop()

    asyncio.run(run())
    return 0


def _migrate_quietly(settings: Settings) -> None:
    from gateway.db import Database
    from gateway.runtime import upgrade_schema

    async def run() -> None:
        db = Database(settings.async_database_url)
        try:
            await upgrade_schema(db)
        finally:
            await db.dispose()

    asyncio.run(run())


def _migrate() -> int:
    settings = load_settings("tool")
    _migrate_quietly(settings)
    print(f"gateway: schema is up to date ({_safe_url(settings)})")
    return 0


def _keys_create(name: str) -> int:
    from gateway.db import Database
    from gateway.keys import create_key
    from gateway.runtime import upgrade_schema

    settings = load_settings("tool")

    async def run() -> str:
        db = Database(settings.async_database_url)
        try:
            await upgrade_schema(db)
            _, plaintext = await create_key(db, name)
            return plaintext
        finally:
            await db.dispose()

    print(asyncio.run(run()))
    print(f"(key {name!r} created; it is shown only this once)", file=sys.stderr)
    return 0


def _parse_reply(path: str) -> int:
    from gateway.replies import automated_kind, extract_reply, parse_decision

    try:
        raw = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()  # noqa: SIM115
    except OSError as exc:
        print(f"gateway: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    kind = automated_kind(raw)
    text = extract_reply(raw)
    print(f"automated: {kind or 'no'}")
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
    asyncio.run(serve_stdio(to, base_url=args.url, wait_for=args.timeout, expires_in=args.expires_in))
    return 0


def _audit_verify(request_id: str | None) -> int:
    from gateway import audit
    from gateway.db import Database

    settings = load_settings("tool")

    async def run() -> tuple[int, int, list[audit.Break]]:
        db = Database(settings.async_database_url)
        try:
            async with db.read() as session:
                return await audit.verify(session, request_id)
        finally:
            await db.dispose()

    requests, events, breaks = asyncio.run(run())
    for b in breaks:
        where = f"event #{b.seq}" if b.seq is not None else f"event id {b.event_id}"
        print(f"BROKEN {b.request_id} {where} (id {b.event_id}): {b.problem}")
    verdict = "intact" if not breaks else f"{len(breaks)} break(s)"
    print(f"audit: {requests} request(s), {events} event(s) checked: {verdict}")
    return 0 if not breaks else 1


def _requests(args: argparse.Namespace) -> int:
    from gateway.approvals import console
    from gateway.approvals.service import Filters
    from gateway.db import Database

    settings = load_settings("tool")
    if args.requests_command == "list" and not 1 <= args.limit <= 1000:
        print("gateway requests list: --limit must be between 1 and 1000", file=sys.stderr)
        return 2

    async def run() -> str | None:
        db = Database(settings.async_database_url)
        try:
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
        finally:
            await db.dispose()

    text = asyncio.run(run())
    if text is None:
        print(f"gateway requests show: no request {args.id}", file=sys.stderr)
        return 1
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
