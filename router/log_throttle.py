"""At most one log line per subject per interval, so a burst of faults cannot flood the log.

A deployment that flaps under load would otherwise write a line per fault (tens of thousands a minute); the
throttle lets the first line of each interval through and says how many it held back since the last one.
"""

from __future__ import annotations

import time


class LogThrottle:
    """Per-subject gate: :meth:`allow` answers whether to log now, and how many lines were held back."""

    def __init__(self, interval: float, max_subjects: int = 4096) -> None:
        self.interval = interval
        self._max_subjects = max_subjects
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, subject: str) -> int | None:
        """None: hold this line back. Otherwise log it, with the returned count of lines held back before."""
        now = time.monotonic()
        last = self._last.get(subject)
        if last is not None and now - last < self.interval:
            self._held[subject] = self._held.get(subject, 0) + 1
            return None
        if last is None and len(self._last) >= self._max_subjects:
            self._last.clear()  # subjects come from config, but never let the table grow without bound
            self._held.clear()
        self._last[subject] = now
        return self._held.pop(subject, 0)


def held_note(held: int) -> str:
    """The suffix of a line that follows held-back ones ('' when none were)."""
    return f" ({held} similar line(s) held back)" if held else ""
