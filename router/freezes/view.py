"""What a running router knows of the freezes: two dicts the identity stage reads per request, refreshed in the
background so no request waits on Redis or the database.

With Redis configured the map in Redis is read every ``refresh_interval`` (0.25 s) and the database every
``db_interval`` (the keys' refresh interval); a name is frozen when either says so. Every freeze is written to the
database first, so the database alone is complete: while Redis cannot be read, the database is read every
``refresh_interval`` instead, and a freeze still reaches every replica within a second. The view is *known* while
one of them was read within ``max_staleness``; beyond that every request is refused (fail closed), because a
freeze made meanwhile could not be seen.

Without Redis the database is the only source, and a freeze is only ever made by writing it: the last view is
kept while it cannot be read (``degraded``), so a database outage does not stop config keys (the router's
promise for that outage), and no freeze can be made through it meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from router.freezes import shared, store
from router.freezes.store import FreezeRow, Kind
from router.ledger.audit_chain import ChainAppender
from router.store.counters import Counters, CountersUnavailable
from router.store.database import Database

log = logging.getLogger("agent_router.freezes")


class FreezeStateUnknown(Exception):
    """The view is older than its bound: whether the caller is frozen cannot be known now."""


class FreezeView:
    def __init__(self, database: Database, counters: Counters, audit: ChainAppender, *,
                 refresh_interval: float = 0.25, db_interval: float = 1.0, max_staleness: float = 3.0) -> None:
        self.database = database
        self.counters = counters
        self.audit = audit
        self.shared = counters.backend == "redis"
        self.refresh_interval = max(0.05, refresh_interval)
        self.db_interval = max(self.refresh_interval, db_interval)
        self.max_staleness = max(max_staleness, 2 * (self.refresh_interval if self.shared else self.db_interval))
        self.agents: dict[str, FreezeRow] = {}
        self.roles: dict[str, FreezeRow] = {}
        self._from_db: list[FreezeRow] = []
        self._from_redis: list[FreezeRow] = []
        self._known_at: float | None = None
        """When Redis or the database was last read (monotonic)."""
        self._problem: str | None = None
        self._redis_problem: str | None = None
        self._db_problem: str | None = None
        self._changes = 0
        """Freezes and unfreezes made here: a read that began before one must not undo it."""
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.database.run(store.migrate, self.database)
        await self.refresh()
        loops = [self._database_loop()] + ([self._redis_loop()] if self.shared else [])
        self._tasks = [asyncio.create_task(loop, name="freeze-view-refresh") for loop in loops]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    async def refresh(self) -> None:
        """Read the database and, when configured, Redis once each."""
        await self._read_database()
        if self.shared:
            await self._read_redis()

    async def _database_loop(self) -> None:
        """Every ``db_interval``; every ``refresh_interval`` while Redis cannot be read (it then carries freezes
        alone). Its own loop, so a Redis that does not answer never slows it."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.refresh_interval)
            if self._redis_problem or time.monotonic() - last >= self.db_interval:
                last = time.monotonic()
                await self._read_database()

    async def _redis_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            await self._read_redis()

    async def _read_database(self) -> None:
        """On failure keep the old view (it ages)."""
        began = self._changes
        try:
            rows = await self.database.run(store.list_freezes, self.database)
        except Exception as exc:  # any database failure only ages the view
            self._db_problem = f"database: {exc}"
        else:
            self._db_problem = None
            self._learned(began, rows, self._from_redis)
        self._note()

    async def _read_redis(self) -> None:
        began = self._changes
        try:
            rows = await shared.read(self.counters)
        except CountersUnavailable as exc:
            self._redis_problem = f"{exc}; reading the database every {self.refresh_interval:g}s instead"
        else:
            self._redis_problem = None
            self._learned(began, self._from_db, rows)
        self._note()

    def _learned(self, began: int, from_db: list[FreezeRow], from_redis: list[FreezeRow]) -> None:
        self._known_at = time.monotonic()
        if self._changes != began:
            return  # read before a change made here: the next read comes after it
        self._from_db, self._from_redis = from_db, from_redis
        self._apply(from_db + from_redis)

    def _note(self) -> None:
        problem = "; ".join(p for p in (self._redis_problem, self._db_problem) if p) or None
        if problem is not None and self._problem is None:
            then = (f"every key is refused once neither was read for {self.max_staleness:g}s" if self.shared
                    else "the last freeze state read stays in force")
            log.error("freezes: cannot read %s (%s)", problem, then)
        elif problem is None and self._problem is not None:
            log.info("freezes: the freeze state is readable again")
        self._problem = problem

    def _apply(self, rows: list[FreezeRow]) -> None:
        agents = {row.name: row for row in rows if row.kind == "agent"}
        roles = {row.name: row for row in rows if row.kind == "role"}
        if agents != self.agents:
            self.agents = agents
        if roles != self.roles:
            self.roles = roles

    # -- the hot path ------------------------------------------------------------------------------
    def find(self, agent: str, role: str | None) -> FreezeRow | None:
        """The freeze refusing this agent or role, if any; raise FreezeStateUnknown when the view is too old."""
        if self.shared and self._stale():
            raise FreezeStateUnknown(self._unknown())
        return self.agents.get(agent) or (self.roles.get(role) if role is not None else None)

    def _stale(self) -> bool:
        known = self._known_at
        return known is None or time.monotonic() - known > self.max_staleness

    def _unknown(self) -> str:
        return (f"cannot check whether the agent or its role is frozen: neither Redis nor the records database "
                f"has been readable for {self.max_staleness:g}s; try again shortly")

    def health(self) -> dict[str, str]:
        known = self._known_at
        count = f"{len(self.agents)} agent(s) and {len(self.roles)} role(s) frozen"
        if self.shared and self._stale():
            read = "never read" if known is None else f"last read {time.monotonic() - known:.1f}s ago"
            return {"freezes": f"down: stale ({read}: {self._problem or 'no read yet'}); every key is refused "
                               f"(503) until the freeze state is readable"}
        if self._problem is not None:
            unseen = "" if self.shared else "; freezes made elsewhere are not seen until it is readable"
            return {"freezes": f"degraded: {count}; {self._problem}{unseen}"}
        return {"freezes": f"ok ({count})"}

    # -- changes made by this process (admin API) ---------------------------------------------------
    async def freeze(self, kind: Kind, name: str, reason: str | None, by: str) -> tuple[FreezeRow, bool, bool]:
        """Freeze in the database (audited), here at once, then in Redis; return (row, new, published)."""
        row, new = await self.database.run(store.freeze, self.database, kind, name, reason, by, self.audit)
        self._changes += 1
        self._from_db = [*self._from_db, row]
        self._apply(self._from_db + self._from_redis)
        if not self.shared:
            return row, new, False
        try:
            await shared.publish(self.counters, row)
        except CountersUnavailable as exc:
            log.warning("freeze of %s %r not published to Redis (%s); replicas see it at their next database read",
                        kind, name, exc)
            return row, new, False
        return row, new, True

    async def unfreeze(self, kind: Kind, name: str, by: str) -> FreezeRow | None:
        """Lift in Redis first (raise CountersUnavailable, changing nothing, when it cannot), then the database."""
        if self.shared:
            await shared.withdraw(self.counters, kind, name)
        row = await self.database.run(store.unfreeze, self.database, kind, name, by, self.audit)
        self._changes += 1
        self._from_db = [r for r in self._from_db if (r.kind, r.name) != (kind, name)]
        self._from_redis = [r for r in self._from_redis if (r.kind, r.name) != (kind, name)]
        self._apply(self._from_db + self._from_redis)
        return row
