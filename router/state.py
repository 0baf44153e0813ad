"""Everything one router process holds: settings, the current config snapshot, and the live parts.

The snapshot is swapped as one reference on reload; a request reads ``state.snapshot`` once and keeps it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from datetime import UTC, datetime

from router.api.request_caps import RequestCaps
from router.config import ConfigError, Snapshot, load_snapshot
from router.context import RequestContext
from router.deployment_stats import DeploymentStats
from router.executor import Executor
from router.freezes.view import FreezeView
from router.identity import Identity
from router.ledger import Ledger
from router.ledger.audit_trail import AuditTrail
from router.limits import Limits
from router.provider_pool import ProviderPool
from router.redact import protect_logs, router_redactor
from router.response_store import ResponseStore, SharedOrigins
from router.session_affinity import SessionAffinity
from router.settings import Settings
from router.store.counters import Counters, CountersUnavailable, build_counters
from router.store.database import Database
from router.store.probe import StoreProbe

log = logging.getLogger("agent_router")

CLOSE_STEP_TIMEOUT = 3.0
"""Seconds shutdown gives the steps after the ledger's drain (the final audit anchor) before moving on."""


async def warm_up(snapshot: Snapshot, limit: float = 120.0) -> None:
    """Let adapters that need it (litellm's import) get ready before they serve a request."""
    waits = [provider.warm_up() for provider in snapshot.providers.values() if hasattr(provider, "warm_up")]
    if waits:
        try:
            async with asyncio.timeout(limit):
                await asyncio.gather(*waits, return_exceptions=True)
        except TimeoutError:
            log.warning("providers still warming up after %.0fs; first requests may wait", limit)


class RouterState:
    def __init__(self, settings: Settings, snapshot: Snapshot) -> None:
        self.settings = settings
        self.caps = RequestCaps.of(settings)
        self.pool = ProviderPool()
        self.snapshot = self._bind(snapshot)
        self.stats = DeploymentStats()
        self.counters: Counters = build_counters(settings.redis_url, settings.redis_prefix, settings.redis_timeout)
        self.database = Database(settings.database_url, settings.database_connect_timeout,
                                 settings.database_statement_timeout)
        self.executor = Executor(self.counters, self.stats)
        self.affinity = SessionAffinity()
        self.audit = AuditTrail(self.database, self.counters, settings)
        self.freezes = FreezeView(self.database, self.counters, self.audit.appender,
                                  refresh_interval=settings.freeze_refresh_interval,
                                  db_interval=settings.keys_refresh_interval,
                                  max_staleness=settings.freeze_max_staleness)
        self.identity = Identity(self.database, self.counters, refresh_interval=settings.keys_refresh_interval,
                                 max_staleness=settings.keys_max_staleness, freezes=self.freezes)
        self.limits = Limits(self.counters, settings)

        self.ledger = Ledger(self.database, settings, self.audit.appender)
        self.responses = ResponseStore(self.database, settings,
                                       SharedOrigins(self.counters) if settings.redis_url else None)
        self.probe = StoreProbe(self.database, self.counters, self._database_pinged, self._redis_pinged)
        self.reloads = 0
        self.last_reload_error: str | None = None
        """Why the last reload was refused (file:line: reason per problem); None once a reload succeeds."""
        self.last_reload_failed_at: float | None = None
        self._reload_lock = asyncio.Lock()

    async def start(self) -> None:
        """Connect stores and start background writers, before the first request is accepted."""
        await warm_up(self.snapshot)
        await self.database.run(self.database.connect)
        await self.ledger.start()
        await self.responses.start()
        await self.audit.start()
        await self.identity.start()
        await self.freezes.start()
        await self.limits.start()
        await self.probe.start()

    async def reload(self) -> Snapshot:
        """Load and validate the config again; swap it in only when it is entirely valid."""
        async with self._reload_lock:
            try:
                snapshot = await asyncio.to_thread(load_snapshot, self.settings.config)
            except ConfigError as exc:
                self._reload_failed(str(exc))
                log.error("config reload refused; the previous config keeps serving:\n%s", exc)
                raise
            try:
                bound = self._bind(snapshot)
                await warm_up(bound)
            except Exception as exc:
                self._reload_failed(f"{type(exc).__name__}: {exc}")
                raise
            self.snapshot = bound
            self.reloads += 1
            self.last_reload_error = self.last_reload_failed_at = None
            log.info("config reloaded (version %s)", snapshot.version)
            return self.snapshot

    def _bind(self, snapshot: Snapshot) -> Snapshot:
        """The snapshot with its live adapters and its redactor; the router's log lines mask its secrets too."""
        redactor = router_redactor(self.settings, snapshot.provider_specs.values(),
                                   snapshot.spec.mcp_servers.values())
        protect_logs(redactor)
        return dataclasses.replace(self.pool.bind(snapshot), redactor=redactor)

    def finish(self, ctx: RequestContext, status: str) -> None:
        """Called exactly once per request when it ends, success or failure. Never blocks."""
        if ctx.finished:
            return
        ctx.finished = True
        try:
            if status == "ok":
                self.affinity.remember(ctx)
            self.limits.settle(ctx)
        finally:
            self.ledger.record(ctx, status)

    def _database_pinged(self, problem: str | None) -> None:
        self.ledger.writer.ping_problem = problem

    def _redis_pinged(self, problem: str | None) -> None:
        if problem is not None:
            self.limits.outage.failed(CountersUnavailable(problem))

    def _reload_failed(self, reason: str) -> None:
        self.last_reload_error, self.last_reload_failed_at = reason, time.time()

    def _reload_health(self) -> dict[str, str]:
        """A refused reload leaves the old config serving (still ready), but the operator must see it."""
        if self.last_reload_error is None or self.last_reload_failed_at is None:
            return {}
        when = datetime.fromtimestamp(self.last_reload_failed_at, UTC).isoformat(timespec="seconds")
        reasons = "; ".join(self.last_reload_error.splitlines())
        return {"config_reload": f"degraded: the last reload was refused at {when}; version "
                                 f"{self.snapshot.version} keeps serving: {reasons}"}

    def health(self) -> dict[str, str]:
        return {**self._reload_health(), **self.ledger.health(), **self.audit.health(), **self.limits.health(),
                **self.identity.health(), **self.freezes.health(), **self.responses.health()}

    async def close(self) -> None:
        """Graceful shutdown: stop taking work, drain records, then close connections."""
        try:
            await self.probe.close()
            await self.limits.close()
            await self.identity.close()
            await self.freezes.close()
        finally:
            # Both drain through the one database connection under their own drain timeout: side by side, a
            # database that does not answer costs one timeout at shutdown, not one per store.
            await asyncio.gather(self.ledger.close(), self.responses.close())
            try:
                async with asyncio.timeout(CLOSE_STEP_TIMEOUT):
                    await self.audit.close()
            except TimeoutError:
                log.warning("audit: the final chain head was not published (the database did not answer)")
            await self.pool.close()
            await self.counters.close()
            await asyncio.to_thread(self.database.close)
