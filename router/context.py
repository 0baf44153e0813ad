"""What one request carries through the stages: who asked, for what, and what was decided."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from router.config.snapshot import Snapshot


@dataclass(slots=True)
class Attempt:
    deployment: str
    provider: str
    model: str
    status: str = "pending"
    error: str | None = None
    latency_ms: float = 0.0
    started: float = field(default_factory=time.time)


@dataclass(slots=True)
class RequestContext:
    request_id: str
    snapshot: Snapshot
    payload: dict[str, Any]
    stream: bool
    requested_model: str
    started: float = field(default_factory=time.perf_counter)
    body_bytes: int = 0
    """Size of the request body as received (0 when unknown): a free upper bound on the prompt's tokens."""
    headers: dict[str, str] = field(default_factory=dict)
    """Lower-cased request headers the stages may read (``x-agent-router-*`` metadata)."""
    client: str | None = None
    client_request_id: str | None = None
    """The caller's own ``x-request-id`` (when sane): kept for correlation and echoed back; records are keyed by
    ``request_id``, which the router mints, so one client cannot plant records under another's id."""
    """The caller's address as the server saw it (ASGI ``client``); None when the server gives none."""
    agent: str | None = None
    role: str | None = None
    key_id: str | None = None
    rule: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    usage_estimated: bool = False
    policy_summary: list[dict[str, Any]] = field(default_factory=list)
    audit_events: list[dict[str, Any]] = field(default_factory=list)
    client_wants_usage: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def served_by(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None
