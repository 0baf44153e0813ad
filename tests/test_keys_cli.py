"""``agent-router keys`` as operators run it (a subprocess, no server), the README quick start, and revocation
across replicas sharing PostgreSQL and Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.backing_services import fresh_database, redis_prefix
from tests.configs import openai_config
from tests.harness import RouterProcess, write_config

USER = [{"role": "user", "content": "hello"}]
EXTRA = """
roles:
  narrow: {models: ["fast"]}
agents:
  ops-bot: {role: narrow}
"""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_ROUTER_") and k != "OPENAI_API_KEY"}
    return {**env, **extra}


def keys(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "router", "keys", *args], cwd=cwd, env=env or clean_env(),
                          capture_output=True, text=True, timeout=60)


def status(url: str, key: str, model: str = "fast") -> int:
    resp = httpx.post(f"{url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": model, "messages": USER}, timeout=10)
    return resp.status_code


def wait_for(check: Callable[[], bool], seconds: float, what: str) -> float:
    """Poll until ``check()``; return how long it took."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < seconds, f"{what} did not happen within {seconds}s"
        time.sleep(0.02)
    return time.monotonic() - start


# -- the CLI alone ------------------------------------------------------------------------------------------
def test_create_list_revoke_without_a_server(tmp_path: Path) -> None:
    config = write_config(openai_config("http://127.0.0.1:9/v1", EXTRA), str(tmp_path))
    db = f"--database-url=sqlite:///{tmp_path / 'records.db'}"
    created = keys("create", "--agent", "ci-bot", "--role", "narrow", "--name", "runner-1", "--expires", "30d",
                   db, f"--config={config}", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("ar-") and len(key) == 46 and "\n" not in key
    assert "shown only now" in created.stderr and key not in created.stderr

    second = keys("create", "--agent", "ops-bot", db, f"--config={config}", cwd=tmp_path)
    assert second.returncode == 0, second.stderr  # a configured agent needs no --role: the config gives it

    listed = keys("list", db, f"--config={config}", cwd=tmp_path)
    assert listed.returncode == 0 and key not in listed.stdout
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:5] == ["ID", "PREFIX", "AGENT", "ROLE", "SOURCE"] and len(lines) == 4
    ci_line = next(line for line in lines if "ci-bot" in line)
    key_id = ci_line.split()[0]
    assert key[:10] in ci_line and "runner-1" in ci_line and "narrow" in ci_line
    only = keys("list", "--agent", "ops-bot", "--json", db, cwd=tmp_path)
    assert only.returncode == 0 and '"agent":"ops-bot"' in only.stdout and "ci-bot" not in only.stdout

    revoked = keys("revoke", key_id[:8], db, cwd=tmp_path)  # "key_" + 4 hex: a unique id prefix
    assert revoked.returncode == 0, revoked.stderr
    assert key_id in revoked.stdout
    after = keys("list", "--json", "--agent", "ci-bot", db, cwd=tmp_path)
    assert '"revoked_at":"20' in after.stdout
    assert keys("revoke", key[:10], db, cwd=tmp_path).returncode == 0  # by display prefix; idempotent


