"""The optional audit key (``AGENT_ROUTER_AUDIT_KEY``): with it, each row's hash is an HMAC, so re-chaining the
trail needs the key and not just write access to the database.

Only the key id (a short hash of the key) is ever stored, logged or shown; the key stays inside this object.
"""

from __future__ import annotations

import hashlib
import hmac

_KEY_ID_LABEL = b"agent-router audit key id:"
KEY_ID_LENGTH = 12


def key_id_of(secret: bytes) -> str:
    """What names a key in rows and messages: 12 hex digits of a labelled sha256 (not the row MAC's input)."""
    return hashlib.sha256(_KEY_ID_LABEL + secret).hexdigest()[:KEY_ID_LENGTH]


class AuditKey:
    """``seal(prev_hash, canonical) = HMAC-SHA256(key, prev_hash + canonical)`` as hex."""

    __slots__ = ("_mac", "key_id")

    def __init__(self, secret: str | bytes) -> None:
        raw = secret.encode() if isinstance(secret, str) else secret
        if not raw.strip():
            raise ValueError("the audit key is empty")
        self.key_id = key_id_of(raw)
        self._mac = hmac.new(raw, digestmod=hashlib.sha256)

    def seal(self, prev_hash: str, canonical: bytes) -> str:
        mac = self._mac.copy()  # the key's padded blocks are hashed once, in __init__
        mac.update(prev_hash.encode())
        mac.update(canonical)
        return mac.hexdigest()

    def __repr__(self) -> str:
        return f"AuditKey(key_id={self.key_id!r})"
