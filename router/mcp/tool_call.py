"""One ``tools/call`` through the gateway: decide, count, forward, record.

Order: the tool must be one the server listed to this role's credential, under exactly that name (a look-alike
or hidden name never reaches the server); the role's policy decides on the name and the arguments (the
model plane's ``decide``); the role's tool limits are taken on the shared counters; only then is the call sent,
with the server's timeout, its progress relayed to the agent. Every outcome is a record and an audit event. A
refusal is a tool result with ``isError`` naming the rule, so an agent's model reads why and can adapt.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import anyio
import mcp.types as types
import orjson
from mcp.shared.exceptions import MCPError

from router.config.mcp_schema import McpServerSpec
from router.mcp.policy import McpPolicy, decide_tool, qualified
from router.mcp.records import ToolCallRecord, arguments_fields
from router.mcp.upstream import UpstreamConnection
from router.policy.decide import ToolDecision
from router.redact import LOG_FILTER
from router.store.counters import Counters, CountersUnavailable, Gate

log = logging.getLogger("agent_router.mcp")

DECISION_META = "agent-router/decision"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the gateway decided before sending a call."""

    decision: str
    """``allowed``, ``denied``, ``would_deny``, ``rate_limited``, ``unavailable``."""
    rule: str | None
    reason: str
    shadow: tuple[tuple[str, str], ...] = ()
    """Rules in shadow that would have denied this call (recorded, not enforced)."""

    @property
    def sends(self) -> bool:
        return self.decision in ("allowed", "would_deny")


def refusal_result(server: str, tool: str, verdict: Verdict) -> types.CallToolResult:
    """A tool result the agent's model can read: which rule refused the call and why."""
    text = (f"agent-router refused the call to '{tool}' on MCP server '{server}': {verdict.reason} "
            f"(rule: {verdict.rule})")
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], is_error=True,
        _meta={DECISION_META: {"decision": verdict.decision, "rule": verdict.rule, "server": server}})


