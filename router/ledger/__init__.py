"""Usage records and audit events, written in batches off the request path.

    record(ctx, status)   once per finished request (from ``state.finish``): queues a reference to it with its
                          end time and latency; no I/O, no row building (the writer does that, per batch).
                          An unauthenticated refusal is only counted (one record per source and minute).
    record_tool_call(record, events)
                          once per MCP call (from the gateway): its ``mcp_calls`` row and audit events, queued
                          on the same writer (``tool_calls``).
    close()               drains every queued record, for at most the drain timeout; what is left is spilled to
                          a local file and written at the next start (graceful shutdown loses nothing).

Modules: ``records`` (what a row holds), ``cost`` (USD from usage and prices), ``estimate`` (tokens when the
provider reported none), ``schema`` (versioned tables), ``writer`` (batching, retry), ``audit_chain`` (hash chain,
append, list), ``audit_key`` (HMAC), ``audit_verify``, ``audit_anchor`` (the head outside the database),
``audit_trail`` (the running router's alarm and anchor publisher), ``storable`` (values every backend accepts),
``refusals`` (unauthenticated refusals counted per minute), ``spill`` (records a shutdown could not write, kept
on disk until the next start), ``reports`` (finance reports), ``tool_calls`` and ``mcp_reports`` (MCP calls'
rows and their report), ``timerange`` and ``render`` (CLI/admin input and output).
"""

from __future__ import annotations

import time
from typing import Any

from router.context import RequestContext
from router.ledger import tool_calls
from router.ledger.audit_chain import ChainAppender
from router.ledger.audit_rows import fold
from router.ledger.records import EndedRequest, FinishedRequest
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
        """Queue one MCP call's row (``mcp_calls``) and its audit events, on the same writer as the model
        plane's records (same batches, queue bound, spill file and hash chain). Must not block.

        ``record.request_id`` must be unique per call: replay of a spill file skips what it finds stored."""
        self.writer.put(FinishedRequest([], fold(list(audit_events)), tool_calls=[tool_calls.row_of(record)]))

    def health(self) -> dict[str, str]:
        return {"ledger": self.writer.health()}
