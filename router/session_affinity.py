"""Keep one agent session on one deployment while it stays healthy, so the upstream's prompt cache keeps hitting.

Claude Code names its session in ``x-claude-code-session-id``, Codex in ``session_id``.
A plan whose order changes from request to request
(a strategy ranking by latency or load) would scatter a session's turns over deployments and every turn would
write the cache again. The deployment that last served a session is moved to the front of the session's next plan
when it is in that plan; when it cools down the executor passes over it as usual, and whichever deployment serves
next becomes the session's. A fixed fallback chain already keeps its order; split routes hash the session id to an
arm (:mod:`router.rules.routes`), the same on every replica. This memory is per process and bounded: behind a load
balancer without affinity, replicas may each hold a different deployment for one session.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

from router.agent_session import session_of
from router.context import RequestContext
from router.plan import RoutePlan

MAX_SESSIONS = 10_000


class SessionAffinity:
    def __init__(self, size: int = MAX_SESSIONS) -> None:
        self._served: OrderedDict[str, str] = OrderedDict()
        self._size = size

    def apply(self, ctx: RequestContext, plan: RoutePlan) -> RoutePlan:
        """``plan`` with the session's deployment first (unchanged without a session or a remembered one); a
        deployment the request's own state is pinned to (``ctx.pinned_deployment``) comes before even that."""
        pinned = ctx.pinned_deployment
        if pinned is not None:
            return _first(plan, pinned, f"the request's encrypted reasoning was made by {pinned}")
        session = session_of(ctx.headers)
        if not session:
            return plan
        served = self._served.get(session)
        if served is None:
            return plan
        return _first(plan, served, f"session affinity to {served}")

    def remember(self, ctx: RequestContext) -> None:
        """After a successful answer: the deployment that served the session is its deployment from now on."""
        session = session_of(ctx.headers)
        served = ctx.served_by
        if not session or served is None or served.status != "ok":
            return
        if self._served.get(session) == served.deployment:
            self._served.move_to_end(session)
            return
        self._served[session] = served.deployment
        self._served.move_to_end(session)
        while len(self._served) > self._size:
            self._served.popitem(last=False)


def _first(plan: RoutePlan, name: str, why: str) -> RoutePlan:
    if name not in plan.deployments or plan.deployments[0] == name:
        return plan
    order = (name, *(other for other in plan.deployments if other != name))
    return dataclasses.replace(plan, deployments=order, reason=f"{plan.reason}; {why}")
