"""Usage records: what one finished request leaves in the ledger.

Each request gives one ``request`` row (its final outcome: the deployment that served it, or the last one
tried, its tokens and cost) and one ``attempt`` row per upstream attempt (fallbacks included; a failed
attempt has 0 tokens, status ``error`` and the error text). A request refused before any attempt (400, 401,
403, 404, 413, 429, 503) has only its ``request`` row, with attempt 0, status ``refused`` and no deployment.
Reports count requests from ``request`` rows and attempts from ``attempt`` rows, and sum tokens and cost over
``request`` rows only, so nothing is counted twice.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from router.agent_session import session_of
from router.config.schema import DeploymentSpec
from router.context import RequestContext
from router.ledger.audit_rows import fold
from router.ledger.cost import cache_write_count, cost_of_tokens, to_nano, token_counts
from router.ledger.estimate import Estimate

log = logging.getLogger("agent_router.ledger")


@dataclass(slots=True)
class UsageRecord:
    """One row of ``usage_records``, by name. The writer builds :data:`Row` tuples directly (no object per row);
    this class names the columns (:data:`COLUMNS` is its field order) and builds rows by name where that reads
    better than a tuple."""

    ts: float
    day: str
    kind: str
    request_id: str
    attempt: int
    agent: str | None
    role: str | None
    rule: str | None
    requested_model: str | None
    deployment: str | None
    provider: str | None
    model: str | None
    status: str
    http_status: int | None
    error: str | None
    latency_ms: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_nano: int | None = 0
    price_known: int | None = None
    estimated: int = 0
    policy_outcome: str = "none"
    stream: int = 0
    requests: int = 1
    """Requests this row stands for: 1, or a minute's count of unauthenticated refusals (see ``refusals``)."""
    source: str | None = None
    """The client address, on aggregated unauthenticated refusals only."""
    client_request_id: str | None = None
    """The caller's own ``x-request-id``, for correlation; ``request_id`` (the router's) keys the record."""
    api: str | None = None
    """The caller's wire format: ``chat``, ``messages``."""
    cache_write_tokens: int = 0
    """Prompt tokens written to the upstream's prompt cache (Anthropic's ``cache_creation_input_tokens``), part of
    ``prompt_tokens`` and priced apart."""
    session_id: str | None = None
    """The coding agent's session (Claude Code's ``x-claude-code-session-id``, Codex's ``session_id``): usage per
    session."""
    session_agent: str | None = None
    """``x-claude-code-agent-id``: the sub-agent inside the session (cost attribution, not an identity)."""
    parent_agent: str | None = None
    """``x-claude-code-parent-agent-id``."""

    def row(self) -> Row:
        return _row_of(self)


Row = tuple[Any, ...]
"""A ``usage_records`` row: its values in :data:`COLUMNS` order."""

COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(UsageRecord))
_row_of = attrgetter(*COLUMNS)
_REQUEST_ID = COLUMNS.index("request_id")
_TOKENS = COLUMNS.index("prompt_tokens")
"""Where the charged block starts: prompt, completion, cached tokens, cost_nano, price_known, estimated."""
_ESTIMATED = COLUMNS.index("estimated")
_TOOL_CALL_REQUEST_ID = 1
"""Where an ``mcp_calls`` row holds its request id (``tool_calls.COLUMNS``; asserted there)."""
TEXT_POSITIONS: tuple[int, ...] = tuple(number for number, column in enumerate(fields(UsageRecord))
                                     if str(column.type).startswith("str"))
"""Where a row holds text (the values ``storable`` makes safe before they are written)."""
assert COLUMNS[_TOKENS:_ESTIMATED + 1] == ("prompt_tokens", "completion_tokens", "cached_tokens", "cost_nano",
                                          "price_known", "estimated")


def flagged_estimated(row: Row) -> Row:
    """The row with ``estimated`` set to 1 (its tokens could not be counted)."""
    return (*row[:_ESTIMATED], 1, *row[_ESTIMATED + 1:])


