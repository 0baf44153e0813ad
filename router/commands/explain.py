"""``agent-router explain --config FILE REQUEST.json``: the routing decision for a request, offline.

The same explanation as ``POST /v1/route/explain``: loads the config, applies the role's request policy,
evaluates the rules and prints JSON. No provider is called; nothing listens on a port.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from router.api.parse import parse_chat_body
from router.config import ConfigError, load_snapshot
from router.errors import RouterError
from router.policy.request_side import apply_request_policy
from router.rules.explain import explain_route, request_context
from router.settings import load_settings

Handler = Callable[[argparse.Namespace], int]


def register(subparsers: Any) -> dict[str, Handler]:
    parser = subparsers.add_parser("explain", help="show which rule and deployments a request would get")
    parser.add_argument("--config", help="YAML config file (default: $AGENT_ROUTER_CONFIG, else built-in)")
    parser.add_argument("request", help="a chat completion request as JSON ('-' reads standard input)")
    parser.add_argument("--agent", help="the calling agent (its role is taken from the config)")
    parser.add_argument("--role", help="the calling role (overrides the agent's)")
    parser.add_argument("--header", action="append", default=[], metavar="NAME=VALUE",
                        help="an x-agent-router-* header (the prefix may be left out); repeatable")
    return {"explain": run}


def _read_request(source: str) -> dict[str, Any]:
    raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    return parse_chat_body(raw)


def run(args: argparse.Namespace) -> int:
    config = args.config or load_settings().config
    try:
        snapshot = load_snapshot(config)
    except ConfigError as exc:
        print(f"config refused:\n{exc}", file=sys.stderr)
        return 2
    headers = {}
    for item in args.header:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"--header wants NAME=VALUE, got {item!r}", file=sys.stderr)
            return 2
        headers[name.strip()] = value
    try:
        payload = _read_request(args.request)
        ctx = request_context(snapshot, payload, agent=args.agent, role=args.role, headers=headers)
        apply_request_policy(ctx)
        result = explain_route(ctx)
    except OSError as exc:
        print(f"cannot read {args.request}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except RouterError as exc:
        sys.stdout.buffer.write(orjson.dumps(exc.to_body(), option=orjson.OPT_INDENT_2) + b"\n")
        return 1
    sys.stdout.buffer.write(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    return 0
