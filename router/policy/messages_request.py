from router.context import RequestContext
from router.policy.decide import policy_for
def review_messages_request(ctx: RequestContext) -> None:
    ctx.tool_policy = policy_for(ctx.snapshot, ctx.role)