@dataclass(slots=True)
class FinishedRequest:
    """The rows and audit events of one request (or MCP tool call), waiting in the writer's queue."""

    rows: list[Row]
    audit_events: list[dict[str, Any]] = field(default_factory=list)
    estimate: Estimate | None = None
    deployment: DeploymentSpec | None = None
    tool_calls: list[Row] = field(default_factory=list)
    """``mcp_calls`` rows (see ``tool_calls``): a tool call has these and no usage ``rows``."""

    @property
    def request_id(self) -> str:
        if self.rows:
            return str(self.rows[0][_REQUEST_ID])
        if self.tool_calls:
            return str(self.tool_calls[0][_TOOL_CALL_REQUEST_ID])
        return str(self.audit_events[0].get("request_id")) if self.audit_events else "?"

    def resolve_estimate(self) -> None:
        """Fill in estimated tokens and their cost (tokenizes: run it off the event loop)."""
        if self.estimate is None:
            return
        estimate, self.estimate = self.estimate, None
        prompt, completion = estimate.tokens()
        cost, known = (cost_of_tokens(self.deployment, prompt, completion, 0) if self.deployment is not None
                       else (None, None))
        charged = (prompt, completion, 0, to_nano(cost), _flag(known), 1)
        rows = self.rows
        for index in _charged(len(rows)):
            row = rows[index]
            rows[index] = (*row[:_TOKENS], *charged, *row[_ESTIMATED + 1:])


def _charged(count: int) -> tuple[int, ...]:
    """Which of a request's rows carry its tokens: its ``request`` row (the first) and its last ``attempt`` row."""
    return () if count == 0 else (0,) if count == 1 else (0, count - 1)


@dataclass(slots=True)
class EndedRequest:
    """A request as it ended, queued by the event loop as is; the writer builds its records later, in a batch."""

    ctx: RequestContext
    status: str
    ended: float
    """Epoch seconds when it ended."""
    latency_ms: float

    @property
    def request_id(self) -> str:
        return self.ctx.request_id

    def finished(self) -> FinishedRequest:
        """Its records; when they cannot be built (a bug), at least its audit events."""
        try:
            return from_context(self.ctx, self.status, self.ended, self.latency_ms)
        except Exception:
            log.exception("ledger: could not build the usage records of request %s; its audit events are kept",
                          self.ctx.request_id)
            return FinishedRequest([], fold(list(self.ctx.audit_events)))


def _flag(value: bool | None) -> int | None:
    return None if value is None else int(value)


def _millis(latency_ms: float) -> float:
    """Rounded to the microsecond (``round(x, 3)`` does the same through decimal text, 5x slower)."""
    return round(latency_ms * 1000) / 1000


_STRIPPING = frozenset(("stripped", "refused_name", "rewritten"))


def policy_outcome(ctx: RequestContext) -> str:
    """blocked | stripped | audit_only | none: what tool policy did to this request or its answer."""
    if ctx.policy_summary:
        actions = {entry.get("action") for entry in ctx.policy_summary}
        if "blocked" in actions:
            return "blocked"
        if not _STRIPPING.isdisjoint(actions):
            return "stripped"
    for event in ctx.audit_events:
        if event.get("action") == "would_strip":
            return "audit_only"
    return "none"


def _error_of(ctx: RequestContext) -> tuple[int | None, str | None]:
    error = ctx.error
    if error is None:
        return None, None
    return int(getattr(error, "status", 500)), str(getattr(error, "message", error))


