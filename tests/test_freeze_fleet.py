"""The kill switch across a fleet and when its stores fail: a freeze made with the CLI is refused by every
replica within a second (through Redis), lifted as fast; with neither Redis nor the database readable, every
key is refused once the view is older than its bound (fail closed), and not before."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from router.config import load_snapshot
from router.context import RequestContext
from router.errors import AgentFrozen, IdentityUnavailable
from router.freezes import store
from router.freezes.view import FreezeView
from router.identity import Identity
from router.ledger.audit_chain import PLAIN
from router.ledger.schema import migrate as migrate_ledger
from router.store.counters import MemoryCounters, RedisCounters
from router.store.database import Database
from tests.backing_services import REDIS_URL, fresh_database, redis_prefix
from tests.harness import RouterProcess, free_port, write_config
from tests.mcp_helpers import MOCK_MODELS, agents

pytestmark = pytest.mark.timeout(120)

CONFIG = MOCK_MODELS + 'roles:\n  worker: {models: ["*"]}\n' + agents(("alice", "worker"), ("bob", "worker"))


def _served(replica: RouterProcess, agent: str) -> bool:
    try:
        return bool(replica.client(f"{agent}-key").chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]).choices)
    except openai.PermissionDeniedError as exc:
        assert exc.response.json()["error"]["code"] == "agent_frozen"
        return False


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "router", "agents", *args], capture_output=True, text=True,
                          timeout=60, check=False, env=env)


def _seconds_until(replicas: list[RouterProcess], served: bool, bound: float = 3.0) -> float:
    """Seconds from now until every replica answers alice as ``served`` says (polled every 20 ms)."""
    began = time.monotonic()
    while time.monotonic() - began < bound:
        if all(_served(replica, "alice") == served for replica in replicas):
            return time.monotonic() - began
        time.sleep(0.02)
    return float("inf")


def test_a_cli_freeze_reaches_every_replica_within_a_second(tmp_path: Path) -> None:
    config = write_config(CONFIG, str(tmp_path))
    with redis_prefix() as prefix, fresh_database() as database_url:
        env = {"AGENT_ROUTER_REDIS_URL": REDIS_URL, "AGENT_ROUTER_REDIS_PREFIX": prefix,
               "AGENT_ROUTER_DATABASE_URL": database_url, "AGENT_ROUTER_WATCH_CONFIG": "false",
               # the database is read every 5 s here, so only Redis can carry the freeze within a second
               "AGENT_ROUTER_KEYS_REFRESH_INTERVAL": "5"}
        replicas = [RouterProcess(config, env=env) for _ in range(2)]
        cli_env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path.cwd()), **env}
        try:
            for replica in replicas:
                replica.start()
            assert all(_served(replica, "alice") for replica in replicas)
            frozen = _cli(cli_env, "freeze", "alice", "--reason", "runaway")
            assert frozen.returncode == 0, frozen.stderr
            assert "warning" not in frozen.stderr, frozen.stderr
            assert _seconds_until(replicas, served=False) < 1.0
            assert all(_served(replica, "bob") for replica in replicas)
            lifted = _cli(cli_env, "unfreeze", "alice")
            assert lifted.returncode == 0, lifted.stderr
            assert _seconds_until(replicas, served=True) < 1.0
        finally:
            for replica in replicas:
                replica.stop()


def test_neither_store_readable_fails_closed_after_the_bound(tmp_path: Path) -> None:
    snapshot = load_snapshot(str(write_config(CONFIG, str(tmp_path))))

    async def scenario() -> None:
        database = Database(f"sqlite:///{tmp_path / 'records.db'}")
        await database.run(migrate_ledger, database)
        counters = RedisCounters(f"redis://127.0.0.1:{free_port()}/0", timeout=0.05)  # nothing listens there
        view = FreezeView(database, counters, PLAIN, refresh_interval=0.05, db_interval=0.05, max_staleness=0.5)
        identity = Identity(freezes=view)
        await view.start()
        await database.run(store.freeze, database, "agent", "alice", "incident", "test", PLAIN)

        def ctx() -> RequestContext:
            return RequestContext(request_id="r", snapshot=snapshot, payload={}, stream=False, requested_model="m")

        await asyncio.sleep(0.3)  # Redis is down: the database, read every round instead, carries the freeze
        with pytest.raises(AgentFrozen):
            await identity.authenticate({"x-api-key": "alice-key"}, ctx())
        await identity.authenticate({"x-api-key": "bob-key"}, ctx())
        assert view.health()["freezes"].startswith("degraded: 1 agent(s)")
        database.close()  # from now on every database read fails too
        await asyncio.sleep(0.2)
        await identity.authenticate({"x-api-key": "bob-key"}, ctx())  # within the bound: the last view holds
        await asyncio.sleep(0.6)
        refused = ctx()
        with pytest.raises(IdentityUnavailable) as unknown:
            await identity.authenticate({"x-api-key": "bob-key"}, refused)
        assert unknown.value.status == 503 and unknown.value.code == "freeze_state_unavailable"
        assert refused.agent is None and refused.audit_events[-1]["reason"] == "freeze state unknown"
        assert view.health()["freezes"].startswith("down: stale")
        await view.close()
        await counters.close()

    asyncio.run(scenario())


def test_the_admin_api_needs_no_server_restart_to_reach_a_second_replica(tmp_path: Path) -> None:
    """The admin API of one replica freezes; the other, polling Redis, refuses within a second."""
    config = write_config(CONFIG, str(tmp_path))
    with redis_prefix() as prefix, fresh_database() as database_url:
        env = {"AGENT_ROUTER_REDIS_URL": REDIS_URL, "AGENT_ROUTER_REDIS_PREFIX": prefix,
               "AGENT_ROUTER_DATABASE_URL": database_url, "AGENT_ROUTER_WATCH_CONFIG": "false",
               "AGENT_ROUTER_KEYS_REFRESH_INTERVAL": "5", "AGENT_ROUTER_ADMIN_KEY": "fleet-admin"}
        first, second = RouterProcess(config, env=env), RouterProcess(config, env=env)
        try:
            first.start()
            second.start()
            answer: Any = httpx.post(f"{first.url}/admin/freeze", json={"agent": "alice"}, timeout=10,
                                     headers={"x-admin-key": "fleet-admin"})
            assert answer.status_code == 200 and answer.json()["published_to_redis"] is True, answer.text
            assert _seconds_until([second], served=False) < 1.0
        finally:
            first.stop()
            second.stop()


def test_without_redis_an_unreadable_database_keeps_the_last_freeze_state(tmp_path: Path) -> None:
    """No freeze can be made without writing the database, so its outage keeps config keys working (the router's
    promise for that outage) and the agents frozen before it frozen."""
    snapshot = load_snapshot(str(write_config(CONFIG, str(tmp_path))))

    async def scenario() -> None:
        database = Database(f"sqlite:///{tmp_path / 'records.db'}")
        await database.run(migrate_ledger, database)
        view = FreezeView(database, MemoryCounters(), PLAIN, refresh_interval=0.05, db_interval=0.05,
                          max_staleness=0.2)
        identity = Identity(freezes=view)
        await view.start()
        await view.freeze("agent", "alice", None, "test")
        database.close()
        await asyncio.sleep(0.5)

        def ctx() -> RequestContext:
            return RequestContext(request_id="r", snapshot=snapshot, payload={}, stream=False, requested_model="m")

        with pytest.raises(AgentFrozen):
            await identity.authenticate({"x-api-key": "alice-key"}, ctx())
        await identity.authenticate({"x-api-key": "bob-key"}, ctx())
        assert view.health()["freezes"].startswith("degraded: 1 agent(s)")
        await view.close()

    asyncio.run(scenario())
