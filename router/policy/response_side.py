"""Response side: check every tool call in a whole answer. (Stub.)"""

from __future__ import annotations

from typing import Any

from router.context import RequestContext


def filter_completion(ctx: RequestContext, data: dict[str, Any]) -> bool:
    """Strip or block disallowed tool calls in ``data`` in place; return True when it changed."""
    return False
