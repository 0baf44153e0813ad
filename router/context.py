"""What one request carries through the stages: who asked, for what, and what was decided."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from router.config.snapshot import Snapshot

if TYPE_CHECKING:
    from router.errors import RouterError
    from router.policy.decide import ToolPolicy


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
    """The caller's address as the server saw it (ASGI ``client``); None when the server gives none."""
    client_request_id: str | None = None
    """The caller's own ``x-request-id`` (when sane): kept for correlation and echoed back; records are keyed by
    ``request_id``, which the router mints, so one client cannot plant records under another's id."""
    wire: str = "chat"
    """The caller's wire format (its codec's name: ``chat``, ``messages``); answers go back in it."""
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
    # -- handed on between stages ------------------------------------------------------------------
    tool_policy: ToolPolicy | None = None
    """The role's compiled tool policy, fixed by the request side for the response side."""
    offered_tools: frozenset[str] = frozenset()
    """Names of the tools the filtered request still offers: a call to any other tool is refused."""
    prompt_estimate: int | None = None
    """The prompt's token estimate, once counted (:func:`router.tokens.prompt_tokens`)."""
    prompt_token_bounds: tuple[int, int] | None = None
    """Cheap bounds of the estimate (no tokenizer), once computed."""
    limit_refused: str | None = None
    """``kind:name:metric`` of the limit that refused the request (nothing to settle then)."""
    skipped: list[dict[str, Any]] | None = None
    """Deployments the executor passed over, with why (capabilities, cooldown, context window)."""
    answer_text: str | None = None
    """A whole answer's generated text, kept only when the upstream reported no usage (for the estimate)."""
    stream_chunks: list[bytes] | None = None
    """References to a stream's raw event payloads (the estimate's input when no usage came)."""
    cost: float | None = None
    cost_known: bool = False
    """Whether :attr:`cost` was computed (it may be None: no usage or unknown price)."""
    error: RouterError | None = None
    """Why the request failed, for its records; None when it did not."""
    response_started: bool = False
    """Bytes of the answer went out: an error now can only end a stream, not replace the answer."""
    finished: bool = False
    """Its records were written (``RouterState.finish`` runs once)."""
    translated: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The request translated for another wire format, per format (built once, reused by fallbacks)."""
    stream_state: Any = None
    """The caller's wire's per-stream state, when its codec keeps one (the Responses stream filter: numbering an
    error event so it continues the stream)."""
    turn: tuple[str | None, list[Any]] | None = None
    """Responses: (the ``previous_response_id`` the request continued, the input items of its own turn), kept with
    the answer so a conversation is stored as a chain of turns."""
    pinned_deployment: str | None = None
    """The deployment whose state the request carries (Responses' encrypted reasoning is only valid where it was
    made): tried first; other deployments get the request without that state."""

    @property
    def served_by(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None
