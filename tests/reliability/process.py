"""The router as its own process under load: signals, RSS, and the records it left behind."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from router.store.database import Database
from tests.harness import RouterProcess

STARTUP = 60.0
"""Hang guard for a router process to become healthy: several start at once on a shared, loaded machine."""


def rss_mb(router: RouterProcess) -> float:
    """Resident memory of the router process, from ``/proc`` (Linux)."""
    assert router.proc is not None
    for line in Path(f"/proc/{router.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")


def signal_and_wait(router: RouterProcess, sig: signal.Signals, hang_guard: float = 120) -> tuple[int | None, float]:
    """Send ``sig``; return (exit code or None if still running after ``hang_guard`` s, seconds it took)."""
    assert router.proc is not None
    started = time.monotonic()
    router.proc.send_signal(sig)
    try:
        code: int | None = router.proc.wait(hang_guard)
    except Exception:
        code = None
        router.proc.kill()
        router.proc.wait(10)
    return code, time.monotonic() - started


def recorded_request_ids(database_url: str) -> set[str]:
    """Every request id with a ``request`` row in the usage ledger."""
    db = Database(database_url)
    db.connect()
    try:
        rows = db.fetchall("SELECT request_id FROM usage_records WHERE kind = 'request'")
    finally:
        db.close()
    return {str(row["request_id"]) for row in rows}
