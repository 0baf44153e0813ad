"""Config swaps without a restart: POST /admin/reload, a file change on disk, SIGHUP.

A new config is validated as a whole and swapped in atomically; an invalid one is refused with file, line
and reason while the old one keeps serving; a request in flight finishes on the config it started with.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.configs import with_test_identity
from tests.fakes.behaviours import SlowStream
from tests.harness import RouterProcess, wait_until, write_config

ADMIN = {"authorization": "Bearer admin-secret"}
USER = [{"role": "user", "content": "hello"}]


def config(base_url: str, which: str) -> str:
    """Two valid configs ('one', 'two') that route 'chat' to different upstream models through differently
    configured providers (so a swap replaces the provider adapter too)."""
    return with_test_identity(f"""
providers:
  fake-{which}: {{type: openai, base_url: {base_url}, api_key: sk-up, timeout: 5, headers: {{x-config: {which}}}}}
deployments:
  dep-{which}: {{provider: fake-{which}, model: up-{which}}}
models:
  chat: [dep-{which}]
""")


def invalid_config(base_url: str) -> str:
    return config(base_url, "one").replace("chat: [dep-one]", "chat: [dep-one]\n  broken: [no-such-deployment]")


def served_model(router) -> str:
    with router.client() as client:
        return client.chat.completions.create(model="chat", messages=USER).model




def test_admin_reload_swaps_a_valid_config_and_refuses_an_invalid_one(upstream, start_router):
    router = start_router(config(upstream.openai_base_url, "one"), admin_key="admin-secret")
    path = Path(router.settings.config)
    assert served_model(router) == "up-one"
    path.write_text(config(upstream.openai_base_url, "two"))
    with router.http() as http:
        ok = http.post("/admin/reload", headers=ADMIN)
        assert ok.status_code == 200 and ok.json()["changed"] is True
        assert served_model(router) == "up-two"
        version = ok.json()["version"]

        path.write_text(invalid_config(upstream.openai_base_url))
        refused = http.post("/admin/reload", headers=ADMIN)
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["code"] == "invalid_config" and error["version"] == version
        problem = error["problems"][0]
        assert problem["file"].endswith("config.yaml") and isinstance(problem["line"], int)
        assert "no-such-deployment" in problem["reason"]
        assert served_model(router) == "up-two", "the old config keeps serving"

        assert http.post("/admin/reload").status_code == 401, "the admin key is required"


def test_readyz_reports_a_refused_reload_until_a_good_one(upstream, start_router):
    router = start_router(config(upstream.openai_base_url, "one"), admin_key="admin-secret")
    path = Path(router.settings.config)
    with router.http() as http:
        before = http.get("/readyz", headers=ADMIN).json()
        assert before["status"] == "ready" and "config_reload" not in before["checks"]
        path.write_text(invalid_config(upstream.openai_base_url))
        assert http.post("/admin/reload", headers=ADMIN).status_code == 400
        after = http.get("/readyz", headers=ADMIN)
        assert after.status_code == 200, "the old config keeps serving: still in rotation"
        body = after.json()
        assert body["status"] == "degraded" and body["checks"]["config"] == before["checks"]["config"]
        report = body["checks"]["config_reload"]
        assert report.startswith("degraded: the last reload was refused at 20")
        assert re.search(r"config\.yaml:\d+: .*no-such-deployment", report), report
        assert served_model(router) == "up-one"

        path.write_text(config(upstream.openai_base_url, "two"))
        assert http.post("/admin/reload", headers=ADMIN).status_code == 200
        healed = http.get("/readyz", headers=ADMIN).json()
        assert healed["status"] == "ready" and "config_reload" not in healed["checks"]


def test_a_file_change_on_disk_is_picked_up(upstream, start_router):
    router = start_router(config(upstream.openai_base_url, "one"), watch_config=True, watch_interval=0.05)
    path = Path(router.settings.config)
    path.write_text(invalid_config(upstream.openai_base_url))
    assert wait_until(lambda: "no-such-deployment" in (router.state.last_reload_error or ""))
    assert served_model(router) == "up-one"
    path.write_text(config(upstream.openai_base_url, "two"))
    assert wait_until(lambda: served_model(router) == "up-two")


class _WriteOnFirstReload(logging.Handler):
    """Writes a newer config the moment the first reload reports success: after that reload read the files,
    before the watcher looks at them again (deterministic, unlike racing a sleep against the loader)."""

    def __init__(self, path: Path, text: str) -> None:
        super().__init__()
        self.path, self.text, self.done = path, text, False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.done and record.getMessage().startswith("config reloaded"):
            self.done = True
            self.path.write_text(self.text)


def test_a_write_that_lands_during_a_reload_is_loaded_too(upstream, start_router):
    base = upstream.openai_base_url
    router = start_router(config(base, "one"), watch_config=True, watch_interval=0.05)
    path = Path(router.settings.config)
    writer = _WriteOnFirstReload(path, config(base, "three"))
    reload_log = logging.getLogger("agent_router")
    reload_log.addHandler(writer)
    level = reload_log.level
    reload_log.setLevel(logging.INFO)
    try:
        path.write_text(config(base, "two"))
        assert wait_until(lambda: writer.done)
        assert wait_until(lambda: served_model(router) == "up-three", timeout=10)
    finally:
        reload_log.removeHandler(writer)
        reload_log.setLevel(level)


def test_a_rule_file_change_is_picked_up(upstream, start_router, tmp_path):
    second = "deployments:\n  dep-two: {provider: fake-one, model: up-two}\n"
    text = config(upstream.openai_base_url, "one").replace("deployments:\n", second, 1)
    rules = tmp_path / "rules"
    rules.mkdir()
    rule_file = rules / "10-main.yaml"
    rule_file.write_text("rules:\n  - name: everything\n    route: {deployments: [dep-one]}\n")
    router = start_router(text + "rules: rules/\n", watch_config=True, watch_interval=0.05)
    assert served_model(router) == "up-one"
    rule_file.write_text("rules:\n  - name: everything\n    route: {deployments: [dep-two]}\n")
    assert wait_until(lambda: served_model(router) == "up-two")


def test_a_request_in_flight_finishes_on_the_config_it_started_with(upstream, start_router):
    router = start_router(config(upstream.openai_base_url, "one"), admin_key="admin-secret")
    upstream.queue("up-one", SlowStream(delay=0.1, content="still the old config"))
    stream = router.client().chat.completions.create(model="chat", messages=USER, stream=True)
    first = next(iter(stream))
    Path(router.settings.config).write_text(config(upstream.openai_base_url, "two"))
    with router.http() as http:
        assert http.post("/admin/reload", headers=ADMIN).status_code == 200
    rest = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert (first.choices[0].delta.content or "") + rest == "still the old config"
    assert served_model(router) == "up-two"
    assert upstream.served("up-one")[0].headers["x-config"] == "one"


def test_config_swapped_under_load_never_fails_a_request(upstream, start_router):
    base = upstream.openai_base_url
    router = start_router(config(base, "one"), admin_key="admin-secret", watch_config=True, watch_interval=0.05)
    path = Path(router.settings.config)
    served: dict[str, int] = {}
    failures: list[str] = []
    lock = threading.Lock()
    done = threading.Event()

    def load() -> None:
        client = router.client()
        for i in range(400):
            if done.is_set() and i >= 20:
                return
            try:
                if i % 5 == 0:
                    chunks = list(client.chat.completions.create(model="chat", messages=USER, stream=True))
                    model = chunks[0].model
                    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                else:
                    model = client.chat.completions.create(model="chat", messages=USER).model
            except Exception as exc:
                with lock:
                    failures.append(f"{type(exc).__name__}: {exc}")
                continue
            with lock:
                served[model] = served.get(model, 0) + 1

    workers = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for worker in workers:
        worker.start()
    versions = set()
    refused = 0
    with router.http() as http:
        for swap in range(24):
            invalid = swap % 3 == 2
            text = invalid_config(base) if invalid else config(base, "two" if swap % 2 else "one")
            if swap % 4 == 3:  # now and then an atomic rename, as editors and deploy tools do
                tmp = write_config(text, str(path.parent), name=".config.yaml.tmp")
                os.replace(tmp, path)
            else:
                path.write_text(text)
            if swap % 2 == 0:
                response = http.post("/admin/reload", headers=ADMIN)
                assert response.status_code == (400 if invalid else 200), response.text
                refused += invalid
            else:
                time.sleep(0.15)  # the file watcher's turn
            versions.add(router.state.snapshot.version)
            time.sleep(0.05)
    done.set()
    for worker in workers:
        worker.join(30)
        assert not worker.is_alive()
    assert failures == []
    assert served.get("up-one", 0) > 0 and served.get("up-two", 0) > 0, served
    assert sum(served.values()) >= 80
    assert refused >= 4 and len(versions) >= 2


def test_sighup_reloads_the_serving_process(upstream, tmp_path):
    path = write_config(config(upstream.openai_base_url, "one"), str(tmp_path))
    router = RouterProcess(path, env={"AGENT_ROUTER_WATCH_CONFIG": "false"}).start()
    try:
        assert served_model(router) == "up-one"
        path.write_text(invalid_config(upstream.openai_base_url))
        router.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert router.proc.poll() is None, "SIGHUP must not end the process"
        assert served_model(router) == "up-one", "an invalid config is refused"
        path.write_text(config(upstream.openai_base_url, "two"))
        router.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: served_model(router) == "up-two")
        assert httpx.get(f"{router.url}/healthz").status_code == 200
    finally:
        code = router.stop()
    # uvicorn re-raises the SIGTERM it handled once its graceful shutdown is complete.
    assert code in (0, -signal.SIGTERM), router.output()
    assert "Application shutdown complete" in router.output()
    assert "config reload refused" in router.output()


@pytest.mark.parametrize("watch", [False])
def test_without_watching_a_file_change_is_ignored(upstream, start_router, watch):
    router = start_router(config(upstream.openai_base_url, "one"), watch_config=watch, watch_interval=0.05)
    Path(router.settings.config).write_text(config(upstream.openai_base_url, "two"))
    time.sleep(0.3)
    assert served_model(router) == "up-one"
