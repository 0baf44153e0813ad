"""The stores under partition: the real PostgreSQL and Redis behind a TCP proxy of the test's own that passes,
blackholes (connections open, nothing answers) or resets them.

- SIGTERM during a database blackhole ends the process within the drain timeout; what the database did not take
  is spilled to disk and written at the next start, exactly once, with the audit chain intact;
- a Redis connection reset is never a 500: limits fail open or closed as configured;
- ``/readyz`` tells the truth during a database blackhole, within about a second per call.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backing_services import REDIS_URL, fresh_database, redis_prefix, require_redis
from tests.configs import TEST_KEY, TEST_KEY_HASH
from tests.fakes.tcp_proxy import TcpFaultProxy
from tests.harness import RouterProcess, RouterServer, wait_until, write_config
from tests.ledger_helpers import MESSAGES, ledger_config, query, run_cli

TOOLS = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
BODY = {"model": "paid", "messages": MESSAGES, "tools": TOOLS}
"""Each request leaves a usage row and one audit event ('allowed' for its tool)."""


def proxied(url: str, proxy: TcpFaultProxy) -> str:
    """The database URL with its host and port replaced by the proxy's."""
    return url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/", 1)


def send(url: str, count: int, threads: int = 4) -> list[str]:
    """``count`` chat requests; the request ids of the answers (every one must be 200)."""
    def one(_: int) -> str:
        with httpx.Client(base_url=url, timeout=30, headers={"authorization": f"Bearer {TEST_KEY}"}) as http:
            answer = http.post("/v1/chat/completions", json=BODY)
        assert answer.status_code == 200, answer.text
        return answer.headers["x-request-id"]

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(count)))


def request_ids(url: str) -> Counter[str]:
    return Counter(row["request_id"] for row in query(url, "SELECT request_id FROM usage_records WHERE "
                                                          "kind = 'request'"))


def test_sigterm_during_a_database_blackhole_spills_and_the_next_start_writes_every_record_once(
        upstream: Any, tmp_path: Path) -> None:
    config = write_config(ledger_config(upstream.openai_base_url), str(tmp_path))
    spill = tmp_path / "spill.jsonl"
    drain = 3.0
    with fresh_database("ar_partition") as url, TcpFaultProxy("127.0.0.1", 5432) as proxy:
        env = {"AGENT_ROUTER_DATABASE_URL": proxied(url, proxy), "AGENT_ROUTER_LEDGER_FLUSH_INTERVAL": "0.2",
               "AGENT_ROUTER_LEDGER_DRAIN_TIMEOUT": str(drain), "AGENT_ROUTER_LEDGER_SPILL_FILE": str(spill),
               "AGENT_ROUTER_DATABASE_STATEMENT_TIMEOUT": "2"}
        first = RouterProcess(config, env=env).start()
        try:
            written = send(first.url, 150)
            assert wait_until(lambda: len(request_ids(url)) == 150, 20)
            proxy.set_mode("blackhole")
            queued = send(first.url, 150)
            assert first.proc is not None
            began = time.monotonic()
            first.proc.send_signal(signal.SIGTERM)
            try:
                code = first.proc.wait(40)  # a hang guard: before the fix it had not ended after 90 s
            except subprocess.TimeoutExpired:
                pytest.fail(f"SIGTERM did not end the router within 40 s (drain timeout {drain} s)")
            took = time.monotonic() - began
        finally:
            first.stop()
        assert code in (0, -15), first.output()
        assert took < drain + 20, took  # drain + settle + close steps; generous for a loaded machine
        assert spill.exists(), first.output()
        lines = spill.read_bytes().splitlines()
        assert 0 < len(lines) <= 150
        kept = tmp_path / "spill.copy"
        shutil.copy(spill, kept)

        proxy.set_mode("pass")
        second = RouterProcess(config, env=env).start()
        try:
            assert wait_until(lambda: len(request_ids(url)) == 300, 30), second.output()
        finally:
            assert second.stop() in (0, -15)
        assert not spill.exists() and len(list(tmp_path.glob("spill.jsonl.replayed-*"))) == 1

        # A process that died mid-replay leaves its claim behind: replaying it again doubles nothing.
        shutil.copy(kept, tmp_path / "spill.jsonl.replaying-1")
        third = RouterProcess(config, env=env).start()
        try:
            assert wait_until(lambda: not (tmp_path / "spill.jsonl.replaying-1").exists(), 20), third.output()
        finally:
            third.stop()

        ids = request_ids(url)
        assert set(ids) == set(written) | set(queued) and set(ids.values()) == {1}
        events = query(url, "SELECT request_id FROM audit_events WHERE action = 'allowed'")
        assert Counter(row["request_id"] for row in events) == Counter({rid: 1 for rid in ids})
        verified = run_cli("audit", "verify", url=url)
        assert verified.returncode == 0, verified.stderr
        assert "LOST" not in first.output()


def limits_config(base_url: str) -> str:
    return f"""
providers:
  fake: {{type: openai, base_url: {base_url}, api_key: sk-upstream, timeout: 5}}
deployments:
  primary: {{provider: fake, model: up-primary}}
models:
  fast: [primary]
agents:
  test-agent: {{role: tester, keys: [{{hash: "{TEST_KEY_HASH}"}}], limits: {{requests_per_minute: 1000000}}}}
roles:
  tester: {{models: ["*"], tools: {{allow: ["*"]}}}}
"""


