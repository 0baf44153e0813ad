"""Time bounds given by people: ``2026-11-01``, ``2026-11-01T12:00:00Z`` or epoch seconds."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class TimeRangeError(ValueError):
    pass


def parse_bound(text: str | None, *, end: bool = False) -> float | None:
    """Epoch seconds of a bound. A date alone means its whole day (UTC): as an end bound, the next midnight."""
    if text is None or not str(text).strip():
        return None
    text = str(text).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise TimeRangeError(f"not a date or time: {text!r} (use 2026-11-01, 2026-11-01T12:00:00Z or epoch "
                             "seconds)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if end and _DATE_ONLY.match(text):
        moment += timedelta(days=1)
    return moment.timestamp()


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")


def ts_clauses(since: float | None, until: float | None) -> tuple[list[str], list[Any]]:
    """SQL conditions (``ts >= ?``, ``ts < ?``) and their parameters for a half-open time range."""
    clauses: list[str] = []
    params: list[Any] = []
    if since is not None:
        clauses.append("ts >= ?")
        params.append(since)
    if until is not None:
        clauses.append("ts < ?")
        params.append(until)
    return clauses, params
