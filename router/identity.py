"""Who is calling: API key -> agent -> role, and which public models that role may request.

Keys come from the config (``agents.<name>.keys``, by hash) and from the records database (created with
``agent-router keys create`` or ``POST /admin/keys``). The hot path is a dict lookup of the key's sha256 in
memory; a background task reloads the database keys every second. Database keys can be revoked at any time,
so with Redis configured each request also reads the key's revocation marker (see router.keys.revocations),
and refuses when it cannot (fail closed). Config keys are withdrawn by removing them from the config.
Every key, config or stored, of a frozen agent or role is refused (see router.freezes): a dict lookup here.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any, NoReturn

from router.config.snapshot import Snapshot
from router.context import RequestContext
from router.errors import AgentFrozen, AuthenticationFailed, IdentityUnavailable, PermissionDenied, RoleFrozen
from router.freezes.view import FreezeStateUnknown, FreezeView
from router.keys import revocations, store
from router.keys.material import to_epoch
from router.keys.store import KeyRow
from router.store.counters import Counters, CountersUnavailable
from router.store.database import Database

log = logging.getLogger("agent_router.identity")


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What the hot path needs about one key."""

    id: str
    agent: str
    role: str | None
    expires_at: float | None
    revoked: bool
    source: str  # "config" or "database"


KEY_HEADERS = ("api-key", "x-api-key")
"""Besides ``Authorization: Bearer``: Azure-style clients send ``api-key``, Anthropic-style ones ``x-api-key``."""


class ConflictingKeys(ValueError):
    """Several key headers carry different keys: which one is meant cannot be known, so none is used."""


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The agent key from ``Authorization: Bearer <key>``, ``api-key`` or ``x-api-key``; None when none is sent.

    Raise :class:`ConflictingKeys` when they disagree (fail closed: never pick one of two identities)."""
    key: str | None = None
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            key = value.strip()
    for name in KEY_HEADERS:
        sent = headers.get(name)
        if sent and (value := sent.strip()):
            if key is not None and value != key:
                raise ConflictingKeys("different API keys were sent in 'Authorization', 'api-key' and "
                                      "'x-api-key': send one key")
            key = value
    return key


def model_allowed(patterns: list[str] | tuple[str, ...], model: str) -> bool:
    """A role's ``models`` entries are exact names or globs (``gpt-*``, ``*``)."""
    return any(pattern == model or fnmatchcase(model, pattern) for pattern in patterns)


def config_key_id(agent: str, name: str | None, number: int) -> str:
    return f"config:{agent}:{name or number}"


def config_keys(snapshot: Snapshot) -> dict[str, KeyRecord]:
    """The keys the config gives by hash, by hex digest. A hash listed under two agents is ambiguous: dropped."""
    index: dict[str, KeyRecord] = {}
    seen: dict[str, str] = {}
    for agent, spec in snapshot.agents.items():
        for number, key in enumerate(spec.keys):
            digest = key.hash.removeprefix("sha256:")
            if digest in seen and seen[digest] != agent:
                log.error("a key hash is listed under agents %r and %r: refused for both", seen[digest], agent)
                index.pop(digest, None)
                continue
            seen[digest] = agent
            key_id = config_key_id(agent, key.name, number)
            index[digest] = KeyRecord(key_id, agent, spec.role, to_epoch(key.expires), False, "config")
    return index


def _record(row: KeyRow) -> KeyRecord:
    return KeyRecord(row.id, row.agent, row.role, to_epoch(row.expires_at), row.revoked_at is not None, "database")


