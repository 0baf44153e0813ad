"""What one MCP call leaves in the records database: a :class:`ToolCallRecord` (table ``mcp_calls``) and its
audit events, written by the ledger's writer in the same batches, spill file and hash chain as the model plane's
records. Tool calls carry no tokens or cost: they never enter ``usage_records``, so finance figures stay clean.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from typing import Any

import orjson

Decision = str
"""``allowed``, ``denied`` (refused by policy), ``would_deny`` (audit_only: let through), ``rate_limited``,
``unavailable`` (the server could not be reached or has no credential for the role)."""
Outcome = str
"""``ok``, ``tool_error`` (the server answered ``isError``), ``refused`` (never sent), ``upstream_error``,
``timeout``, ``cancelled``, ``too_large`` (the result exceeded ``max_result_bytes``)."""


@dataclass(slots=True)
class ToolCallRecord:
    """One row of ``mcp_calls``: one ``tools/call`` (or ``resources/read``, ``prompts/get``) an agent made."""

    ts: float
    request_id: str
    session: str | None
    agent: str | None
    role: str | None
    server: str
    method: str
    tool: str
    """The tool name (or resource URI, prompt name) as the agent sent it."""
    arguments_sha256: str | None
    """Hash of the canonical arguments (sorted keys, compact JSON): the same call always hashes the same."""
    arguments: str | None
    """The arguments themselves, only when the server's ``record_arguments`` asks, cut to its size cap."""
    arguments_bytes: int
    decision: Decision
    rule: str | None
    reason: str | None
    outcome: Outcome
    error: str | None
    latency_ms: float
    result_bytes: int
    credential: str | None
    """Which credential entry was used (a role name, ``*``, or empty for none): never the secret itself."""
    policy_version: str | None


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ToolCallRecord))


def canonical_arguments(arguments: Any) -> bytes:
    """The arguments as one canonical text (sorted keys, compact), for the hash; ``null`` when absent."""
    try:
        return orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return repr(arguments).encode("utf-8", "replace")


def arguments_fields(arguments: Any, keep: bool, cap: int) -> tuple[str, str | None, int]:
    """``(sha256, kept text or None, size in bytes)`` of one call's arguments."""
    text = canonical_arguments(arguments)
    kept = text[:cap].decode("utf-8", "ignore") if keep else None
    return hashlib.sha256(text).hexdigest(), kept, len(text)
