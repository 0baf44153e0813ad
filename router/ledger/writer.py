"""The ledger's writer: finished requests wait in memory and are written in batches, off the request path.

The event loop only queues a reference to each ended request (:class:`EndedRequest`); its rows are built, its
tokens estimated when needed, and its audit events hashed on the database thread, a whole batch at a time. A
background task flushes every ``flush_interval`` seconds, or sooner once ``batch_size`` requests wait, in one
transaction per batch (usage rows, MCP tool-call rows and chained audit events together, in bulk: see
``bulk``). While the database is unreachable the built records stay queued (at most ``max_pending`` requests;
beyond that the oldest are dropped, loudly) and the writer retries with backoff. :meth:`close` drains the queue
before returning, for at most ``drain_timeout`` seconds: what the database has not taken by then is appended to
the spill file and written at the next start (see ``spill``), so a graceful shutdown loses nothing even while
the database is unreachable.

No record is dropped because of what it holds: every text is made storable first (``storable``). A batch the
database still refuses, for any reason but being unavailable, is bisected until the refused requests stand
alone; all the others are written, and each refused one is tried once more with every value in its strict form.
One that fails even so (while the database accepts a plain record) is logged at ERROR with its request id and
counted in ``unwritable`` (shown by ``/readyz``). Unauthenticated refusals are not queued one by one but counted
per minute (``refusals``) and queued as one record per count when their minute is over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from pathlib import Path

from router.context import RequestContext
from router.ledger import audit_chain, spill, tool_calls
from router.ledger.bulk import insert_rows
from router.ledger.records import (
    COLUMNS,
    TEXT_POSITIONS,
    EndedRequest,
    FinishedRequest,
    UsageRecord,
    flagged_estimated,
)
from router.ledger.refusals import RefusalTally
from router.ledger.schema import migrate
from router.ledger.storable import row_sanitiser, strict
from router.mcp.records import ToolCallRecord
from router.store.database import Database, DatabaseUnavailable

log = logging.getLogger("agent_router.ledger")

MAX_BACKOFF = 5.0
YIELD_EVERY = 32
"""Requests (or audit events) built between voluntary releases of the interpreter lock. Building a batch is
Python work that holds the lock; the event loop would otherwise wait up to the switch interval (5 ms) each time
it asks for it. A release every 32 requests (well under a millisecond of work) trimmed the benchmark's p99 at
concurrency 1 a little (about 3.9 -> 3.4 ms with writer and loop pinned to one CPU)."""
SETTLE_AFTER_DRAIN = 3.0
"""Seconds the drain waits, once its timeout passed and the connection was interrupted, for the write in flight
to end, so that what it committed is not spilled too (replay would skip it anyway)."""
STUCK_AFTER = 5.0
"""Seconds without a successful write, with records waiting, after which ``/readyz`` calls the ledger stuck
(at least 10 flush intervals)."""


Pending = EndedRequest | FinishedRequest


storable_row = row_sanitiser(TEXT_POSITIONS)


def write_batch(database: Database, batch: list[FinishedRequest], strictly: bool = False,
                audit: audit_chain.ChainAppender = audit_chain.PLAIN, replayed: bool = False) -> None:
    """One transaction: every usage row and tool-call row of the batch, then its audit events appended to the
    chain.

    Every text is made storable (``strictly``: every value in its strict form) as it is written, so a retry
    starts again from the records as they were built. ``replayed`` (records from the spill file): requests
    already stored are skipped, checked in the same transaction."""
    with database.transaction() as cursor:
        if replayed:
            batch = spill.not_stored(database, cursor, batch)
        if strictly:
            rows = [tuple(map(strict, row)) for item in batch for row in item.rows]
            calls = [tuple(map(strict, row)) for item in batch for row in item.tool_calls]
        else:
            rows = [storable_row(row) for item in batch for row in item.rows]
            calls = [tool_calls.storable_row(row) for item in batch for row in item.tool_calls]
        events = [event for item in batch for event in item.audit_events]
        if rows:
            insert_rows(database, cursor, "usage_records", COLUMNS, rows)
        if calls:
            insert_rows(database, cursor, "mcp_calls", tool_calls.COLUMNS, calls)
        audit.append(database, cursor, events, strictly)


class _RolledBack(Exception):
    """Ends the probe transaction of :func:`accepts_plain_records` (nothing it wrote is kept)."""


_PROBE = FinishedRequest(
    [UsageRecord(ts=1.0, day="1970-01-01", kind="request", request_id="ledger-probe", attempt=0, agent=None,
                 role=None, rule=None, requested_model=None, deployment=None, provider=None, model=None,
                 status="refused", http_status=None, error=None, latency_ms=0.0).row()],
    [{"ts": 1.0, "request_id": "ledger-probe", "action": "probe"}],
    tool_calls=[tool_calls.row_of(ToolCallRecord(
        ts=1.0, request_id="ledger-probe", session=None, agent=None, role=None, server="probe", method="tools/call",
        tool="probe", arguments_sha256=None, arguments=None, arguments_bytes=0, decision="denied", rule=None,
        reason=None, outcome="refused", error=None, latency_ms=0.0, result_bytes=0, credential=None,
        policy_version=None))])


def accepts_plain_records(database: Database) -> bool:
    """Whether the database takes a plain usage row, tool-call row and audit event (in a transaction rolled
    back at once).

    Tells a record the database refuses for what it holds from a database that refuses every record (a
    changed schema, a full disk): those are kept queued, not counted as unwritable."""
    try:
        with database.transaction() as cursor:
            insert_rows(database, cursor, "usage_records", COLUMNS, _PROBE.rows)
            insert_rows(database, cursor, "mcp_calls", tool_calls.COLUMNS, _PROBE.tool_calls)
            audit_chain.append(database, cursor, _PROBE.audit_events)
            raise _RolledBack
    except _RolledBack:
        return True
    except DatabaseUnavailable:
        raise
    except Exception:
        return False


class DatabaseRefusesRecords(DatabaseUnavailable):
    """The database refuses even a plain record: nothing is wrong with the queued ones; they wait."""


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
                 drain_timeout: float, audit: audit_chain.ChainAppender = audit_chain.PLAIN,
                 spill_file: Path | None = None) -> None:
        self.database = database
        self.flush_interval = flush_interval
        self.batch_size = max(1, batch_size)
        self.max_pending = max(1, max_pending)
        self.drain_timeout = drain_timeout
        self.audit = audit
        self.dropped = 0
        self.unwritable = 0
        """Requests whose records the database refused even in their strict form (each logged at ERROR)."""
        self.refusals = RefusalTally()
        self.problem: str | None = None
        self._queue: deque[Pending] = deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._migrated = False
        self._last_drop_log = 0.0
        self.spill_file = spill_file
        self.spilled = 0
        """Requests written to the spill file by this process's shutdown."""
        self._replay: list[FinishedRequest] = []
        """Records read back from the spill file, written before the queue (each batch checked against what is
        stored: see ``spill``)."""
        self._claims: list[Path] = []
        self._inflight: list[Pending] | None = None
        """The batch being written now: on the database thread's side it is emptied once committed, so a drain
        that gives up on the write knows what is left to spill."""
        self.last_write: float | None = None
        """When (monotonic) a batch was last committed; None before the first."""
        self._started_at = time.monotonic()
        self.ping_problem: str | None = None
        """Set by the readiness probe when the database did not answer its ping (see RouterState)."""

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
        self._started_at = time.monotonic()
        await self._claim_spill()
        try:
            await self._ensure_schema()
        except Exception as exc:
            self._failed(exc)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="ledger-writer")

    async def _claim_spill(self) -> None:
        """Read back what an earlier shutdown spilled; it is written (once) before anything else."""
        if self.spill_file is None:
            return
        try:
            self._claims = await asyncio.to_thread(spill.claim, self.spill_file)
            self._replay = await asyncio.to_thread(spill.load, self._claims)
        except OSError as exc:
            log.error("ledger: cannot read the spill file %s (%s); it is left as it is", self.spill_file, exc)
            self._claims, self._replay = [], []
            return
        if self._claims:
            log.warning("ledger: %d requests' records spilled by an earlier shutdown (%s) are written now",
                        len(self._replay), ", ".join(map(str, self._claims)))

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

    def count_refusal(self, ctx: RequestContext, ended: float) -> None:
        """Count an unauthenticated refusal (see ``refusals``). No I/O; call from the event loop."""
        self.refusals.count(ctx, ended)

    async def flush(self) -> bool:
        """Write everything queued (and the refusal counts of minutes over); False (records kept) when the
        database failed."""
        due = self.refusals.take(None if self._closing else time.time())
        if due:
            self._queue.extend(due)
            self._trim()
        if (self._replay or self._claims) and not await self._write_replayed():
            return False
        while self._queue:
            count = min(self.batch_size, len(self._queue))
            batch = [self._queue.popleft() for _ in range(count)]
            self._inflight = batch
            try:
                await self._write(batch)
            except Exception as exc:
                self._inflight = None
                self._queue.extendleft(reversed(batch))
                self._trim()
                self._failed(exc)
                await self._compact()
                return False
            self._inflight = None
        if self.problem is not None:
            log.warning("ledger: database reachable again; queued records written")
            self.problem = None
        return True

    async def _write_replayed(self) -> bool:
        """Write the records read back from the spill file, a batch at a time; False when the database failed."""
        while self._replay:
            batch = self._replay[:self.batch_size]
            try:
                await self._ensure_schema()
                await self.database.run(write_batch, self.database, batch, False, self.audit, True)
            except DatabaseUnavailable as exc:
                self._failed(exc)
                return False
            except Exception:
                # Refused for what it holds: queue what is not stored yet, where refused records are isolated.
                try:
                    kept = await self.database.run(self._unstored, batch)
                except Exception as exc:
                    self._failed(exc)
                    return False
                self._queue.extendleft(reversed(kept))
            del self._replay[:len(batch)]
            self.last_write = time.monotonic()
        if self._claims:
            await asyncio.to_thread(spill.done, self._claims)
            log.info("ledger: the spilled records are written (%s kept as .replayed)", self.spill_file)
            self._claims = []
        return True

    def _unstored(self, batch: list[FinishedRequest]) -> list[FinishedRequest]:
        with self.database.transaction() as cursor:
            return spill.not_stored(self.database, cursor, batch)

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
        write_batch(self.database, built, False, self.audit)
        self.last_write = time.monotonic()
        batch.clear()  # committed: a drain that gave up waiting for this write has nothing of it to spill

    async def _write(self, batch: list[Pending]) -> None:
        """Write ``batch``; on failure (raised) ``batch`` holds the requests still to write, in order."""
        try:
            await self.database.run(self._prepare_and_write, batch)
            return
        except DatabaseUnavailable:
            raise
        except Exception:
            if not self._migrated or any(isinstance(item, EndedRequest) for item in batch):
                raise
        # The database refuses something in the batch itself: isolate it, write everything else.
        settled: set[int] = set()
        try:
            await self._bisect(batch, settled)  # type: ignore[arg-type]
        finally:
            batch[:] = [item for item in batch if id(item) not in settled]

    async def _bisect(self, refused: list[FinishedRequest], settled: set[int]) -> None:
        """Write the halves of a refused part separately, bisecting each refused half again; a request refused
        on its own gets one strict attempt. Each attempt is a transaction of its own, its audit events chained
        from the head as committed (a rolled-back attempt's hashes are never reused). ``settled`` collects the
        requests done with: written, or counted as unwritable."""
        if len(refused) == 1:
            await self._write_strictly(refused[0])
            settled.add(id(refused[0]))
            return
        middle = len(refused) // 2
        for half in (refused[:middle], refused[middle:]):
            try:
                await self.database.run(write_batch, self.database, half, False, self.audit)
            except DatabaseUnavailable:
                raise
            except Exception:
                await self._bisect(half, settled)
            else:
                settled.update(map(id, half))
                self.last_write = time.monotonic()

    async def _write_strictly(self, item: FinishedRequest) -> None:
        try:
            await self.database.run(write_batch, self.database, [item], True, self.audit)
        except DatabaseUnavailable:
            raise
        except Exception as exc:
            if not await self.database.run(accepts_plain_records, self.database):
                raise DatabaseRefusesRecords(f"the database refuses even a plain record ({_brief(exc)})") from exc
            self.unwritable += 1
            log.error("ledger: the records of request %s CANNOT BE STORED: the database refuses them even with "
                      "every value escaped (%s); %d requests not stored so far", item.request_id, _brief(exc),
                      self.unwritable)
            return
        log.warning("ledger: request %s stored with every value strictly escaped: the database refused its "
                    "records as they were", item.request_id)

    def _failed(self, exc: BaseException) -> None:
        first = self.problem is None
        self.problem = f"{type(exc).__name__}: {exc}"
        if first:
            log.error("ledger: cannot write to %s (%s); %d requests kept in memory, retrying",
                      self.database.describe(), self.problem, len(self._queue))

    async def close(self) -> None:
        """Stop the timer and write every queued record; after ``drain_timeout`` seconds stop waiting for the
        database and spill what is left (see ``spill``)."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        try:
            async with asyncio.timeout(self.drain_timeout):
                if self._task is not None:
                    await self._task
                while not await self.flush():
                    await asyncio.sleep(0.5)
            return
        except TimeoutError:
            pass
        self.database.interrupt()
        try:
            async with asyncio.timeout(SETTLE_AFTER_DRAIN):
                await self.database.run(_nothing)
        except TimeoutError:
            log.warning("ledger: the database thread is still busy after the drain timeout; its batch is spilled "
                        "too (replay skips what it commits)")
        await self._spill_rest()

    async def _spill_rest(self) -> None:
        left: list[Pending] = [*(self._inflight or ()), *self._replay, *self._queue, *self.refusals.take(None)]
        self._inflight, self._replay = None, []
        self._queue.clear()
        if not left:
            return
        if self.spill_file is None:
            log.error("ledger: shutting down with the database unreachable (%s): %d requests' usage records and "
                      "audit events are LOST (no spill file)", self.problem, len(left))
            return
        try:
            built = await asyncio.to_thread(prepare, left)
            await asyncio.to_thread(spill.spill, self.spill_file, built)
        except Exception as exc:
            log.error("ledger: shutting down with the database unreachable (%s) and the spill file %s not "
                      "writable (%s): %d requests' usage records and audit events are LOST", self.problem,
                      self.spill_file, _brief(exc), len(left))
            return
        self.spilled += len(built)
        if self._claims:
            await asyncio.to_thread(spill.done, self._claims)
            self._claims = []
        log.warning("ledger: the database did not take the last records within the drain timeout (%gs; %s): %d "
                    "requests' records spilled to %s, written at the next start", self.drain_timeout, self.problem,
                    len(built), self.spill_file)

    def health(self) -> str:
        """``ok``; ``degraded`` while records wait for a database that fails, does not answer its ping or has
        written nothing for ``STUCK_AFTER`` seconds, or once records were lost. Never ``down``: the router
        keeps serving while records wait (up to ``max_pending``), and every replica on the same database would
        be taken out at once."""
        now = time.monotonic()
        waiting = len(self._queue) + len(self._replay) + len(self._inflight or ())
        since = now - (self.last_write if self.last_write is not None else self._started_at)
        last = "none yet" if self.last_write is None else f"{now - self.last_write:.1f}s ago"
        backlog = f"{waiting} requests waiting, last write {last}"
        unwritable = f"; {self.unwritable} requests' records could not be stored" if self.unwritable else ""
        dropped = f", {self.dropped} dropped" if self.dropped else ""
        if self.problem is not None or self.ping_problem is not None:
            return f"degraded: {self.problem or self.ping_problem} ({backlog}{dropped}){unwritable}"
        if waiting and since > max(STUCK_AFTER, 10 * self.flush_interval):
            return f"degraded: nothing written for {since:.1f}s ({backlog}{dropped}){unwritable}"
        if self.dropped:
            return f"degraded: {self.dropped} requests' records were dropped{unwritable} ({backlog})"
        if self.unwritable:
            return f"degraded: {self.unwritable} requests' records could not be stored (see the ERROR log)"
        return f"ok ({backlog})"


def _nothing() -> None:
    """Run on the database thread to learn when the call before it has ended."""


def _brief(exc: BaseException) -> str:
    """An error for the log, cut short: database messages may quote the refused value."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 200 else text[:200] + "..."
