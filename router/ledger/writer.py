"""The ledger's writer: finished requests wait in memory and are written in batches, off the request path.

The event loop only queues a reference to each ended request (:class:`EndedRequest`); its rows are built, its
tokens estimated when needed, and its audit events hashed on the database thread, a whole batch at a time. A
background task flushes every ``flush_interval`` seconds, or sooner once ``batch_size`` requests wait, in one
transaction per batch (usage rows and chained audit events together, in bulk: see ``bulk``). While the
database is unreachable the built records stay queued (at most ``max_pending`` requests; beyond that the oldest
are dropped, loudly) and the writer retries with backoff. :meth:`close` drains the queue before returning.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from router.ledger import audit_chain
from router.ledger.bulk import insert_rows
from router.ledger.records import COLUMNS, EndedRequest, FinishedRequest, flagged_estimated
from router.ledger.schema import migrate
from router.store.database import Database, DatabaseUnavailable

log = logging.getLogger("agent_router.ledger")

MAX_BACKOFF = 5.0
YIELD_EVERY = 32
"""Requests (or audit events) built between voluntary releases of the interpreter lock. Building a batch is
Python work that holds the lock; the event loop would otherwise wait up to the switch interval (5 ms) each time
it asks for it. A release every 32 requests (well under a millisecond of work) trimmed the benchmark's p99 at
concurrency 1 a little (about 3.9 -> 3.4 ms with writer and loop pinned to one CPU)."""


Pending = EndedRequest | FinishedRequest


def write_batch(database: Database, batch: list[FinishedRequest],
                audit: audit_chain.ChainAppender = audit_chain.PLAIN) -> None:
    """One transaction: every usage row of the batch, then its audit events appended to the chain."""
    rows = [row for item in batch for row in item.rows]
    events = [event for item in batch for event in item.audit_events]
    with database.transaction() as cursor:
        if rows:
            insert_rows(database, cursor, "usage_records", COLUMNS, rows)
        audit.append(database, cursor, events)


def prepare(batch: list[Pending]) -> list[FinishedRequest]:
    """Build the records of every ended request in ``batch``, in place, and estimate missing tokens.

    In place, so that a batch the database refuses goes back to the queue as built records (small) rather than
    whole request contexts.
    """
    for i, item in enumerate(batch):
        if isinstance(item, EndedRequest):
            batch[i] = item = item.finished()
        if item.estimate is not None:
            resolve_estimate(item)
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            time.sleep(0)  # let the event loop take the interpreter lock (see YIELD_EVERY)
    return batch  # type: ignore[return-value]


def resolve_estimate(item: FinishedRequest) -> None:
    try:
        item.resolve_estimate()
    except Exception:
        log.exception("ledger: token estimate failed for request %s; its tokens stay 0 (flagged estimated)",
                      item.request_id)
        item.rows[:] = [flagged_estimated(row) for row in item.rows]


class LedgerWriter:
    def __init__(self, database: Database, flush_interval: float, batch_size: int, max_pending: int,
                 drain_timeout: float, audit: audit_chain.ChainAppender = audit_chain.PLAIN) -> None:
        self.database = database
        self.flush_interval = flush_interval
        self.batch_size = max(1, batch_size)
        self.max_pending = max(1, max_pending)
        self.drain_timeout = drain_timeout
        self.audit = audit
        self.dropped = 0
        self.problem: str | None = None
        self._queue: deque[Pending] = deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._migrated = False
        self._last_drop_log = 0.0

    @property
    def pending(self) -> int:
        return len(self._queue)

    def put(self, item: Pending) -> None:
        """Queue one finished request. No I/O, no row building; call from the event loop."""
        queue = self._queue
        queue.append(item)
        if len(queue) > self.max_pending:
            self._trim()
        if len(queue) >= self.batch_size and self._wake is not None:
            self._wake.set()

    def _trim(self) -> None:
        while len(self._queue) > self.max_pending:
            lost = self._queue.popleft()
            self.dropped += 1
            now = time.monotonic()
            if now - self._last_drop_log > 5:
                self._last_drop_log = now
                log.error("ledger: %d requests waiting for the database (limit %d): DROPPING the oldest usage "
                          "records and audit events (request %s; %d dropped so far). Database problem: %s",
                          len(self._queue), self.max_pending, lost.request_id, self.dropped,
                          self.problem)

    async def start(self) -> None:
        self._wake = asyncio.Event()
        try:
            await self._ensure_schema()
        except Exception as exc:
            self._failed(exc)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="ledger-writer")

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
            delay = self.flush_interval if await self.flush() else min(max(delay * 2, 0.5), MAX_BACKOFF)

    async def flush(self) -> bool:
        """Write everything queued; False (records kept) when the database failed."""
        while self._queue:
            count = min(self.batch_size, len(self._queue))
            batch = [self._queue.popleft() for _ in range(count)]
            try:
                await self._write(batch)
            except Exception as exc:
                self._queue.extendleft(reversed(batch))
                self._trim()
                self._failed(exc)
                await self._compact()
                return False
        if self.problem is not None:
            log.warning("ledger: database reachable again; queued records written")
            self.problem = None
        return True

    async def _compact(self) -> None:
        """While the database is down, turn every queued request context into its (much smaller) records.

        In a worker thread of its own (the database thread may be stuck connecting). Requests that end meanwhile
        queue behind; the built ones go back in front, in order, and the queue bound applies again.
        """
        if not self._queue or not isinstance(self._queue[-1], EndedRequest):
            return  # contexts only ever join at the right: none is left
        items = list(self._queue)
        self._queue.clear()
        try:
            await asyncio.to_thread(prepare, items)
        except Exception:
            log.exception("ledger: could not build the records of the queued requests; they stay queued as they are")
        finally:
            self._queue.extendleft(reversed(items))
            self._trim()

    def _prepare_and_write(self, batch: list[Pending]) -> None:
        """On the database thread: build the batch's records (kept even if the write fails), then write them."""
        built = prepare(batch)
        if not self._migrated:
            migrate(self.database)
            self._migrated = True
        write_batch(self.database, built, self.audit)

    async def _write(self, batch: list[Pending]) -> None:
        try:
            await self.database.run(self._prepare_and_write, batch)
        except DatabaseUnavailable:
            raise
        except Exception:
            if len(batch) == 1 or not self._migrated or any(isinstance(item, EndedRequest) for item in batch):
                raise
            # Something in the batch itself is refused: write the requests one by one, keep the good ones.
            for item in batch:
                assert isinstance(item, FinishedRequest)
                try:
                    await self.database.run(write_batch, self.database, [item], self.audit)
                except DatabaseUnavailable:
                    raise
                except Exception:
                    self.dropped += 1
                    log.exception("ledger: DROPPING the records of request %s: the database refuses them",
                                  item.request_id)

    def _failed(self, exc: BaseException) -> None:
        first = self.problem is None
        self.problem = f"{type(exc).__name__}: {exc}"
        if first:
            log.error("ledger: cannot write to %s (%s); %d requests kept in memory, retrying",
                      self.database.describe(), self.problem, len(self._queue))

    async def close(self) -> None:
        """Stop the timer and write every queued record (giving up after ``drain_timeout`` of failures)."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            await self._task
        deadline = time.monotonic() + self.drain_timeout
        while not await self.flush():
            if time.monotonic() > deadline:
                log.error("ledger: shutting down with the database unreachable: %d requests' usage records and "
                          "audit events are LOST (%s)", len(self._queue), self.problem)
                return
            await asyncio.sleep(0.5)

    def health(self) -> str:
        if self.problem is not None:
            return f"degraded: {self.problem} ({len(self._queue)} requests waiting, {self.dropped} dropped)"
        if self.dropped:
            return f"degraded: {self.dropped} requests' records were dropped"
        return "ok"
