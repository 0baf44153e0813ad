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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from router.settings import Settings

Handler = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, Handler] = {}

# Further subcommands live in their own modules; each has
# ``register(subparsers) -> dict[str, Handler]`` (command name -> handler).
COMMAND_MODULES: tuple[str, ...] = ("router.commands.explain", "router.commands.keys", "router.commands.usage",
                                     "router.commands.audit")


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
    from router.settings import Settings

    overrides = {key: getattr(args, key) for key in ("config", "host", "port", "log_level")
                 if getattr(args, key, None) is not None}
    return Settings(**overrides)


def _serve(args: argparse.Namespace) -> int:
    with _starting():
        import uvicorn

        from router.app import create_app
        from router.config import ConfigError

        settings = _settings(args)
        logging.basicConfig(level=settings.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            app = create_app(settings)
        except ConfigError as exc:
            print(f"agent-router: config refused:\n{exc}", file=sys.stderr)
            return 2
    serve_options = {"host": settings.host, "port": settings.port, "log_level": settings.log_level.lower(),
                     "loop": "uvloop", "http": "httptools", "ws": "none", "access_log": False,
                     "timeout_graceful_shutdown": 30}
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


def _check(args: argparse.Namespace) -> int:
    from router.config import ConfigError, load_snapshot

    settings = _settings(args)
    try:
        snapshot = load_snapshot(settings.config)
    except ConfigError as exc:
        print(f"config refused:\n{exc}", file=sys.stderr)
        return 1
    where = settings.config or "the built-in default"
    from router.rules.check import check_rules

    rules = check_rules(snapshot)
    if rules.problems:
        print(f"rule check failed ({rules.summary}):\n" + "\n".join(map(str, rules.problems)), file=sys.stderr)
        return 1
    print(f"{where}: ok ({len(snapshot.spec.providers)} providers, {len(snapshot.deployments)} deployments, "
          f"{len(snapshot.models)} models, {rules.summary})")
    return 0


def _add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (default: $AGENT_ROUTER_CONFIG, else built-in)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent-router", description="Model router for AI agents.")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the router")
    _add_config_arg(serve)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--log-level", dest="log_level")
    serve.add_argument("--workers", type=int, default=1,
                       help="worker processes (default 1); one per CPU core on a multi-core machine")
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
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
