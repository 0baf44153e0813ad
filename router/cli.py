"""The ``agent-router`` command: serve, check, and the operator tools."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import import_module
from typing import TYPE_CHECKING, Literal, TypedDict

if TYPE_CHECKING:
    import asyncio

    from router.settings import Settings

Handler = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, Handler] = {}

# Further subcommands live in their own modules; each has
# ``register(subparsers) -> dict[str, Handler]`` (command name -> handler).
COMMAND_MODULES: tuple[str, ...] = ("router.commands.explain", "router.commands.keys", "router.commands.usage",
                                     "router.commands.audit", "router.commands.mcp", "router.commands.policy",
                                     "router.commands.agents")


@contextmanager
def _starting() -> Iterator[None]:
    """No cyclic garbage collection while the process imports its modules and builds its config and app.

    Starting allocates some 100,000 long-lived objects (pydantic schemas, routes, the snapshot) and almost no
    garbage (about a thousand cyclic objects), yet the collector would walk them over and over: about 7% of
    the start's CPU. Afterwards they are frozen out of the collector's generations, so later full collections
    (under load, on the event loop) no longer walk them either; the little startup garbage is left in place.
    """
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def _settings(args: argparse.Namespace) -> Settings:
    from router.settings import load_settings

    overrides = {key: getattr(args, key) for key in ("config", "host", "port", "log_level")
                 if getattr(args, key, None) is not None}
    return load_settings(**overrides)


def _serve(args: argparse.Namespace) -> int:
    with _starting():
        import uvicorn

        from router.app import create_app
        from router.config import ConfigError, load_snapshot
        from router.serve_banner import serve_banner

        settings = _settings(args)
        logging.basicConfig(level=settings.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if settings.log_level.lower() != "debug":
            # The MCP SDK and its HTTP client log every request, session and upstream URL at INFO: the gateway
            # logs what matters itself, so theirs start at WARNING.
            for noisy in ("mcp", "httpx2", "httpcore2", "sse_starlette"):
                logging.getLogger(noisy).setLevel(logging.WARNING)
        try:
            snapshot = load_snapshot(settings.config)
            app = create_app(settings, snapshot)
        except ConfigError as exc:
            print(f"agent-router: config refused:\n{exc}", file=sys.stderr)
            return 2
        _check_database(settings.database_url)
        print(serve_banner(settings, snapshot), file=sys.stderr, flush=True)
        del snapshot
    from router.http_connection import connection_limits, protocol_factory

    serve_options = _ServeOptions(host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                                  loop="uvloop", http=protocol_factory(connection_limits(settings)), ws="none",
                                  access_log=False, timeout_graceful_shutdown=30)
    workers = getattr(args, "workers", None) or 1
    if workers > 1:
        # One process per core: each worker builds its own app from the same settings, passed by environment.
        del app
        for key in ("config", "host", "port", "log_level"):
            value = getattr(settings, key)
            if value is not None:
                os.environ[f"AGENT_ROUTER_{key.upper()}"] = str(value)
        uvicorn.run("router.app:create_app", factory=True, workers=workers, **serve_options)
        return 0
    if hasattr(signal, "SIGHUP"):
        # Until the app installs its reload handler, a SIGHUP must not end the process.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    uvicorn.run(app, **serve_options)
    return 0


class _ServeOptions(TypedDict):
    """What both ways of starting uvicorn pass it (typed, so each value is checked against uvicorn.run)."""

    host: str
    port: int
    log_level: str
    loop: Literal["uvloop"]
    http: type[asyncio.Protocol]
    ws: Literal["none"]
    access_log: bool
    timeout_graceful_shutdown: int


def _check_database(url: str) -> None:
    """Open the records database once before serving: unreachable, it is a one-line error here rather than a
    traceback from the server's startup (about a millisecond for SQLite)."""
    from router.commands.command_error import CommandError
    from router.store.database import Database, DatabaseUnavailable

    database = Database(url)
    try:
        database.connect()
    except DatabaseUnavailable as exc:
        raise CommandError(str(exc)) from None
    finally:
        database.close()


def _check(args: argparse.Namespace) -> int:
    from router.config import ConfigError, load_snapshot

    settings = _settings(args)
    try:
        snapshot = load_snapshot(settings.config)
    except ConfigError as exc:
        print(f"config refused:\n{exc}", file=sys.stderr)
        return 1
    where = settings.config or "the built-in default"
    from pathlib import Path

    from router.policy.policy_check import check_policy
    from router.rules.check import check_rules

    rules = check_rules(snapshot)
    policy = check_policy(snapshot, Path(settings.config) if settings.config else None)
    if rules.problems:
        print(f"rule check failed ({rules.summary}):\n" + "\n".join(map(str, rules.problems)), file=sys.stderr)
    if policy.problems:
        print(f"policy check failed ({policy.summary}, {len(policy.problems)} problems):\n"
              + "\n".join(map(str, policy.problems)), file=sys.stderr)
    if rules.problems or policy.problems:
        return 1
    servers = len(snapshot.spec.mcp_servers)
    mcp = f"{servers} MCP server{'s' if servers != 1 else ''}, " if servers else ""
    print(f"{where}: ok ({len(snapshot.spec.providers)} providers, {len(snapshot.deployments)} deployments, "
          f"{len(snapshot.models)} models, {mcp}{rules.summary}, {policy.summary})")
    return 0


def _add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (default: $AGENT_ROUTER_CONFIG, else built-in)")


class _Version(argparse.Action):
    """``--version``, read from the installed package's metadata only when asked (it costs a few ms)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest=dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("agent-router")
        except PackageNotFoundError:
            from router import __version__ as number
        print(f"agent-router {number}")
        parser.exit()


def _add_serve_args(serve: argparse.ArgumentParser) -> None:
    """Defaults come from the environment (``AGENT_ROUTER_*``), else the built-in ones shown; values are
    checked with the other settings, so a bad one is a one-line error naming it."""
    _add_config_arg(serve)
    serve.add_argument("--host", help="address to listen on; 0.0.0.0 for every interface "
                                      "(default: $AGENT_ROUTER_HOST, else 127.0.0.1)")
    serve.add_argument("--port", help="TCP port (default: $AGENT_ROUTER_PORT, else 8080)")
    serve.add_argument("--log-level", dest="log_level", help="critical, error, warning, info or debug "
                                                             "(default: $AGENT_ROUTER_LOG_LEVEL, else info)")
    serve.add_argument("--workers", type=int, default=1,
                       help="worker processes (default 1); one per CPU core on a multi-core machine")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent-router", description="Model router for AI agents.")
    parser.add_argument("--version", action=_Version)
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the router")
    _add_serve_args(serve)
    check = commands.add_parser("check", help="validate the config without serving")
    _add_config_arg(check)
    _COMMANDS.update(serve=_serve, check=_check)
    for name in COMMAND_MODULES:
        _COMMANDS.update(import_module(name).register(commands))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    with _starting():
        parser = build_parser()
        args = parser.parse_args(argv)
    handler = _COMMANDS.get(args.command or "")
    if handler is None:
        parser.print_help()
        return 2
    from router.commands.command_error import CommandError
    from router.settings import SettingsError

    try:
        return handler(args)
    except SettingsError as exc:
        print(f"agent-router: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"agent-router: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
