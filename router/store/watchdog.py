"""A bound on how long one database call may hold the records thread.

A thread blocked on a socket cannot be cancelled, and a network path that silently drops packets (or a server
that stopped answering) never makes the read return: TCP keepalives and ``tcp_user_timeout`` cannot tell, and
a server-side ``statement_timeout`` never fires when the statement never arrived. So :class:`CallWatchdog`
times every call from another thread and, when one overruns, calls ``on_overrun`` (the database shuts its
socket down), which makes the blocked read return at once with an error the caller handles as an outage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CallWatchdog:
    """Time calls one at a time (the records thread runs one call at a time); overruns call ``on_overrun``."""

    def __init__(self, limit: float, on_overrun: Callable[[], None]) -> None:
        self.limit = limit
        self.on_overrun = on_overrun
        self.overruns = 0
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def begin(self) -> None:
        """A call starts (on the records thread): it must end within ``limit`` seconds."""
        with self._cond:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._watch, name="records-db-watchdog", daemon=True)
                self._thread.start()
            self._deadline = time.monotonic() + self.limit
            self._cond.notify()

    def end(self) -> None:
        with self._cond:
            self._deadline = None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(2)

    def _watch(self) -> None:
        with self._cond:
            while not self._closed:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self._deadline = None
                self.overruns += 1
                try:
                    self.on_overrun()
                except Exception:  # the watchdog must outlive a failed interrupt; the next overrun tries again
                    pass
