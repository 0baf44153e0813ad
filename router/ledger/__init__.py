"""Usage records and audit events, written in batches off the request path.

    record(ctx, status)   once per finished request (from ``state.finish``): queues a reference to it with its
                          end time and latency; no I/O, no row building (the writer does that, per batch).
                          An unauthenticated refusal is only counted (one record per source and minute).
    close()               drains every queued record, for at most the drain timeout; what is left is spilled to
                          a local file and written at the next start (graceful shutdown loses nothing).

Modules: ``records`` (what a row holds), ``cost`` (USD from usage and prices), ``estimate`` (tokens when the
provider reported none), ``schema`` (versioned tables), ``writer`` (batching, retry), ``audit_chain`` (hash chain,
append, list), ``audit_key`` (HMAC), ``audit_verify``, ``audit_anchor`` (the head outside the database),
``audit_trail`` (the running router's alarm and anchor publisher), ``storable`` (values every backend accepts),
``refusals`` (unauthenticated refusals counted per minute), ``spill`` (records a shutdown could not write, kept
on disk until the next start), ``reports`` (finance reports), ``timerange`` and
``render`` (CLI/admin input and output).
"""

from __future__ import annotations

import time
from typing import Any

from router.context import RequestContext
from router.ledger.audit_chain import ChainAppender
from router.ledger.records import EndedRequest
from router.ledger.refusals import is_unauthenticated
from router.ledger.spill import spill_path
from router.ledger.writer import LedgerWriter
from router.mcp.records import ToolCallRecord
from router.settings import Settings
from router.store.database import Database


class Ledger:
    def __init__(self, database: Database, settings: Settings, audit: ChainAppender) -> None:
        self.writer = LedgerWriter(database, settings.ledger_flush_interval, settings.ledger_batch_size,
                                   settings.ledger_max_pending, settings.ledger_drain_timeout, audit,
                                   spill_path(settings.ledger_spill_file, settings.database_url))

    async def start(self) -> None:
        await self.writer.start()

    async def close(self) -> None:
        """Drain every pending record before returning (graceful shutdown loses nothing)."""
        await self.writer.close()

    def record(self, ctx: RequestContext, status: str) -> None:
        """Queue a finished request for its usage records (one per attempt) and audit events. Must not block.

        The context must not change after this call (``state.finish`` is the request's last step).
        """
        if is_unauthenticated(ctx):
            self.writer.count_refusal(ctx, time.time())
            return
        self.writer.put(EndedRequest(ctx, status, time.time(), (time.perf_counter() - ctx.started) * 1000.0))

    def record_tool_call(self, record: ToolCallRecord, audit_events: list[dict[str, Any]]) -> None:
        """Queue one MCP call's record and audit events (placeholder until the mcp_calls table lands)."""
        del record, audit_events

    def health(self) -> dict[str, str]:
        return {"ledger": self.writer.health()}