def from_context(ctx: RequestContext, status: str, now: float | None = None,
                 latency_ms: float | None = None) -> FinishedRequest:
    """Build the rows of a finished request. No tokenizing, no I/O; the writer calls it off the event loop.

    ``now`` and ``latency_ms`` are taken when the request finished (by :meth:`Ledger.record`), not when this runs.
    Rows are built as tuples in :data:`COLUMNS` order, with no object per row (this runs once per request).
    """
    now = time.time() if now is None else now
    if latency_ms is None:
        latency_ms = (time.perf_counter() - ctx.started) * 1000
    attempts = ctx.attempts
    served = attempts[-1] if attempts else None
    http_status: int | None
    if status == "ok":
        final_status, http_status, error = "ok", 200, None
    else:
        http_status, error = _error_of(ctx)
        if served is None:
            final_status = "refused"
        else:
            final_status = "error"
            error = error or served.error
        if http_status is None:
            http_status = 500
        if error:
            error = ctx.snapshot.redactor(error)  # a second line of defence: the executor masked it already
    spec = ctx.snapshot.deployments.get(served.deployment) if served is not None else None
    prompt, completion, cached = token_counts(ctx.usage)
    written = cache_write_count(ctx.usage, prompt - cached)
    if spec is not None:
        cost, known = cost_of_tokens(spec, prompt, completion, cached, written)
    else:
        cost, known = 0.0, None
    charged = (prompt, completion, cached, to_nano(cost), _flag(known), 0)
    who = (ctx.request_id, len(attempts), ctx.agent, ctx.role, ctx.rule, ctx.requested_model or None)
    headers = ctx.headers
    tail = (policy_outcome(ctx), int(ctx.stream), 1, None, ctx.client_request_id, ctx.wire, written,
            _cut(session_of(headers)), _header(headers, "x-claude-code-agent-id"),
            _header(headers, "x-claude-code-parent-agent-id"))
    request_id, _, agent, role, rule, requested = who
    if served is None:
        where: tuple[str | None, ...] = (None, None, None)
    else:
        where = (served.deployment, served.provider, served.model)
    rows: list[Row] = [(now, utc_day(now), "request", *who, *where, final_status, http_status, error,
                        _millis(latency_ms), *charged, *tail)]
    last = len(attempts)
    idle_tail = (*tail[:6], 0, *tail[7:])  # an attempt that did not answer wrote nothing to the cache
    redact = ctx.snapshot.redactor
    for number, attempt in enumerate(attempts, start=1):
        started = attempt.started
        tokens = charged if number == last else (0, 0, 0, 0, _flag(_price_known(ctx, attempt.deployment)), 0)
        rows.append((started, utc_day(started), "attempt", request_id, number, agent, role, rule, requested,
                     attempt.deployment, attempt.provider, attempt.model, "ok" if attempt.status == "ok" else "error",
                     None, attempt.error and redact(attempt.error), _millis(attempt.latency_ms), *tokens,
                     *(tail if number == last else idle_tail)))
    if ctx.client_request_id is not None:
        for event in ctx.audit_events:  # hashed with the event (in its extra), found by audit list --request-id
            event["client_request_id"] = ctx.client_request_id
    finished = FinishedRequest(rows, fold(ctx.audit_events), deployment=spec)
    if ctx.usage is None and spec is not None and served is not None and _answered(ctx, final_status):
        finished.estimate = Estimate(payload=ctx.payload, model=served.model, text=ctx.answer_text,
                                     chunks=ctx.stream_chunks, wire=ctx.wire)
    return finished


_DAYS: dict[int, str] = {}


def utc_day(ts: float) -> str:
    """``YYYY-MM-DD`` (UTC) of an epoch time; formatted once per day, not once per row."""
    number = int(ts // 86400)
    day = _DAYS.get(number)
    if day is None:
        if len(_DAYS) > 64:
            _DAYS.clear()
        day = _DAYS[number] = datetime.fromtimestamp(number * 86400, UTC).strftime("%Y-%m-%d")
    return day


MAX_HEADER_CHARS = 200
"""Session and agent ids longer than this are cut (a header is caller-controlled text)."""


def _header(headers: dict[str, str], name: str) -> str | None:
    return _cut(headers.get(name))


def _cut(value: str | None) -> str | None:
    return value[:MAX_HEADER_CHARS] if value else None


def _answered(ctx: RequestContext, status: str) -> bool:
    """Whether an upstream produced (and presumably billed) an answer that reported no usage."""
    return status == "ok" or bool(ctx.stream_chunks) or ctx.answer_text is not None


def _price_known(ctx: RequestContext, deployment: str) -> bool | None:
    spec = ctx.snapshot.deployments.get(deployment)
    return None if spec is None else cost_of_tokens(spec, 0, 0, 0)[1]
