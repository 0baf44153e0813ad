"""Anthropic's error shape: ``{"type": "error", "error": {"type", "message"}}``, its ``type`` chosen by status so
the anthropic SDK raises its usual exception classes (AuthenticationError, RateLimitError, OverloadedError...)."""

from __future__ import annotations

from typing import Any

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
               429: "rate_limit_error", 500: "api_error", 503: "overloaded_error", 529: "overloaded_error"}
"""Anthropic's error ``type`` per status; other 4xx are ``invalid_request_error``, other 5xx ``api_error``."""

def error_type(status: int) -> str:
    return ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(status), "message": message}}
