"""The running router's guard over its audit chain: it seals appends with the audit key, raises the alarm when
the chain is found cut, and publishes the head outside the database.

Every ``audit_anchor_interval`` seconds (and at start and shutdown) it reads the head: when the head disagrees
with the table, a recorded break is not acknowledged, or the database went back behind the last anchor, it logs
an ERROR and ``/readyz`` reports ``audit: degraded: tampered: ...``; otherwise a new head is published as a log
line, a line of the anchor file and the Redis key (see ``audit_anchor``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from router.ledger.audit_anchor import (
    REDIS_KEY,
    Anchor,
    AnchorError,
    HeadState,
    append_to_file,
    contradiction,
    last_in_file,
    read_head,
)
from router.ledger.audit_chain import ChainAppender, ChainBreak
from router.ledger.audit_key import AuditKey
from router.settings import Settings
from router.store.counters import Counters, CountersUnavailable
from router.store.database import Database, DatabaseUnavailable

log = logging.getLogger("agent_router.audit")


class AuditTrail:
    def __init__(self, database: Database, counters: Counters, settings: Settings) -> None:
        self.database = database
        self.counters = counters
        secret = settings.audit_key.get_secret_value() if settings.audit_key is not None else None
        self.key = AuditKey(secret) if secret is not None else None
        self.appender = ChainAppender(self.key, self._break_recorded)
        self.interval = max(0.05, settings.audit_anchor_interval)
        self.anchor_file = settings.audit_anchor_file
        self.to_redis = settings.audit_anchor_redis and counters.backend == "redis"
        self.tampered: str | None = None
        self.key_mismatch: str | None = None
        """Set at start when the chain's last row was sealed with another key than this router's (or none)."""
        self._published: Anchor | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def keys(self) -> tuple[AuditKey, ...]:
        return (self.key,) if self.key is not None else ()

    async def start(self) -> None:
        """Check the chain against the last anchor on file, publish the head, then keep publishing."""
        self._published = await self._last_published()
        await self._check_key()
        await self.publish()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="audit-anchor")

    async def _last_published(self) -> Anchor | None:
        """The latest anchor this router (or another replica, or an earlier run) published."""
        found: list[Anchor] = []
        try:
            if self.anchor_file:
                in_file = await asyncio.to_thread(last_in_file, self.anchor_file)
                found += [in_file] if in_file is not None else []
            if self.to_redis:
                value = await self.counters.fetch(REDIS_KEY)
                found += [Anchor.from_json(value)] if value is not None else []
        except (AnchorError, CountersUnavailable) as exc:
            log.error("audit: cannot read the last anchor: %s", exc)
        return max(found, key=lambda anchor: anchor.seq, default=None)

    async def _check_key(self) -> None:
        """A router whose key differs from the one the chain was last sealed with would write rows that never
        verify (a plain row after keyed ones reads as a re-chain): say so loudly, and keep writing (no loss)."""
        try:
            state = await self.database.run(read_head, self.database)
        except Exception:
            return  # publish() reports why the head cannot be read
        sealed, mine = state.anchor.key_id, self.key.key_id if self.key is not None else None
        if sealed is not None and sealed != mine:
            has = f"key id {mine}" if mine else "no AGENT_ROUTER_AUDIT_KEY"
            self.key_mismatch = (f"the chain's last row is sealed with key id {sealed} but this router has {has}: "
                                 "the rows it writes will not verify")
            log.error("audit: %s", self.key_mismatch)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.publish()

    async def close(self) -> None:
        """Stop the timer and publish the final head (call after the ledger has drained)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.publish()

    async def publish(self) -> None:
        """Check the head; publish it when it moved and nothing is wrong. Never raises."""
        try:
            state = await self.database.run(self._checked_head)
        except DatabaseUnavailable:
            return  # the ledger reports the outage; the head is published once the database is back
        except Exception:
            log.exception("audit: could not read the chain head")
            return
        self._set_tampered(state.problem)
        if not state.publishable:
            return
        anchor, last = state.anchor, self._published
        if last is not None and (last.seq, last.hash) == (anchor.seq, anchor.hash):
            return
        log.info("audit anchor: seq=%d hash=%s key_id=%s", anchor.seq, anchor.hash, anchor.key_id or "-")
        if self.anchor_file:
            try:
                await asyncio.to_thread(append_to_file, self.anchor_file, anchor)
            except OSError as exc:
                log.error("audit: cannot write the anchor file %s: %s", self.anchor_file, exc.strerror or exc)
        if self.to_redis:
            try:
                await self.counters.put(REDIS_KEY, anchor.to_json())
            except CountersUnavailable as exc:
                log.warning("audit: cannot publish the anchor to Redis: %s", exc)
        self._published = anchor

    def _checked_head(self) -> HeadState:
        """On the database thread: the head, and whether it went back behind (or rewrote) the last anchor."""
        state = read_head(self.database)
        if self._published is not None and state.problem is None:
            against = contradiction(self.database, self._published)
            if against is not None:
                return HeadState(state.anchor, against, publishable=False)
        return state

    def _break_recorded(self, cut: ChainBreak) -> None:
        """Called by the ledger writer's append (database thread) when it has just chained a break event."""
        self.tampered = None  # a new break is always reported
        self._set_tampered(f"a chain break is recorded at seq {cut.seq}: {cut.reason}")

    def _set_tampered(self, problem: str | None) -> None:
        if problem is not None and self.tampered is None:
            log.error("audit: the audit chain was TAMPERED WITH or damaged: %s. Evidence is kept; run agent-router "
                      "audit verify", problem)
        elif problem is None and self.tampered is not None:
            log.warning("audit: the audit chain's head is consistent again (break acknowledged)")
        self.tampered = problem

    def health(self) -> dict[str, str]:
        if self.tampered is not None:
            return {"audit": f"degraded: tampered: {self.tampered}"}
        if self.key_mismatch is not None:
            return {"audit": f"degraded: key: {self.key_mismatch}"}
        return {"audit": "ok"}
