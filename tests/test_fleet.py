"""Two router replicas sharing Redis and PostgreSQL: a shared rate limit holds across them, and the usage
report adds up to exactly what the upstream served, token for token."""

from __future__ import annotations

import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import orjson

from tests.backing_services import REDIS_URL, fresh_database, redis_prefix
from tests.configs import TEST_KEY_HASH
from tests.fakes.behaviours import Text
from tests.fakes.upstream import FakeUpstream
from tests.harness import RouterProcess, write_config

ROLE_RPM = 40
PER_REPLICA = 30
PROMPT_TOKENS, COMPLETION_TOKENS = 13, 5


def fleet_config(base_url: str) -> str:
    return f"""
providers:
  fake: {{type: openai, base_url: {base_url}, api_key: sk-upstream-secret, timeout: 10}}
deployments:
  primary: {{provider: fake, model: up-primary, prices: {{input_per_million: 1000, output_per_million: 2000}}}}
models:
  fast: [primary]
roles:
  tester:
    models: ["*"]
    limits: {{requests_per_minute: {ROLE_RPM}}}
agents:
  test-agent: {{role: tester, keys: [{{hash: "{TEST_KEY_HASH}"}}]}}
"""


def _ask(job: tuple[openai.OpenAI, bool]) -> tuple[str, Any]:
    client, stream = job
    try:
        answer = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}],
                                                stream=stream)
        if stream:
            assert list(answer)
    except openai.RateLimitError as exc:
        return "refused", exc
    return "ok", None


def test_two_replicas_share_the_rate_limit_and_the_ledger(upstream: FakeUpstream, tmp_path: Any) -> None:
    upstream.always("up-primary", Text(usage=(PROMPT_TOKENS, COMPLETION_TOKENS)))
    config = write_config(fleet_config(upstream.openai_base_url), str(tmp_path))
    with redis_prefix() as prefix, fresh_database() as database_url:
        env = {"AGENT_ROUTER_REDIS_URL": REDIS_URL, "AGENT_ROUTER_REDIS_PREFIX": prefix,
               "AGENT_ROUTER_DATABASE_URL": database_url, "AGENT_ROUTER_WATCH_CONFIG": "false"}
        replicas = [RouterProcess(config, env=env) for _ in range(2)]
        try:
            for replica in replicas:
                replica.start()
            clients = [replica.client() for replica in replicas]
            with ThreadPoolExecutor(max_workers=8) as pool:
                # Every third request streams: its usage reaches the ledger through the hidden usage chunk.
                jobs = [(clients[i % 2], i % 3 == 0) for i in range(2 * PER_REPLICA)]
                outcomes = list(pool.map(_ask, jobs))
        finally:
            codes = [replica.stop() for replica in replicas]
        logs = "\n".join(replica.output() for replica in replicas)
        # uvicorn re-raises the SIGTERM it handled once the graceful shutdown (ledger drained) is complete.
        assert all(code in (0, -signal.SIGTERM) for code in codes), logs
        assert logs.count("Application shutdown complete") == 2, logs

        ok = [o for o, _ in outcomes if o == "ok"]
        refused = [exc for o, exc in outcomes if o == "refused"]
        assert len(ok) == ROLE_RPM, f"{len(ok)} passed a shared limit of {ROLE_RPM}\n{logs}"
        assert len(refused) == 2 * PER_REPLICA - ROLE_RPM
        for exc in refused:
            assert exc.status_code == 429 and 1 <= int(exc.response.headers["retry-after"]) <= 60
            assert exc.response.json()["error"]["code"] == "rate_limit_exceeded"
        served = upstream.served("up-primary")
        assert len(served) == ROLE_RPM

        report = subprocess.run([sys.executable, "-m", "router", "usage", "report", "--format", "json",
                                 "--database-url", database_url], capture_output=True, timeout=60, check=False)
        assert report.returncode == 0, report.stderr.decode()
        totals = orjson.loads(report.stdout)["totals"]
        burst = 2 * PER_REPLICA
        assert (totals["requests"], totals["refused"], totals["errors"]) == (burst, burst - ROLE_RPM, 0)
        assert (totals["attempts"], totals["failed_attempts"]) == (len(served), 0)
        assert totals["prompt_tokens"] == len(served) * PROMPT_TOKENS
        assert totals["completion_tokens"] == len(served) * COMPLETION_TOKENS
        assert (totals["estimated_requests"], totals["unpriced_requests"]) == (0, 0)
        # $1000 / $2000 per million tokens: 13 * 0.001 + 5 * 0.002 = $0.023 a request, summed exactly.
        assert totals["cost_usd"] == f"{len(served) * 0.023:.9f}"