def error_result(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def arguments_text(arguments: dict[str, Any] | None) -> str:
    return orjson.dumps(arguments if arguments is not None else {}).decode()


def decide_call(policy: McpPolicy, server: str, tool: str, listed: bool, arguments: str) -> Verdict:
    """The policy's verdict on one call (pure)."""
    if not listed:
        decision = ToolDecision(False, "not-listed", f"server '{server}' does not offer a tool named exactly "
                                                     f"'{tool}' to this role")
    elif len(arguments) > policy.tools.max_call_bytes:
        decision = ToolDecision(False, "arguments-too-large", f"the arguments are {len(arguments)} bytes, above the "
                                                              f"limit of {policy.tools.max_call_bytes}")
    else:
        decision = decide_tool(policy, server, tool, arguments)
    if decision.allowed:
        return Verdict("allowed", decision.rule, decision.reason, decision.shadow)
    if policy.audit_only and decision.rule != "server-not-allowed":
        return Verdict("would_deny", decision.rule, decision.reason)
    return Verdict("denied", decision.rule, decision.reason)


async def take_limits(counters: Counters, policy: McpPolicy, agent: str, server: str, tool: str) -> Verdict | None:
    """Count the call against every tool limit of the role that matches it; a verdict when one refuses.

    Fails closed: when the shared counters cannot be read, the call is refused rather than let past a limit."""
    limits = policy.limits_for(server, tool)
    if not limits or policy.role is None:
        return None
    gates = [Gate(limit.key(policy.role, agent), 1.0, float(limit.calls), limit.seconds) for limit in limits]
    try:
        refusal = await counters.take(gates)
    except CountersUnavailable:
        return Verdict("unavailable", "limits-unavailable", "the tool-call limits cannot be checked (the shared "
                                                            "counters are unreachable); try again shortly")
    if refusal is None:
        return None
    limit = limits[refusal.gate]
    retry = f"; retry in {refusal.ttl:.0f}s" if refusal.ttl > 0 else ""
    who = f"role '{policy.role}'" if limit.scope == "role" else f"agent '{agent}'"
    per = {1.0: "second", 60.0: "minute", 3600.0: "hour", 86400.0: "day"}.get(limit.seconds, f"{limit.seconds:g}s")
    return Verdict("rate_limited", f"limit:{limit.pattern}#{limit.index}",
                   f"at most {limit.calls} call(s) to '{limit.pattern}' per {per} for {who}{retry}")


@dataclass
class CallOutcome:
    result: types.CallToolResult
    outcome: str
    error: str | None = None
    result_bytes: int = 0


async def forward(conn: UpstreamConnection, spec: McpServerSpec, tool: str, arguments: dict[str, Any] | None,
                  progress: Any) -> CallOutcome:
    """Send the call; every failure becomes a clear error result (never a hung or dropped agent request)."""
    assert conn.session is not None
    conn.in_flight += 1
    try:
        result = await conn.session.call_tool(tool, arguments, read_timeout_seconds=spec.timeout,
                                              progress_callback=progress)
    except MCPError as exc:
        if exc.code == types.REQUEST_TIMEOUT:
            return CallOutcome(error_result(f"MCP server '{conn.server}' did not answer within {spec.timeout:g}s"),
                               "timeout", "timeout")
        if exc.code == types.CONNECTION_CLOSED:
            conn.dead = True
            with anyio.move_on_after(1.0):  # the connection's own task records why it ended
                await conn.ended()
            why = f" ({conn.ended_why})" if conn.ended_why else ""
            return CallOutcome(error_result(f"MCP server '{conn.server}' closed the connection during the "
                                            f"call{why}"), "upstream_error", f"connection closed{why}")
        message = conn.secrets(exc.message[:500])  # an upstream's text may echo its credential
        return CallOutcome(error_result(f"MCP server '{conn.server}' answered an error: {message}"),
                           "upstream_error", f"{exc.code}: {message[:200]}")
    except anyio.get_cancelled_exc_class():
        raise
    except Exception as exc:
        conn.dead = True
        log.warning("mcp: call to %s on %s failed: %s", tool, conn.server, type(exc).__name__)
        return CallOutcome(error_result(f"MCP server '{conn.server}' failed during the call ({type(exc).__name__})"),
                           "upstream_error", type(exc).__name__)
    finally:
        conn.in_flight -= 1
        conn.touch()
    text = result.model_dump_json(by_alias=True, exclude_none=True)
    size = len(text)
    masked = conn.secrets.values_only(text)
    if masked is not text and masked != text:  # the server echoed the role's own credential: never the agent's
        result = types.CallToolResult.model_validate_json(masked)
    if size > spec.max_result_bytes:
        return CallOutcome(error_result(f"the result of '{tool}' is {size} bytes, above this server's limit of "
                                        f"{spec.max_result_bytes}"), "too_large", "result too large", size)
    return CallOutcome(result, "tool_error" if result.is_error else "ok", None, size)


def build_record(*, request_id: str, session: str | None, agent: str | None, role: str | None, server: str,
                 method: str, tool: str, arguments: Any, spec: McpServerSpec | None, verdict: Verdict,
                 outcome: str, error: str | None, started: float, result_bytes: int, credential: str | None,
                 policy_version: str | None) -> ToolCallRecord:
    keep = spec.record_arguments if spec is not None else False
    cap = spec.record_arguments_bytes if spec is not None else 0
    digest, kept, size = arguments_fields(arguments, keep, cap)
    if kept is not None:
        kept = LOG_FILTER.redactor(kept)  # secrets an agent passed in arguments are not kept
    return ToolCallRecord(
        ts=time.time(), request_id=request_id, session=session, agent=agent, role=role, server=server,
        method=method, tool=tool, arguments_sha256=digest, arguments=kept, arguments_bytes=size,
        decision=verdict.decision, rule=verdict.rule, reason=verdict.reason, outcome=outcome, error=error,
        latency_ms=round((time.perf_counter() - started) * 1000.0, 3), result_bytes=result_bytes,
        credential=credential, policy_version=policy_version)


_ACTIONS = {"allowed": "allowed", "denied": "blocked", "would_deny": "would_deny", "rate_limited": "rate_limited",
            "unavailable": "unavailable"}


def audit_events(record: ToolCallRecord, verdict: Verdict) -> list[dict[str, Any]]:
    """The call's decision, and what rules in shadow would have decided, as audit events (stage ``mcp``)."""
    main = audit_event(record)
    shadow = [{**main, "action": "would_deny", "rule": rule, "reason": reason} for rule, reason in verdict.shadow]
    return [main, *shadow]


def audit_event(record: ToolCallRecord) -> dict[str, Any]:
    """The call's decision as an audit event of the shared hash chain (stage ``mcp``)."""
    return {
        "ts": record.ts, "request_id": record.request_id, "agent": record.agent, "role": record.role,
        "model": None, "tool": qualified(record.server, record.tool), "action": _ACTIONS.get(record.decision,
                                                                                            record.decision),
        "stage": "mcp", "rule": record.rule, "reason": record.reason, "policy_version": record.policy_version,
        "extra": {"server": record.server, "method": record.method, "session": record.session,
                  "outcome": record.outcome},
    }
