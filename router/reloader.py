"""Reload the config without a restart: on SIGHUP, and when a config or rule file changes on disk.

Both paths call :meth:`RouterState.reload`, which validates the whole new config and swaps one reference;
an invalid config is refused (logged with file, line and reason) and the old one keeps serving. The disk
watch is cheap polling of file and rule-folder modification times (no extra dependency), every
``settings.watch_interval`` seconds when ``settings.watch_config`` is on and a config file is in use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading

from router.config import ConfigError
from router.state import RouterState

log = logging.getLogger("agent_router.reload")

Fingerprint = tuple[tuple[str, float, int], ...]


def fingerprint(paths: list[str]) -> Fingerprint:
    """(path, mtime, size) of each file or folder; a missing one counts as (path, -1, -1)."""
    marks = []
    for path in paths:
        try:
            info = os.stat(path)
            marks.append((path, info.st_mtime, info.st_size))
        except OSError:
            marks.append((path, -1.0, -1))
    return tuple(marks)


def watched_paths(state: RouterState) -> list[str]:
    """The snapshot's files, plus its rule folders so that an added or removed rule file is noticed."""
    snapshot = state.snapshot
    folders = snapshot.extras.get("rule_folders") or ()
    return sorted({*snapshot.files, *(str(folder) for folder in folders)})


class Reloader:
    def __init__(self, state: RouterState) -> None:
        self.state = state
        self._watch: asyncio.Task[None] | None = None
        self._signal_installed = False
        self._pending: set[asyncio.Task[bool]] = set()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP"):
            try:
                loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
                self._signal_installed = True
            except (NotImplementedError, RuntimeError, ValueError):
                log.warning("SIGHUP reload unavailable on this event loop")
        settings = self.state.settings
        if settings.watch_config and settings.config:
            self._watch = loop.create_task(self._poll(settings.watch_interval), name="config-watch")

    async def close(self) -> None:
        if self._signal_installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._signal_installed = False
        for task in [self._watch, *self._pending]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._watch = None

    def _on_sighup(self) -> None:
        log.info("SIGHUP received: reloading the config")
        task = asyncio.get_running_loop().create_task(self.reload("SIGHUP"))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def reload(self, reason: str) -> bool:
        """Reload now; True when the new config is serving. Refusals are logged by the state."""
        try:
            await self.state.reload()
        except ConfigError:
            return False
        except Exception:
            log.exception("config reload (%s) failed unexpectedly; the previous config keeps serving", reason)
            return False
        return True

    async def _poll(self, interval: float) -> None:
        seen = await asyncio.to_thread(fingerprint, watched_paths(self.state))
        while True:
            await asyncio.sleep(interval)
            current = await asyncio.to_thread(fingerprint, watched_paths(self.state))
            if current == seen:
                continue
            seen = current
            log.info("config files changed on disk: reloading")
            if await self.reload("file change"):
                seen = loaded_fingerprint(current, await asyncio.to_thread(fingerprint, watched_paths(self.state)))


def loaded_fingerprint(before: Fingerprint, after: Fingerprint) -> Fingerprint:
    """What a successful reload actually loaded, for the next comparison.

    ``before`` was taken before the files were read, so a write that lands during the reload differs from it
    and is loaded on the next poll. A path the new config names for the first time has no mark from before
    the read; it gets one that matches nothing, so that a write to it during the reload is not lost either
    (at worst one extra, identical reload).
    """
    known = {mark[0]: mark for mark in before}
    return tuple(known.get(mark[0], (mark[0], -2.0, -2)) for mark in after)
