"""What a failed attempt means for the next step, and which error the client gets when every step failed.

Pure: errors in, decisions out. The executor does the waiting and the calling.

    error                                    next step                         cooldown counts it
    UpstreamConnectionError (nothing sent)   retry same (backoff), then next   yes
    UpstreamConnectionLost (after sending)   next (a retry could run it twice)  yes
    UpstreamServerError 500/502/503/504      retry same (backoff), then next   yes
    UpstreamServerError other (bad JSON...)  next                              yes
    UpstreamAuthError (our credentials)      next                              yes
    UpstreamTimeout                          next (a retry would burn another timeout)  yes
    UpstreamRateLimited                      next; the last candidate waits out a short retry-after  yes
    ContentRefused                           next                              no
    ContextWindowExceeded                    next with a larger context window  no
    UpstreamBadRequest (caller's mistake)    stop: returned at once            no
    RequestNotForwardable (cannot encode)    stop: 400 at once                 no (never reached it)
    AdapterFailed (a bug of ours)            next; 500 when every one fails    no (never reached it)
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

from router.errors import (
    ContentRefused,
    ContextWindowExceeded,
    InvalidRequest,
    NoDeploymentAvailable,
    ProviderError,
    RouterError,
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamConnectionError,
    UpstreamConnectionLost,
    UpstreamRateLimited,
    UpstreamServerError,
    UpstreamTimeout,
)

_TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})


class Step(Enum):
    RETRY_SAME = "retry the same deployment"
    NEXT = "try the next deployment"
    NEXT_LARGER = "try the next deployment with a larger context window"
    STOP = "return the error to the client"


def next_step(error: ProviderError) -> Step:
    if isinstance(error, ContextWindowExceeded):
        return Step.NEXT_LARGER
    if isinstance(error, UpstreamBadRequest) or not error.retryable:
        return Step.STOP
    if is_transient(error):
        return Step.RETRY_SAME
    return Step.NEXT


def is_transient(error: ProviderError) -> bool:
    """Worth a second try on the same deployment: a dropped connection or a passing 5xx."""
    if isinstance(error, UpstreamConnectionError):
        return not isinstance(error, UpstreamConnectionLost)
    return isinstance(error, UpstreamServerError) and error.upstream_status in _TRANSIENT_STATUSES


def is_upstream_fault(error: ProviderError) -> bool:
    """Counts towards a deployment's cooldown: the fault lies upstream, not in what the caller sent."""
    return isinstance(error, UpstreamServerError | UpstreamConnectionError | UpstreamTimeout | UpstreamRateLimited
                      | UpstreamAuthError) or type(error) is ProviderError


def backoff_delay(retry: int, base: float, cap: float, rand: random.Random | None = None) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**retry)]."""
    ceiling = min(cap, base * (2**retry))
    return (rand or random).uniform(0, ceiling) if ceiling > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Failure:
    deployment: str
    error: ProviderError


@dataclass(frozen=True, slots=True)
class Skip:
    deployment: str
    reason: str
    kind: str
    """'capability', 'context_window' or 'cooldown'."""


def _summary(failures: list[Failure], skipped: list[Skip]) -> str:
    parts = [f"{f.deployment}: {f.error.message}" for f in failures]
    parts += [f"{s.deployment} skipped: {s.reason}" for s in skipped]
    return "; ".join(parts)


def final_error(failures: list[Failure], skipped: list[Skip], deadline_hit: float | None = None) -> RouterError:
    """See :func:`_final_error`; when every failure was the same upstream answer in one wire format (one
    deployment's 529, say), its body and status are kept for a caller of that format to get unmodified."""
    error = _final_error(failures, skipped, deadline_hit)
    kept = [f.error for f in failures if f.error.upstream_body]
    if isinstance(error, ProviderError) and kept and len(kept) == len(failures) and deadline_hit is None \
            and len({(e.upstream_wire, e.upstream_status) for e in kept}) == 1:
        last = kept[-1]
        error.upstream_body, error.upstream_wire, error.upstream_status = \
            last.upstream_body, last.upstream_wire, last.upstream_status
    return error


def _final_error(failures: list[Failure], skipped: list[Skip], deadline_hit: float | None = None) -> RouterError:
    """The most meaningful error once nothing is left to try, with a message listing what was tried.

    All rate limited -> 429 (+ the shortest retry-after); all timed out or the deadline hit -> 504; the
    prompt too long everywhere -> 400 context_length_exceeded; all refused -> 400 content_filter; nothing
    tried because no deployment can serve the request -> 400; any other mix -> 502.
    """
    detail = _summary(failures, skipped)
    if deadline_hit is not None:
        tried = f"; tried {detail}" if detail else ""
        return UpstreamTimeout(f"the request deadline of {deadline_hit:g}s passed{tried}", code="deadline_exceeded")
    if not failures:
        if skipped and all(s.kind == "context_window" for s in skipped):
            return InvalidRequest(f"the prompt is too long for every deployment: {detail}",
                                  param="messages", code="context_length_exceeded")
        if skipped and all(s.kind != "cooldown" for s in skipped):
            return InvalidRequest(f"no deployment can serve this request: {detail}",
                                  code="unsupported_capability")
        return NoDeploymentAvailable(f"no deployment is available: {detail or 'the plan is empty'}")
    errors = [f.error for f in failures]
    count = f"{len({f.deployment for f in failures})} deployment(s) failed: {detail}"
    if all(isinstance(e, UpstreamRateLimited) for e in errors):
        waits = [e.retry_after for e in errors if isinstance(e, UpstreamRateLimited) and e.retry_after is not None]
        return UpstreamRateLimited(f"rate limited upstream; {count}", retry_after=min(waits) if waits else None)
    if all(isinstance(e, UpstreamTimeout) for e in errors):
        return UpstreamTimeout(f"upstream timed out; {count}")
    context_only = all(isinstance(e, ContextWindowExceeded) for e in errors)
    if context_only and all(s.kind in ("context_window", "cooldown") for s in skipped):
        return ContextWindowExceeded(f"the prompt is too long; {count}", upstream_status=400)
    if all(isinstance(e, ContentRefused) for e in errors):
        return ContentRefused(f"the content was refused; {count}", upstream_status=errors[-1].upstream_status)
    if len({type(e) for e in errors}) == 1:
        last = errors[-1]
        return type(last)(count, upstream_status=last.upstream_status, code=last.code)
    return ProviderError(f"every deployment failed; {count}", code="all_deployments_failed")
