"""Stored Responses API answers: what ``previous_response_id`` and ``GET/DELETE /v1/responses/{id}`` read.

    ResponseStore.keep(...)      on the hot path, after an answer: encodes and queues, no I/O; a write-behind
                                 task batches the rows into the records database (``store``, ``writes``)
    ResponseStore.get/delete     the caller's own responses only; the most recent ones answer from memory
                                 (``recent``) before their write lands
    expand_previous(store, ctx)  a request naming ``previous_response_id`` gets the whole earlier conversation
                                 as its input, so upstreams are always called statelessly (``expand``)
    ReasoningOrigins             which deployment produced an encrypted reasoning item (``reasoning_origin``;
                                 SharedOrigins also through the fleet's Redis)

Modules: ``rows`` (a stored response, its hostile-safe JSON), ``schema`` (the table), ``writes`` (the database
thread's statements), ``recent`` (the bounded in-memory map), ``listing`` (the input-items pages).
"""

from __future__ import annotations

from router.response_store.expand import expand_previous, output_as_input
from router.response_store.reasoning_origin import ReasoningOrigins, SharedOrigins
from router.response_store.rows import StoredResponse
from router.response_store.store import ResponseStore

__all__ = ["ReasoningOrigins", "ResponseStore", "SharedOrigins", "StoredResponse", "expand_previous", "output_as_input"]