def test_list_shows_config_keys_and_the_role_each_key_really_gets(tmp_path: Path) -> None:
    config = write_config(openai_config("http://127.0.0.1:9/v1", EXTRA), str(tmp_path))
    db = f"--database-url=sqlite:///{tmp_path / 'records.db'}"
    # ops-bot's role comes from the config (the key stores none); the stray key's own role loses to it too.
    assert keys("create", "--agent", "ops-bot", db, f"--config={config}", cwd=tmp_path).returncode == 0
    stray = keys("create", "--agent", "ops-bot", "--role", "tester", db, f"--config={config}", cwd=tmp_path)
    assert stray.returncode == 0 and "wins over" in stray.stderr
    listed = keys("list", db, f"--config={config}", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert [(r[0], r[2], r[3], r[4]) for r in rows if r[4] == "config"] == \
        [("config:test-agent:0", "test-agent", "tester", "config")]
    assert [(r[2], r[3]) for r in rows if r[4] == "database"] == [("ops-bot", "narrow"), ("ops-bot", "narrow")]
    entries = [json.loads(line) for line in keys("list", "--json", "--agent", "ops-bot", db, f"--config={config}",
                                                 cwd=tmp_path).stdout.splitlines()]
    assert [(e["source"], e["role"], e["effective_role"]) for e in entries] == \
        [("database", None, "narrow"), ("database", "tester", "narrow")]


def test_cli_refuses_keys_that_could_never_work(tmp_path: Path) -> None:
    config = write_config(openai_config("http://127.0.0.1:9/v1", EXTRA), str(tmp_path))
    db = f"--database-url=sqlite:///{tmp_path / 'records.db'}"
    for args, needle in [(["--agent", "stranger"], "not in the config"),
                         (["--agent", "stranger", "--role", "root"], "does not exist"),
                         (["--agent", "x", "--role", "narrow", "--expires", "2001-01-01"], "in the past")]:
        result = keys("create", *args, db, f"--config={config}", cwd=tmp_path)
        assert result.returncode == 2 and needle in result.stderr and not result.stdout, (args, result)
    missing = keys("revoke", "key_nothere", db, cwd=tmp_path)
    assert missing.returncode == 1 and "no key matches" in missing.stderr


# -- the README quick start ----------------------------------------------------------------------------------
def test_quick_start_from_a_fresh_directory() -> None:
    """keys create (default database in the current directory), serve with the built-in config, use the key."""
    router = RouterProcess(None)
    router.env = clean_env()  # nothing configured: the built-in config and sqlite:///agent-router.db
    created = keys("create", "--agent", "demo", "--role", "default", cwd=router.workdir)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert (router.workdir / "agent-router.db").exists()
    router.start()
    try:
        client = router.client(api_key=key)
        assert [m.id for m in client.models.list()] == ["mock"]
        answer = client.chat.completions.create(model="mock", messages=USER)
        assert answer.choices[0].message.content
        with pytest.raises(openai.AuthenticationError):
            router.client(api_key="ar-guess").chat.completions.create(model="mock", messages=USER)
        assert httpx.post(f"{router.url}/v1/chat/completions", json={"model": "mock", "messages": USER}
                          ).status_code == 401

        # A key created and revoked while the server runs: seen within about a second (database reload).
        later = keys("create", "--agent", "demo2", "--role", "default", cwd=router.workdir).stdout.strip()
        wait_for(lambda: status(router.url, later, "mock") == 200, 5, "the new key being accepted")
        assert keys("revoke", later[:12], cwd=router.workdir).returncode == 0
        took = wait_for(lambda: status(router.url, later, "mock") == 401, 5, "the revoked key being refused")
        assert took < 2.0
        assert status(router.url, key, "mock") == 200
    finally:
        router.stop()


# -- a fleet: two replicas, one PostgreSQL, one Redis ---------------------------------------------------------
@pytest.fixture
def fleet(tmp_path: Path, upstream: Any) -> Any:
    config = write_config(openai_config(upstream.openai_base_url, EXTRA), str(tmp_path))
    with fresh_database() as database_url, redis_prefix() as prefix:
        env = clean_env(AGENT_ROUTER_DATABASE_URL=database_url, AGENT_ROUTER_REDIS_URL="redis://127.0.0.1:6379/0",
                        AGENT_ROUTER_REDIS_PREFIX=prefix, AGENT_ROUTER_ADMIN_KEY="adm",
                        # Reloads from the database are slow on purpose: only Redis can explain a fast refusal.
                        AGENT_ROUTER_KEYS_REFRESH_INTERVAL="60", AGENT_ROUTER_KEYS_MAX_STALENESS="600")
        made = [keys("create", "--agent", f"bot-{n}", "--role", "narrow", f"--config={config}", cwd=tmp_path,
                     env=env) for n in range(2)]
        assert all(m.returncode == 0 for m in made), [m.stderr for m in made]
        replicas = [RouterProcess(config, env=env) for _ in range(2)]
        try:
            for replica in replicas:
                replica.env = env
                replica.start()
            yield replicas, [m.stdout.strip() for m in made], env, tmp_path
        finally:
            for replica in replicas:
                replica.stop()


def test_revocation_reaches_every_replica_within_a_second(fleet: Any) -> None:
    (a, b), (first, second), env, workdir = fleet
    for replica in (a, b):
        assert status(replica.url, first) == 200 and status(replica.url, second) == 200

    # Revoked through replica A's admin API: replica B refuses on its next request.
    listed = httpx.get(f"{a.url}/admin/keys", params={"agent": "bot-0"}, headers={"authorization": "Bearer adm"})
    (entry,) = listed.json()["data"]
    revoked = httpx.delete(f"{a.url}/admin/keys/{entry['id']}", headers={"authorization": "Bearer adm"})
    assert revoked.status_code == 200 and revoked.json()["published_to_redis"] is True
    assert wait_for(lambda: status(b.url, first) == 401, 1.0, "replica B refusing the revoked key") < 1.0
    assert status(a.url, first) == 401

    # Revoked with the CLI (no server involved): both replicas refuse within a second.
    assert keys("revoke", second[:12], cwd=workdir, env=env).returncode == 0
    for replica in (a, b):
        assert wait_for(lambda r=replica: status(r.url, second) == 401, 1.0, "refusing the CLI-revoked key") < 1.0
