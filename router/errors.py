"""Every error the router can return, and the one place that maps it to HTTP.

    RouterError                      500 api_error
    ├── InvalidRequest               400 invalid_request_error
    │   └── PreviousResponseNotFound 400 param=previous_response_id, code=previous_response_not_found
    ├── AuthenticationFailed         401 authentication_error
    ├── PermissionDenied             403 permission_error
    │   ├── PolicyViolation          403 permission_error, code=tool_not_allowed
    │   ├── AgentFrozen              403 permission_error, code=agent_frozen (kill switch: every key of the agent)
    │   └── RoleFrozen               403 permission_error, code=role_frozen (kill switch: every agent of the role)
    ├── NotFound                     404 invalid_request_error
    │   └── ModelNotFound            404 code=model_not_found
    ├── PayloadTooLarge              413 invalid_request_error
    ├── RateLimited                  429 rate_limit_error (+ retry-after)
    │   └── BudgetExceeded           429 code=budget_exceeded
    ├── NoDeploymentAvailable        503 service_unavailable
    ├── LimitsUnavailable            503 service_unavailable (+ retry-after; limits fail closed)
    ├── IdentityUnavailable          503 service_unavailable (revocation or freeze check impossible: fail closed)
    ├── ResponseStoreUnavailable     503 service_unavailable (stored responses cannot be read now)
    └── ProviderError                502 upstream_error      (raised by providers/)
        ├── UpstreamTimeout          504
        ├── UpstreamConnectionError  502 (nothing was sent: connect refused, TLS, DNS)
        │   └── UpstreamConnectionLost 502 (broke after sending: the upstream may have run it)
        ├── UpstreamRateLimited      429 (+ retry-after)
        ├── UpstreamServerError      502
        ├── UpstreamAuthError        502 (our credentials, not the caller's)
        ├── UpstreamBadRequest       400 (the caller's mistake, passed on)
        │   └── ContextWindowExceeded 400 code=context_length_exceeded
        ├── ContentRefused           400 code=content_filter
        └── NotForwarded             (never reached the upstream, for a reason of ours: no cooldown counts it)
            ├── RequestNotForwardable 400 code=request_not_forwardable (the body cannot be encoded upstream)
            └── AdapterFailed        500 api_error code=internal_error (an adapter's bug, never the upstream's)

Callers catch classes, never strings. ``to_body`` gives the OpenAI-style JSON body.
"""

from __future__ import annotations

from typing import Any


class RouterError(Exception):
    status = 500
    type = "api_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def to_body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def headers(self) -> dict[str, str]:
        return {}


class InvalidRequest(RouterError):
    status = 400
    type = "invalid_request_error"


class PreviousResponseNotFound(InvalidRequest):
    """``previous_response_id`` names no response this agent may read (unknown, expired, deleted or another
    agent's): OpenAI's exact body, because Codex recovers on this code by resending the whole history."""

    code = "previous_response_not_found"

    def __init__(self, response_id: str) -> None:
        super().__init__(f"Previous response with id '{response_id}' not found.", param="previous_response_id")


class AuthenticationFailed(RouterError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(RouterError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class PolicyViolation(PermissionDenied):
    code = "tool_not_allowed"


class AgentFrozen(PermissionDenied):
    """An operator froze the agent (``agent-router agents freeze``): all its keys are refused until unfrozen."""

    code = "agent_frozen"


class RoleFrozen(PermissionDenied):
    """An operator froze the role: every agent of it is refused until unfrozen."""

    code = "role_frozen"


class NotFound(RouterError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class PayloadTooLarge(RouterError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class _RetryAfterMixin:
    retry_after: float | None = None

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"retry-after": str(max(1, round(self.retry_after + 0.4999)))}


class RateLimited(_RetryAfterMixin, RouterError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class BudgetExceeded(RateLimited):
    code = "budget_exceeded"


class NoDeploymentAvailable(RouterError):
    status = 503
    type = "service_unavailable"
    code = "no_deployment_available"


class LimitsUnavailable(_RetryAfterMixin, RouterError):
    """The shared counters are unreachable and the limits are configured to fail closed."""

    status = 503
    type = "service_unavailable"
    code = "limits_unavailable"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class IdentityUnavailable(RouterError):
    """A key's revocation cannot be checked (Redis or the key store unreachable): refused, never let through."""

    status = 503
    type = "service_unavailable"
    code = "identity_unavailable"


class ResponseStoreUnavailable(RouterError):
    """The records database holding stored responses does not answer: a lookup cannot say found or not."""

    status = 503
    type = "service_unavailable"
    code = "response_store_unavailable"


class ProviderError(RouterError):
    """Raised by provider adapters; ``retryable`` tells the executor whether another try may help."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"
    retryable = True

    upstream_body: bytes | None = None
    """The upstream's error body as it came (bounded), when an adapter keeps it: a caller of the same wire format
    gets it unmodified (Claude Code's recovery matches on Anthropic's wording)."""
    upstream_wire: str | None = None
    """The wire format :attr:`upstream_body` is in (``messages`` for an Anthropic upstream)."""

    def __init__(self, message: str, *, upstream_status: int | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.upstream_status = upstream_status


class UpstreamTimeout(ProviderError):
    status = 504
    code = "upstream_timeout"


class UpstreamConnectionError(ProviderError):
    code = "upstream_connection_error"


class UpstreamConnectionLost(UpstreamConnectionError):
    """The connection broke once the request was (maybe partly) sent: the upstream may have run, and billed,
    it, so it is never sent to the same deployment again."""


class UpstreamRateLimited(_RetryAfterMixin, ProviderError):
    status = 429
    type = "rate_limit_error"
    code = "upstream_rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, upstream_status: int | None = 429) -> None:
        super().__init__(message, upstream_status=upstream_status)
        self.retry_after = retry_after


class UpstreamServerError(ProviderError):
    code = "upstream_server_error"


class UpstreamAuthError(ProviderError):
    code = "upstream_authentication_failed"


class UpstreamBadRequest(ProviderError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"
    retryable = False


class ContextWindowExceeded(UpstreamBadRequest):
    code = "context_length_exceeded"
    retryable = True  # a deployment with a larger window may still serve it


class ContentRefused(ProviderError):
    status = 400
    type = "invalid_request_error"
    code = "content_filter"


class NotForwarded(ProviderError):
    """The request never reached the upstream, for a reason of ours or the caller's: never an upstream fault,
    so no deployment is cooled down for it."""


class RequestNotForwardable(NotForwarded):
    """The adapter cannot encode the body for the upstream (nested too deeply for the encoder, say): the
    request's problem, returned at once."""

    status = 400
    type = "invalid_request_error"
    code = "request_not_forwardable"
    retryable = False


class AdapterFailed(NotForwarded):
    """An adapter raised something no typed error explains: a bug of ours, answered without its traceback.
    The next deployment (maybe another adapter) is still tried."""

    status = 500
    type = "api_error"
    code = "internal_error"


def error_body(status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error body for failures that have no RouterError (framework-level 404/405...)."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
