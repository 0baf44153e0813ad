"""Unauthenticated refusals, counted per minute instead of recorded one by one.

A request refused by identity before any agent is known (no key, an unknown, revoked or expired key: a 401)
costs its sender nothing, so recording each as its own usage row and audit event would let a flood of bad keys
fill the database. Such requests are counted in memory per (minute, source address, reason, claimed agent) and
each count becomes *one* usage row (``requests`` = the count, ``source`` = the address, status ``refused``,
http 401) and *one* audit event (``auth_failed``, the count in its reason and in ``extra``) once its minute is
over (or when the router stops). The row and the event carry the request id of the first request counted; the
last one is in the event's ``extra``.

Memory is bounded: at most :data:`MAX_SOURCES_PER_MINUTE` distinct buckets per minute; beyond that, refusals
count in the bucket of source :data:`OTHER` for their reason (a handful of reasons exist).
"""

from __future__ import annotations

from dataclasses import dataclass

from router.context import RequestContext
from router.errors import AuthenticationFailed
from router.ledger.records import FinishedRequest, UsageRecord, utc_day

MINUTE = 60
MAX_SOURCES_PER_MINUTE = 1000
OTHER = "other"
UNKNOWN_SOURCE = "unknown"

BucketKey = tuple[int, str, str, str | None]
"""(minute number since the epoch, source address, reason, agent the key claimed)."""


def is_unauthenticated(ctx: RequestContext) -> bool:
    """Refused by identity before an agent was known (cheap: most requests have an agent)."""
    return ctx.agent is None and isinstance(ctx.error, AuthenticationFailed)


@dataclass(slots=True)
class RefusalCount:
    first_request_id: str
    last_request_id: str
    message: str
    policy_version: str | None
    requests: int = 1


class RefusalTally:
    """Counts on the event loop (a dict update per refusal); hands over finished minutes as records."""

    def __init__(self, max_sources: int = MAX_SOURCES_PER_MINUTE) -> None:
        self.max_sources = max(1, max_sources)
        self._counts: dict[BucketKey, RefusalCount] = {}
        self._buckets_in: dict[int, int] = {}
        """Distinct buckets per minute, :data:`OTHER` ones excepted."""

    def __len__(self) -> int:
        return len(self._counts)

    def count(self, ctx: RequestContext, ended: float) -> None:
        minute = int(ended // MINUTE)
        event = ctx.audit_events[0] if ctx.audit_events else {}
        reason = str(event.get("reason") or "authentication failed")
        agent = event.get("agent")
        key: BucketKey = (minute, ctx.client or UNKNOWN_SOURCE, reason, agent)
        counted = self._counts.get(key)
        if counted is None:
            if self._buckets_in.get(minute, 0) >= self.max_sources:
                key = (minute, OTHER, reason, None)
                counted = self._counts.get(key)
            else:
                self._buckets_in[minute] = self._buckets_in.get(minute, 0) + 1
        if counted is None:
            error = ctx.error
            self._counts[key] = RefusalCount(ctx.request_id, ctx.request_id, str(getattr(error, "message", error)),
                                             ctx.snapshot.version)
            return
        counted.requests += 1
        counted.last_request_id = ctx.request_id

    def take(self, now: float | None) -> list[FinishedRequest]:
        """The records of every minute over by ``now`` (of every minute when None), removed from the tally."""
        if not self._counts:
            return []
        current = None if now is None else int(now // MINUTE)
        due = [key for key in self._counts if current is None or key[0] < current]
        for minute in {key[0] for key in due}:
            self._buckets_in.pop(minute, None)
        return [_records(key, self._counts.pop(key)) for key in due]


def _records(key: BucketKey, counted: RefusalCount) -> FinishedRequest:
    minute, source, reason, agent = key
    ts = float(minute * MINUTE)
    row = UsageRecord(ts=ts, day=utc_day(ts), kind="request", request_id=counted.first_request_id, attempt=0,
                      agent=agent, role=None, rule=None, requested_model=None, deployment=None, provider=None,
                      model=None, status="refused", http_status=401, error=counted.message, latency_ms=0.0,
                      requests=counted.requests, source=source).row()
    event = {"ts": ts, "request_id": counted.first_request_id, "agent": agent, "role": None, "model": None,
             "tool": None, "action": "auth_failed", "stage": "request", "rule": None,
             "reason": f"{reason}: {counted.requests} request(s) from {source} in this minute",
             "policy_version": counted.policy_version, "requests": counted.requests, "source": source,
             "last_request_id": counted.last_request_id}
    return FinishedRequest([row], [event])
