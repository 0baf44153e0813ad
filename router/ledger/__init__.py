"""Usage records and audit events, written in batches off the request path.

    record(ctx, status)   once per finished request (from ``state.finish``): builds its usage rows and takes
                          its audit events, queues them; no I/O.
    close()               drains every queued record (graceful shutdown loses nothing).

Modules: ``records`` (what a row holds), ``cost`` (USD from usage and prices), ``estimate`` (tokens when the
provider reported none), ``schema`` (versioned tables), ``writer`` (batching, retry), ``audit_chain`` (hash chain,
verify, list), ``reports`` (finance reports), ``timerange`` and ``render`` (CLI/admin input and output).
"""

from __future__ import annotations

import logging

from router.context import RequestContext
from router.ledger.records import FinishedRequest, from_context
from router.ledger.writer import LedgerWriter
from router.settings import Settings
from router.store.database import Database

log = logging.getLogger("agent_router.ledger")


class Ledger:
    def __init__(self, database: Database, settings: Settings) -> None:
        self.writer = LedgerWriter(database, settings.ledger_flush_interval, settings.ledger_batch_size,
                                   settings.ledger_max_pending, settings.ledger_drain_timeout)

    async def start(self) -> None:
        await self.writer.start()

    async def close(self) -> None:
        """Drain every pending record before returning (graceful shutdown loses nothing)."""
        await self.writer.close()

    def record(self, ctx: RequestContext, status: str) -> None:
        """Queue the usage records (one per attempt) and audit events of a finished request. Must not block."""
        try:
            finished = from_context(ctx, status)
        except Exception:
            log.exception("ledger: could not build the usage records of request %s; its audit events are kept",
                          ctx.request_id)
            finished = FinishedRequest([], list(ctx.audit_events))
        self.writer.put(finished)

    def health(self) -> dict[str, str]:
        return {"ledger": self.writer.health()}
