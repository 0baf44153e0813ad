"""Request side: keep only the tools, functions, tool_choice and history the role allows. (Stub.)"""

from __future__ import annotations

from router.context import RequestContext


def apply_request_policy(ctx: RequestContext) -> None:
    """Filter ``ctx.payload`` in place, or raise PolicyViolation (403) in block mode."""
    return None