class Identity:
    def __init__(self, database: Database | None = None, counters: Counters | None = None, *,
                 refresh_interval: float = 1.0, max_staleness: float = 10.0,
                 freezes: FreezeView | None = None) -> None:
        self.database = database
        self.counters = counters
        self.freezes = freezes
        self.refresh_interval = refresh_interval
        self.max_staleness = max(max_staleness, 3 * refresh_interval)
        self._db_keys: dict[str, KeyRecord] = {}
        self._changes = 0
        self._local: dict[str, tuple[int, KeyRecord]] = {}
        """Creates and revokes made here, numbered, so a reload that began before one cannot undo it."""
        self._loaded_at: float | None = None
        self._config: tuple[Snapshot | None, dict[str, KeyRecord]] = (None, {})
        self._task: asyncio.Task[None] | None = None
        self._last_error: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.database is None:
            return
        await self.database.run(store.migrate, self.database)
        await self.refresh()
        self._task = asyncio.create_task(self._refresh_loop(), name="identity-key-refresh")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    async def refresh(self) -> None:
        """Reload the database keys into memory; on failure keep the old ones (they age towards refusal)."""
        if self.database is None:
            return
        began = self._changes
        try:
            rows = await self.database.run(store.list_keys, self.database)
        except Exception as exc:
            if self._last_error is None:
                log.error("cannot read API keys from %s: %s", self.database.describe(), exc)
            self._last_error = str(exc)
            return
        if self._last_error is not None:
            log.info("API keys readable again from %s", self.database.describe())
        self._last_error = None
        keys = {row.key_hash.removeprefix("sha256:"): _record(row) for row in rows}
        self._local = {digest: change for digest, change in self._local.items() if change[0] > began}
        keys.update({digest: record for digest, (_, record) in self._local.items()})
        self._db_keys = keys
        self._loaded_at = time.monotonic()

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            await self.refresh()

    def remember(self, row: KeyRow) -> None:
        """Apply a create or revoke made by this process at once, without waiting for the next reload."""
        digest, record = row.key_hash.removeprefix("sha256:"), _record(row)
        self._changes += 1
        self._local[digest] = (self._changes, record)
        self._db_keys = {**self._db_keys, digest: record}

    def health(self) -> dict[str, str]:
        """``ok`` while the stored keys were read within 3 refresh intervals (at least 3 s); then ``degraded``
        (revocations made elsewhere are not seen); ``down`` once past ``max_staleness`` while stored keys
        exist: this replica refuses them (503), so a balancer should prefer one that can read its key store."""
        if self.database is None:
            return {}
        age = None if self._loaded_at is None else time.monotonic() - self._loaded_at
        read = "never read" if age is None else f"last read {age:.1f}s ago"
        why = f": {self._last_error}" if self._last_error is not None else ""
        if age is not None and age <= max(3 * self.refresh_interval, 3.0) and self._last_error is None:
            return {"keys": f"ok ({len(self._db_keys)} stored keys, {read})"}
        if (age is None or age > self.max_staleness) and self._db_keys:
            return {"keys": f"down: key store unreadable ({read}{why}); stored keys are refused (503) after "
                            f"{self.max_staleness:g}s"}
        return {"keys": f"degraded: key store unreadable ({read}{why}); stored keys are refused (503) after "
                        f"{self.max_staleness:g}s"}

    # -- the hot path ------------------------------------------------------------------------------
    def _config_keys(self, snapshot: Snapshot) -> dict[str, KeyRecord]:
        cached_for, index = self._config
        if cached_for is not snapshot:
            index = config_keys(snapshot)
            self._config = (snapshot, index)
        return index

    async def authenticate(self, headers: Mapping[str, str], ctx: RequestContext) -> None:
        """Set ``ctx.agent``, ``ctx.role`` and ``ctx.key_id``, or raise AuthenticationFailed (401)."""
        try:
            key = presented_key(headers)
        except ConflictingKeys as exc:
            self._refuse(ctx, None, "conflicting", str(exc))
        if key is None:
            self._refuse(ctx, None, "missing", "no API key: send 'Authorization: Bearer <key>', or an 'x-api-key' "
                                               "or 'api-key' header")
        digest = hashlib.sha256(key.encode()).hexdigest()
        record = self._config_keys(ctx.snapshot).get(digest) or self._db_keys.get(digest)
        if record is None:
            self._refuse(ctx, None, "unknown", "the API key is not known to this router")
        if record.revoked:
            self._refuse(ctx, record, "revoked", f"the API key {record.id} has been revoked")
        if record.expires_at is not None and record.expires_at <= time.time():
            expired = datetime.fromtimestamp(record.expires_at, UTC).isoformat(timespec="seconds")
            self._refuse(ctx, record, "expired", f"the API key {record.id} expired at {expired}")
        if record.source == "database":
            await self._check_not_revoked(ctx, record, digest)
        role = self._role_of(ctx, record)
        if self.freezes is not None:
            self._check_not_frozen(ctx, record.agent, role)
        ctx.agent, ctx.key_id, ctx.role = record.agent, record.id, role

    def _check_not_frozen(self, ctx: RequestContext, agent: str, role: str) -> None:
        """The kill switch: refuse every key of a frozen agent or role; fail closed when the view is too old."""
        assert self.freezes is not None
        try:
            frozen = self.freezes.find(agent, role)
        except FreezeStateUnknown as exc:
            self._audit(ctx, agent, role, "freeze state unknown")
            raise IdentityUnavailable(str(exc), code="freeze_state_unavailable") from None
        if frozen is None:
            return
        why = f": {frozen.reason}" if frozen.reason else ""
        self._audit(ctx, agent, role, f"{frozen.kind} {frozen.name!r} is frozen{why}", action="frozen",
                    rule=f"{frozen.kind}:{frozen.name}")
        if frozen.kind == "agent":
            raise AgentFrozen(f"agent_frozen: the agent {agent!r} is frozen by an operator{why}; every key of it "
                              f"is refused until it is unfrozen")
        raise RoleFrozen(f"role_frozen: the role {role!r} of agent {agent!r} is frozen by an operator{why}; every "
                         f"agent of it is refused until it is unfrozen")

    async def _check_not_revoked(self, ctx: RequestContext, record: KeyRecord, digest: str) -> None:
        """Fail closed: a database key whose revocation state cannot be read now is refused."""
        if self._loaded_at is None or time.monotonic() - self._loaded_at > self.max_staleness:
            self._audit(ctx, record.agent, None, "key store unavailable")
            raise IdentityUnavailable("cannot check whether the API key was revoked: the key store has not been "
                                      "readable recently; try again shortly")
        if self.counters is None or self.counters.backend != "redis":
            return
        try:
            revoked = await revocations.is_revoked(self.counters, digest)
        except CountersUnavailable:
            self._audit(ctx, record.agent, None, "revocation check unavailable (redis unreachable)")
            raise IdentityUnavailable("cannot check whether the API key was revoked: the shared revocation store "
                                      "(Redis) is unreachable; try again shortly") from None
        if revoked:
            self._db_keys = {**self._db_keys, digest: KeyRecord(record.id, record.agent, record.role,
                                                                record.expires_at, True, record.source)}
            self._refuse(ctx, record, "revoked", f"the API key {record.id} has been revoked")

    def _role_of(self, ctx: RequestContext, record: KeyRecord) -> str:
        """The agent's role in the config wins; a key for an agent the config does not name carries its own."""
        snapshot = ctx.snapshot
        agent = snapshot.agents.get(record.agent)
        role = agent.role if agent is not None else record.role
        if role is None:
            message = (f"agent {record.agent!r} is not in the config and its API key {record.id} names no role: "
                       f"add the agent to the config or create the key with --role")
        elif role not in snapshot.roles:
            message = f"the role {role!r} of agent {record.agent!r} does not exist in the config in force"
        else:
            return role
        self._audit(ctx, record.agent, role, message, action="auth_failed")
        raise PermissionDenied(message, code="unknown_role")

    def _refuse(self, ctx: RequestContext, record: KeyRecord | None, why: str, message: str) -> NoReturn:
        self._audit(ctx, record.agent if record else None, None, f"{why} API key")
        raise AuthenticationFailed(message)

    @staticmethod
    def _audit(ctx: RequestContext, agent: str | None, role: str | None, reason: str, *,
               action: str = "auth_failed", rule: Any = None) -> None:
        ctx.audit_events.append({
            "ts": time.time(), "request_id": ctx.request_id, "agent": agent, "role": role,
            "model": ctx.requested_model or None, "tool": None, "action": action, "stage": "request",
            "rule": rule, "reason": reason, "policy_version": ctx.snapshot.version,
        })

    def authorize_model(self, ctx: RequestContext) -> None:
        """Raise PermissionDenied (403) when the role may not request ``ctx.requested_model``.

        Only the role's list is enforced here; whether the model exists is the rules engine's 404.
        """
        role = ctx.snapshot.roles.get(ctx.role) if ctx.role is not None else None
        patterns = list(role.models) if role is not None else []
        if model_allowed(patterns, ctx.requested_model):
            return
        reason = f"role {ctx.role!r} may not use model {ctx.requested_model!r}"
        self._audit(ctx, ctx.agent, ctx.role, reason, action="model_denied", rule=patterns)
        raise PermissionDenied(f"{reason}; it may use: {', '.join(patterns) or 'no models'}", param="model",
                               code="model_not_allowed")

    async def models_for(self, headers: Mapping[str, str], snapshot: Snapshot) -> list[str]:
        """The public models the caller (authenticated from ``headers``) may request, sorted."""
        ctx = RequestContext(request_id="models", snapshot=snapshot, payload={}, stream=False, requested_model="")
        await self.authenticate(headers, ctx)
        role = snapshot.roles.get(ctx.role) if ctx.role is not None else None
        patterns = list(role.models) if role is not None else []
        return sorted(name for name in snapshot.models if model_allowed(patterns, name))

    # -- key management (admin API) ----------------------------------------------------------------
    async def create_key(self, agent: str, role: str | None, name: str | None,
                         expires_at: datetime | None) -> tuple[str, KeyRow]:
        assert self.database is not None
        key, row = await self.database.run(store.create_key, self.database, agent, role, name, expires_at)
        self.remember(row)
        return key, row

    async def revoke_key(self, ref: str) -> tuple[KeyRow, bool]:
        """Revoke in the database, here at once, and in Redis for the other replicas; True when Redis took it."""
        assert self.database is not None
        row = await self.database.run(store.revoke_key, self.database, ref)
        self.remember(row)
        if self.counters is None or self.counters.backend != "redis":
            return row, False
        try:
            await revocations.publish(self.counters, row)
        except CountersUnavailable as exc:
            log.warning("revocation of %s not published to Redis (%s); replicas see it on their next key reload",
                        row.id, exc)
            return row, False
        return row, True

