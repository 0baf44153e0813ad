"""Live provider adapters, kept across config reloads so pooled upstream connections survive a swap."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from providers import Provider, build_provider
from router.config.schema import ProviderSpec
from router.config.snapshot import Snapshot

log = logging.getLogger("agent_router.providers")

# Requests in flight on a replaced provider keep using it; it is closed after this grace period.
RETIRE_AFTER_SECONDS = 300.0


class ProviderPool:
    def __init__(self) -> None:
        self._live: dict[str, tuple[ProviderSpec, Provider]] = {}
        self._retiring: dict[asyncio.Task[None], Provider] = {}

    def bind(self, snapshot: Snapshot) -> Snapshot:
        """Return ``snapshot`` with adapters attached, reusing those whose spec did not change."""
        providers: dict[str, Provider] = {}
        for name, spec in snapshot.provider_specs.items():
            current = self._live.get(name)
            providers[name] = current[1] if current and current[0] == spec else build_provider(name, spec)
        for name, (_, provider) in list(self._live.items()):
            if providers.get(name) is not provider:
                self._retire(provider)
        self._live = {name: (snapshot.provider_specs[name], p) for name, p in providers.items()}
        return dataclasses.replace(snapshot, providers=providers)

    def _retire(self, provider: Provider) -> None:
        async def close_later() -> None:
            await asyncio.sleep(RETIRE_AFTER_SECONDS)
            await provider.close()

        try:
            task = asyncio.get_running_loop().create_task(close_later())
        except RuntimeError:
            return
        self._retiring[task] = provider
        task.add_done_callback(lambda done: self._retiring.pop(done, None))

    async def close(self) -> None:
        """Close every adapter, the retiring ones too (shutdown does not wait out their grace period)."""
        retiring = list(self._retiring.items())
        self._retiring.clear()
        for task, _ in retiring:
            task.cancel()
        for provider in [p for _, p in retiring] + [p for _, p in self._live.values()]:
            try:
                await provider.close()
            except Exception:  # closing is best effort at shutdown
                log.exception("closing provider %s failed", provider.name)
        self._live.clear()
