"""Key material: random keys, their hashes, and expiry parsing. A key is shown once; only its hash is kept."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, date, datetime, timedelta

KEY_PREFIX = "ar-"
DISPLAY_CHARS = 10
"""How many leading characters of a key are kept for display (``ar-`` + 7 of 43 random characters)."""

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def new_key() -> str:
    """``ar-`` + 32 random bytes, URL-safe base64 (256 bits of entropy)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(6)


def hash_key(key: str) -> str:
    """The stored form of a key, the same as in config: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[:DISPLAY_CHARS]


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """``2027-01-01`` (midnight UTC), an ISO timestamp, or a duration from now: ``30d``, ``12h``, ``90m``, ``2w``."""
    now = now or datetime.now(UTC)
    match = _DURATION.match(text)
    if match:
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
        if seconds <= 0:
            raise ValueError(f"expiry {text!r} is not in the future")
        return now + timedelta(seconds=seconds)
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
            moment = datetime.combine(date.fromisoformat(text.strip()), datetime.min.time(), UTC)
        else:
            moment = as_utc(datetime.fromisoformat(text.strip()))
    except ValueError:
        raise ValueError(f"expiry {text!r} is neither a date (2027-01-01), a timestamp (2027-01-01T12:00:00Z) "
                         f"nor a duration (30d, 12h, 90m, 2w)") from None
    if moment <= now:
        raise ValueError(f"expiry {text!r} is in the past")
    return moment


def as_utc(moment: datetime) -> datetime:
    """Naive timestamps (config, old rows) are taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def to_text(moment: datetime | None) -> str | None:
    """Stored with microseconds: an expiry cut to whole seconds ends a key up to a second early (``--expires 1s``
    could expire at once). The fixed width keeps text order equal to time order, also beside older rows written
    in whole seconds (``+`` sorts before ``.``)."""
    return None if moment is None else as_utc(moment).isoformat(timespec="microseconds")


def to_epoch(text: str | datetime | None) -> float | None:
    if text is None:
        return None
    moment = text if isinstance(text, datetime) else datetime.fromisoformat(text)
    return as_utc(moment).timestamp()
