from typing import Any
from router.context import RequestContext
def filter_message(ctx: RequestContext, data: dict[str, Any]) -> bool:
    return False
def may_carry_call(raw: bytes) -> bool:
    return True