@pytest.mark.parametrize("fail_open", [True, False], ids=["fail-open", "fail-closed"])
def test_redis_connection_resets_under_load_are_never_a_500(upstream: Any, tmp_path: Path, fail_open: bool) -> None:
    """The router as ``serve`` runs it (uvloop), on Redis through the proxy, while every connection is reset
    again and again under concurrent load."""
    require_redis()
    config = write_config(limits_config(upstream.openai_base_url), str(tmp_path))
    host, port = REDIS_URL.removeprefix("redis://").split("/")[0].split(":")
    with redis_prefix() as prefix, TcpFaultProxy(host, int(port)) as proxy:
        env = {"AGENT_ROUTER_REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0", "AGENT_ROUTER_REDIS_PREFIX": prefix,
               "AGENT_ROUTER_LIMITS_FAIL_OPEN": str(fail_open).lower()}
        router = RouterProcess(config, env=env).start()
        statuses: Counter[int] = Counter()
        bodies: list[str] = []
        stop = threading.Event()

        def load() -> None:
            body = {"model": "fast", "messages": MESSAGES}
            with httpx.Client(base_url=router.url, timeout=30,
                              headers={"authorization": f"Bearer {TEST_KEY}"}) as http:
                for _ in range(2000):  # bounded even if the resets never end
                    if stop.is_set():
                        return
                    answer = http.post("/v1/chat/completions", json=body)
                    statuses[answer.status_code] += 1
                    if answer.status_code != 200:
                        bodies.append(answer.text)

        try:
            with ThreadPoolExecutor(6) as pool:
                workers = [pool.submit(load) for _ in range(6)]
                assert wait_until(lambda: statuses[200] >= 50, 20)
                for _ in range(15):
                    proxy.reset()
                    before = sum(statuses.values())
                    wait_until(lambda before=before: sum(statuses.values()) >= before + 40, 5)
                stop.set()
                for worker in workers:
                    worker.result(60)
            with httpx.Client(base_url=router.url, timeout=30, headers={"authorization": f"Bearer {TEST_KEY}"}) as http:
                body = {"model": "fast", "messages": MESSAGES}
                assert wait_until(lambda: http.post("/v1/chat/completions", json=body).status_code == 200, 10)
        finally:
            stop.set()
            output = router.output()
            router.stop()
        assert statuses[500] == 0, (statuses, bodies[:3], output[-3000:])
        allowed = {200} if fail_open else {200, 503}
        assert set(statuses) <= allowed, (statuses, bodies[:3])
        assert statuses[200] >= 50
        for text in bodies:
            assert '"error"' in text and "Traceback" not in text
        assert "Traceback" not in output, output[-3000:]


def test_readyz_tells_a_database_blackhole_within_a_second_per_call(upstream: Any, tmp_path: Path) -> None:
    config = write_config(ledger_config(upstream.openai_base_url), str(tmp_path))
    with fresh_database("ar_ready") as url, TcpFaultProxy("127.0.0.1", 5432) as proxy:
        router = RouterServer(config, database_url=proxied(url, proxy), admin_key="admin-secret",
                              keys_refresh_interval=0.2, keys_max_staleness=6, ledger_flush_interval=0.1,
                              database_statement_timeout=1.5, ledger_drain_timeout=2,
                              ledger_spill_file=str(tmp_path / "spill.jsonl")).start()
        try:
            http = router.http(headers={"x-admin-key": "admin-secret"})  # /readyz shows its checks to the admin
            made = http.post("/admin/keys", json={"agent": "stored-bot", "role": "tester"},
                             headers={"authorization": "Bearer admin-secret"})
            assert made.status_code == 201, made.text
            assert wait_until(lambda: http.get("/readyz").json()["status"] == "ready", 10)
            ready = http.get("/readyz").json()["checks"]
            assert ready["ledger"].startswith("ok (") and ready["keys"].startswith("ok (")

            proxy.set_mode("blackhole")
            send(router.url, 5)
            seen: list[dict[str, Any]] = []
            slowest = 0.0

            def probe() -> bool:
                nonlocal slowest
                began = time.monotonic()
                answer = http.get("/readyz", timeout=10)
                slowest = max(slowest, time.monotonic() - began)
                seen.append({"code": answer.status_code, **answer.json()})
                return answer.status_code == 503 and answer.json()["checks"]["keys"].startswith("down")

            assert wait_until(probe, 20), seen[-1]
            last = seen[-1]["checks"]
            assert last["ledger"].startswith("degraded: ") and "5 requests waiting" in last["ledger"], last
            assert any(entry["status"] == "degraded" and entry["checks"]["keys"].startswith("degraded")
                       for entry in seen), seen
            assert slowest < 5, slowest  # a hang guard; /readyz itself never waits on a store

            proxy.set_mode("pass")
            assert wait_until(lambda: http.get("/readyz").json()["status"] == "ready", 30), \
                http.get("/readyz").json()
            assert wait_until(lambda: len(request_ids(url)) == 5, 10)
        finally:
            router.stop()
