"""Which deployment produced an encrypted reasoning item.

``reasoning.encrypted_content`` is only valid at the provider that produced it; a request carrying one must go
back there (or be refused with a reason). The router remembers a digest of every encrypted reasoning item it
served, with its deployment, in a bounded map (the oldest are forgotten first). Stored responses keep their
deployment in the database, so ``expand_previous`` teaches a restarted router the origin of a chain again.
:class:`SharedOrigins` also publishes them to the fleet's shared store (Redis), so a stateless follow-up (Codex
sends the whole history each turn) finds its origin on whichever replica it lands.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from typing import Any

from router.log_throttle import LogThrottle, held_note
from router.store.counters import Counters, CountersUnavailable

log = logging.getLogger("agent_router.responses")

MAX_ITEMS = 50_000
"""Digests remembered (16 bytes each, with the deployment name: a few MB at most)."""
SHARED_TTL = 24 * 3600.0
"""Seconds an origin stays in the shared store: a coding session's span, not the responses' retention (one key per
reasoning item would otherwise pile up in Redis for a month)."""
SHARED_KEY = "reasoning-origin:"
MAX_LOOKUPS = 4
"""Shared-store lookups per request at most (the latest sealed items first)."""
MAX_PUBLISHING = 256
"""Publications in flight at most; beyond it the fleet learns of an origin through stored responses only."""


def _digest(encrypted: str) -> bytes:
    return hashlib.blake2b(encrypted.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _encrypted_reasoning(items: Any) -> list[str]:
    if not isinstance(items, list):
        return []
    found = []
    for item in items:
        if isinstance(item, dict) and item.get("type") == "reasoning":
            encrypted = item.get("encrypted_content")
            if isinstance(encrypted, str) and encrypted:
                found.append(encrypted)
    return found


class ReasoningOrigins:
    def __init__(self, max_items: int = MAX_ITEMS) -> None:
        self.max_items = max(1, max_items)
        self._origins: OrderedDict[bytes, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._origins)

    def remember(self, output_items: list[Any], deployment: str) -> None:
        """Note ``deployment`` as the origin of every encrypted reasoning item in ``output_items``."""
        origins = self._origins
        for encrypted in _encrypted_reasoning(output_items):
            key = _digest(encrypted)
            origins[key] = deployment
            origins.move_to_end(key)
        while len(origins) > self.max_items:
            origins.popitem(last=False)

    async def locate(self, input_items: list[Any]) -> str | None:
        """:meth:`origin_of`, for a caller that can wait (the shared variant asks the fleet's store)."""
        return self.origin_of(input_items)

    async def close(self) -> None:
        return None

    def origin_of(self, input_items: list[Any]) -> str | None:
        """The deployment that produced the request's encrypted reasoning items; None when there is none or it is
        unknown. Items from several deployments: the latest one's, whose reasoning the model continues."""
        for encrypted in reversed(_encrypted_reasoning(input_items)):
            origin = self._origins.get(_digest(encrypted))
            if origin is not None:
                return origin
        return None


class SharedOrigins(ReasoningOrigins):
    """The local map first; the fleet's shared counters store (Redis) behind it. Publishing never waits on the
    request (a background task each, bounded); a lookup that the store cannot answer is "unknown", never an error:
    the request then routes as any other, and only the sealed items' validity is at stake, not a permission."""

    def __init__(self, counters: Counters, max_items: int = MAX_ITEMS) -> None:
        super().__init__(max_items)
        self._counters = counters
        self._tasks: set[asyncio.Task[None]] = set()
        self._log = LogThrottle(60.0)

    def remember(self, output_items: list[Any], deployment: str) -> None:
        super().remember(output_items, deployment)
        sealed = _encrypted_reasoning(output_items)
        if sealed and len(self._tasks) < MAX_PUBLISHING:
            task = asyncio.get_running_loop().create_task(self._publish([_digest(e) for e in sealed], deployment))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def locate(self, input_items: list[Any]) -> str | None:
        local = self.origin_of(input_items)
        if local is not None:
            return local
        for encrypted in list(reversed(_encrypted_reasoning(input_items)))[:MAX_LOOKUPS]:
            try:
                found = await self._counters.fetch(SHARED_KEY + _digest(encrypted).hex())
            except CountersUnavailable as exc:
                self._unavailable(exc)
                return None
            if found:
                return found
        return None

    async def close(self) -> None:
        """Let the publications in flight finish (each bounded by the store's own timeout)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _publish(self, digests: list[bytes], deployment: str) -> None:
        try:
            for digest in digests:
                await self._counters.put(SHARED_KEY + digest.hex(), deployment, SHARED_TTL)
        except CountersUnavailable as exc:
            self._unavailable(exc)

    def _unavailable(self, exc: Exception) -> None:
        held = self._log.allow("shared origins")
        if held is not None:
            log.warning("reasoning origins: the shared store is unreachable (%s); origins are local for now%s",
                        type(exc).__name__, held_note(held))
