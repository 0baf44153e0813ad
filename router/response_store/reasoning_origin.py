"""Which deployment produced an encrypted reasoning item.

``reasoning.encrypted_content`` is only valid at the provider that produced it; a request carrying one must go
back there (or be refused with a reason). The router remembers a digest of every encrypted reasoning item it
served, with its deployment, in a bounded map (the oldest are forgotten first). Stored responses keep their
deployment in the database, so ``expand_previous`` teaches a restarted router the origin of a chain again.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

MAX_ITEMS = 50_000
"""Digests remembered (16 bytes each, with the deployment name: a few MB at most)."""


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

    def origin_of(self, input_items: list[Any]) -> str | None:
        """The deployment that produced the request's encrypted reasoning items; None when there is none or it is
        unknown. Items from several deployments: the latest one's, whose reasoning the model continues."""
        for encrypted in reversed(_encrypted_reasoning(input_items)):
            origin = self._origins.get(_digest(encrypted))
            if origin is not None:
                return origin
        return None
