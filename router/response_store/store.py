"""The response store: keeps every Responses API answer the router served, for its agent, for a retention period.

``keep`` runs on the hot path: it encodes the response once, puts it in the in-memory map of recent responses
and queues it; a write-behind task writes the queue in batches every ``ledger_flush_interval`` seconds (sooner
once :data:`BATCH_ROWS` wait) and purges expired rows, a bounded pass at a time. While the database fails the
rows stay queued (bounded; beyond that the oldest are dropped, loudly). :meth:`close` writes everything queued
before returning, for at most ``ledger_drain_timeout`` seconds.

A lookup answers only the agent that created the response: another agent's id is as unknown as a made-up one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict
from typing import Any

from router.errors import ResponseStoreUnavailable
from router.ledger.storable import storable
from router.response_store import writes
from router.response_store.reasoning_origin import ReasoningOrigins
from router.response_store.recent import RecentResponses
from router.response_store.rows import ResponseRow, StoredResponse, encode, plain_id
from router.response_store.schema import migrate
from router.settings import Settings
from router.store.database import Database

log = logging.getLogger("agent_router.responses")

BATCH_ROWS = 64
BATCH_CHARS = 16 * 1024 * 1024
"""A batch holds at most this many rows and characters of JSON (stored responses can be megabytes each)."""
MAX_PENDING_ROWS = 20_000
MAX_PENDING_CHARS = 512 * 1024 * 1024
"""Queued rows kept while the database fails; beyond either bound the oldest are dropped."""
PURGE_INTERVAL = 60.0
PURGE_LIMIT = 500
"""Expired rows deleted per pass; a full pass runs the next one at the next flush instead of a minute later."""
MAX_BACKOFF = 5.0
SETTLE_MARGIN = 0.1
"""Seconds :meth:`ResponseStore.get_settled` waits beyond one flush interval (a batch's own write time)."""
TOMBSTONES = 10_000
"""Deleted ids remembered, so a batch queued (or retried) after the delete never writes the response back."""


class ResponseStore:
    def __init__(self, database: Database, settings: Settings, origins: ReasoningOrigins | None = None) -> None:
        self.database = database
        self.enabled = settings.responses_store
        self.retention = settings.responses_retention_hours * 3600.0
        self.max_chars = settings.responses_max_bytes
        self.flush_interval = settings.ledger_flush_interval
        self.drain_timeout = settings.ledger_drain_timeout
        self.recent = RecentResponses(settings.responses_memory_items, settings.responses_memory_bytes)
        self.origins = origins if origins is not None else ReasoningOrigins()
        self.not_stored: Counter[str] = Counter()
        """Responses refused by :meth:`keep`, per reason (each reason logged once, at info)."""
        self.unwritable = 0
        """Rows the database refused even alone (each logged at ERROR)."""
        self.dropped = 0
        self.problem: str | None = None
        self._pending: dict[str, ResponseRow] = {}
        self._pending_chars = 0
        self._deleted: OrderedDict[str, None] = OrderedDict()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._migrated = False
        self._next_purge = 0.0
        self._last_drop_log = 0.0

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- hot path ------------------------------------------------------------------------------------
    def keep(self, agent: str | None, response: dict[str, Any], input_items: list[Any], deployment: str,
             provider: str, previous_id: str | None = None) -> None:
        """Queue ``response`` (served to ``agent`` by ``deployment``), with the input of its turn and the
        response it continued (``previous_id``: the turns before it are stored there, not again here).
        No I/O; call from the event loop once the answer is complete."""
        if not self.enabled:
            return
        response_id = response.get("id")
        if not plain_id(response_id):
            self._not_stored("its id is not a short printable string")
            return
        assert isinstance(response_id, str)
        owner = None if agent is None else storable(agent)
        known = self._pending.get(response_id) or self.recent.get(response_id)
        if known is not None and known.agent != owner:
            self._not_stored("its id is already stored for another agent")
            return
        response_json, input_json = encode(response), encode(input_items)
        if len(response_json) + len(input_json) > self.max_chars:
            self._not_stored(f"its JSON with its input is larger than responses_max_bytes ({self.max_chars})")
            return
        now = time.time()
        row = ResponseRow(response_id, owner, response_json, input_json, storable(deployment), storable(provider),
                          now, now + self.retention, previous_id if plain_id(previous_id) else None)
        self._deleted.pop(response_id, None)
        self._queue(row)
        self.recent.put(row)
        self.origins.remember(response.get("output") or [], deployment)
        if len(self._pending) >= BATCH_ROWS and self._wake is not None:
            self._wake.set()

    def _queue(self, row: ResponseRow) -> None:
        earlier = self._pending.pop(row.id, None)
        if earlier is not None:
            self._pending_chars -= earlier.size
        self._pending[row.id] = row
        self._pending_chars += row.size
        while len(self._pending) > MAX_PENDING_ROWS or self._pending_chars > MAX_PENDING_CHARS:
            lost = self._pending.pop(next(iter(self._pending)))
            self._pending_chars -= lost.size
            self.dropped += 1
            now = time.monotonic()
            if now - self._last_drop_log > 5:
                self._last_drop_log = now
                log.error("responses: %d stored responses waiting for the database: DROPPING the oldest (%s; %d "
                          "dropped so far). Database problem: %s", len(self._pending), lost.id, self.dropped,
                          self.problem)

    def _not_stored(self, reason: str) -> None:
        self.not_stored[reason] += 1
        if self.not_stored[reason] == 1:
            log.info("responses: a response is not stored because %s (logged once; counted in not_stored)",
                     reason)

    # -- lookups -------------------------------------------------------------------------------------
    async def get(self, response_id: str, agent: str | None) -> StoredResponse | None:
        """The response ``agent`` was served under ``response_id``; None when unknown, expired, deleted or
        another agent's. Raise ResponseStoreUnavailable when the database cannot say."""
        row = await self._row(response_id)
        if row is None or row.agent != (None if agent is None else storable(agent)) \
                or row.expires_at <= time.time():
            return None
        try:
            return row.decoded()
        except ValueError:
            log.error("responses: stored response %s is not readable JSON; answered as unknown", response_id)
            return None

    async def get_settled(self, response_id: str, agent: str | None) -> StoredResponse | None:
        """:meth:`get`, but on a shared database (PostgreSQL: a fleet) an id not found is looked up once more
        after a flush interval: another replica may have served it a moment ago, its batch not landed yet."""
        found = await self.get(response_id, agent)
        if found is not None or self.database.dialect != "postgres" or not self.enabled \
                or not plain_id(response_id) or response_id in self._deleted:
            return found
        await asyncio.sleep(self.flush_interval + SETTLE_MARGIN)
        return await self.get(response_id, agent)

    async def _row(self, response_id: str) -> ResponseRow | None:
        if not self.enabled or not plain_id(response_id) or response_id in self._deleted:
            return None
        row = self._pending.get(response_id) or self.recent.get(response_id)
        if row is not None:
            return row
        try:
            await self._ensure_schema()
            row = await self.database.run(writes.fetch_row, self.database, response_id)
        except Exception as exc:
            raise ResponseStoreUnavailable(f"stored responses cannot be read now ({type(exc).__name__}); "
                                           "try again shortly") from exc
        return None if response_id in self._deleted else row

    async def delete(self, response_id: str, agent: str | None) -> bool:
        """Delete ``agent``'s response; False when it has none under that id (see :meth:`get`)."""
        if await self.get(response_id, agent) is None:
            return False
        self._deleted[response_id] = None
        while len(self._deleted) > TOMBSTONES:
            self._deleted.popitem(last=False)
        row = self._pending.pop(response_id, None)
        if row is not None:
            self._pending_chars -= row.size
        self.recent.discard(response_id)
        try:
            await self.database.run(writes.delete_row, self.database, response_id)
        except Exception as exc:
            raise ResponseStoreUnavailable(f"the stored response cannot be deleted now ({type(exc).__name__}); "
                                           "try again shortly") from exc
        return True

    # -- write-behind --------------------------------------------------------------------------------
    async def start(self) -> None:
        if not self.enabled:
            return
        self._wake = asyncio.Event()
        try:
            await self._ensure_schema()
        except Exception as exc:
            self._failed(exc)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="response-store-writer")

    async def _ensure_schema(self) -> None:
        if not self._migrated:
            await self.database.run(migrate, self.database)
            self._migrated = True

    async def _run(self) -> None:
        assert self._wake is not None
        delay = self.flush_interval
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except TimeoutError:
                pass
            self._wake.clear()
            if self._closing:
                break
            written = await self.flush()
            if written and time.monotonic() >= self._next_purge:
                await self._purge_pass()
            delay = self.flush_interval if written else min(max(delay * 2, 0.5), MAX_BACKOFF)

    async def flush(self) -> bool:
        """Write everything queued; False (rows kept queued) when the database failed."""
        while self._pending:
            batch = self._take_batch()
            try:
                await self._ensure_schema()
                refused = await self.database.run(writes.write_rows, self.database, batch)
            except Exception as exc:
                self._requeue(batch)
                self._failed(exc)
                return False
            for row in refused:
                self.unwritable += 1
                log.error("responses: stored response %s CANNOT BE STORED: the database refuses its row; %d "
                          "responses not stored so far", row.id, self.unwritable)
        if self.problem is not None:
            log.warning("responses: database reachable again; queued responses written")
            self.problem = None
        return True

    def _take_batch(self) -> list[ResponseRow]:
        batch: list[ResponseRow] = []
        chars = 0
        while self._pending and len(batch) < BATCH_ROWS:
            row = next(iter(self._pending.values()))
            if batch and chars + row.size > BATCH_CHARS:
                break
            del self._pending[row.id]
            self._pending_chars -= row.size
            batch.append(row)
            chars += row.size
        return batch

    def _requeue(self, batch: list[ResponseRow]) -> None:
        """Put a failed batch back in front (minus what was deleted or kept again meanwhile)."""
        back = {row.id: row for row in batch if row.id not in self._deleted and row.id not in self._pending}
        self._pending_chars += sum(row.size for row in back.values())
        self._pending = {**back, **self._pending}

    async def _purge_pass(self) -> None:
        try:
            await self.purge_expired()
        except Exception as exc:
            log.warning("responses: purging expired responses failed (%s: %s); retried later",
                        type(exc).__name__, exc)
            self._next_purge = time.monotonic() + PURGE_INTERVAL

    async def purge_expired(self) -> int:
        """One bounded pass deleting expired rows; how many went. A full pass makes the next one due now."""
        await self._ensure_schema()
        purged = await self.database.run(writes.purge_expired, self.database, time.time(), PURGE_LIMIT)
        self._next_purge = time.monotonic() + (0.0 if purged >= PURGE_LIMIT else PURGE_INTERVAL)
        return purged

    def _failed(self, exc: BaseException) -> None:
        first = self.problem is None
        self.problem = f"{type(exc).__name__}: {exc}"
        if first:
            log.error("responses: cannot write to %s (%s); %d responses kept in memory, retrying",
                      self.database.describe(), self.problem, len(self._pending))

    async def close(self) -> None:
        """Stop the timer and write every queued row, for at most ``drain_timeout`` seconds."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        try:
            async with asyncio.timeout(self.drain_timeout):
                if self._task is not None:
                    await self._task
                while not await self.flush():
                    await asyncio.sleep(0.5)
        except TimeoutError:
            log.error("responses: shutting down with the database unreachable (%s): %d stored responses are LOST",
                      self.problem, len(self._pending))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await self.origins.close()

    def health(self) -> dict[str, str]:
        if not self.enabled:
            return {}
        if self.problem is not None:
            return {"responses": f"degraded: {self.problem} ({len(self._pending)} responses waiting)"}
        if self.dropped or self.unwritable:
            return {"responses": f"degraded: {self.dropped} responses dropped, {self.unwritable} refused by the "
                                 "database (see the ERROR log)"}
        return {"responses": f"ok ({len(self._pending)} responses waiting)"}
