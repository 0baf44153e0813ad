"""The kill switch end to end: an operator freezes an agent or a role and every key of it is refused at once, on
the model plane (chat, Messages, Responses, through the official openai and anthropic SDKs) and on the MCP
gateway (the official mcp client), while other agents carry on; unfreezing restores it; the freeze outlives a
restart; each freeze, unfreeze and refused request is an audit event of a chain that still verifies."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import anyio
import httpx
import openai
import orjson
import pytest

from tests.fakes.mcp_fake import FakeMcpServer
from tests.harness import RouterServer, free_port, wait_until, write_config
from tests.mcp_helpers import gateway_config, mcp_session, text_of

pytestmark = pytest.mark.timeout(120)

ADMIN = "freeze-admin-key"
ROLES = """
  worker:
    models: ["*"]
    mcp: {servers: [github], tools: {allow: ["github:get_issue", "github:echo"]}}
  lead:
    models: ["*"]
    mcp: {servers: [github], tools: {allow: ["github:get_issue"]}}
"""
AGENTS = (("alice", "worker"), ("bob", "worker"), ("carol", "lead"))
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
MCP_ACCEPT = {"accept": "application/json, text/event-stream"}


def _servers(url: str) -> str:
    return f"""  github:
    url: "{url}"
    timeout: 5
    credentials:
      worker: {{headers: {{Authorization: "Bearer worker-token-0000"}}}}
      lead: {{headers: {{Authorization: "Bearer lead-token-00000"}}}}
"""


@pytest.fixture(scope="module")
def github(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeMcpServer]:
    with FakeMcpServer.start_http(tmp_path_factory.mktemp("github"), "github") as server:
        yield server


@pytest.fixture(scope="module")
def config(github: FakeMcpServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(gateway_config(_servers(github.url), ROLES, AGENTS), str(tmp_path_factory.mktemp("cfg")))


@pytest.fixture(scope="module")
def router(config: Path) -> Iterator[RouterServer]:
    server = RouterServer(config, admin_key=ADMIN).start()
    yield server
    server.stop()


def _admin(router: RouterServer) -> httpx.Client:
    return httpx.Client(base_url=router.url, timeout=10, headers={"authorization": f"Bearer {ADMIN}"})


def _chat(router: RouterServer, agent: str) -> Any:
    return router.client(f"{agent}-key").chat.completions.create(model="m", messages=[{"role": "user",
                                                                                       "content": "hi"}])


def _messages(router: RouterServer, agent: str) -> Any:
    return router.anthropic(f"{agent}-key").messages.create(model="m", max_tokens=16,
                                                            messages=[{"role": "user", "content": "hi"}])


def _responses(router: RouterServer, agent: str) -> Any:
    return router.client(f"{agent}-key").responses.create(model="m", input="hi")


def _mcp_initialize(router: RouterServer, agent: str) -> httpx.Response:
    with httpx.Client(base_url=router.url, timeout=10) as http:
        return http.post("/mcp/github", json=INIT, headers={**MCP_ACCEPT, "authorization": f"Bearer {agent}-key"})


def _mcp_call(router: RouterServer, agent: str) -> str:
    async def body() -> str:
        async with mcp_session(f"{router.url}/mcp/github", f"{agent}-key") as session:
            return text_of(await session.call_tool("get_issue", {"number": 3}))

    return str(anyio.run(body))


def _assert_refused_everywhere(router: RouterServer, agent: str, code: str) -> None:
    for call in (_chat, _responses):
        with pytest.raises(openai.PermissionDeniedError) as refused:
            call(router, agent)
        assert refused.value.status_code == 403
        assert refused.value.response.json()["error"]["code"] == code
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        _messages(router, agent)
    body = denied.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "permission_error"
    assert code in body["error"]["message"]
    mcp = _mcp_initialize(router, agent)
    assert mcp.status_code == 403, mcp.text
    assert mcp.json()["jsonrpc"] == "2.0" and code in mcp.json()["error"]["message"]


def _assert_served_everywhere(router: RouterServer, agent: str) -> None:
    assert _chat(router, agent).choices
    assert _messages(router, agent).content
    assert _responses(router, agent).output
    assert _mcp_call(router, agent) == "issue 3"


def test_a_frozen_agent_is_refused_on_every_plane_and_served_again_once_unfrozen(router: RouterServer) -> None:
    _assert_served_everywhere(router, "alice")
    with _admin(router) as admin:
        frozen = admin.post("/admin/freeze", json={"agent": "alice", "reason": "deleting prod"})
        assert frozen.status_code == 200 and frozen.json()["new"] is True, frozen.text
        try:
            _assert_refused_everywhere(router, "alice", "agent_frozen")
            _assert_served_everywhere(router, "bob")  # the same role, another agent: untouched
            listed = admin.get("/admin/freeze").json()["data"]
            assert [(f["kind"], f["name"], f["reason"]) for f in listed] == [("agent", "alice", "deleting prod")]
            checks = admin.get("/readyz").json()["checks"]
            assert checks["freezes"].startswith("ok (1 agent(s) and 0 role(s) frozen")
        finally:
            lifted = admin.delete("/admin/freeze", params={"agent": "alice"})
        assert lifted.status_code == 200 and lifted.json()["frozen"] is False
        assert admin.delete("/admin/freeze", params={"agent": "alice"}).status_code == 404
    _assert_served_everywhere(router, "alice")


def test_a_frozen_role_refuses_every_agent_of_it(router: RouterServer) -> None:
    with _admin(router) as admin:
        assert admin.post("/admin/freeze", json={"role": "worker"}).status_code == 200
        try:
            for agent in ("alice", "bob"):
                _assert_refused_everywhere(router, agent, "role_frozen")
            _assert_served_everywhere(router, "carol")
        finally:
            assert admin.delete("/admin/freeze", params={"role": "worker"}).status_code == 200
    _assert_served_everywhere(router, "bob")


def test_an_open_mcp_session_is_refused_at_its_next_message(router: RouterServer, github: FakeMcpServer) -> None:
    async def body() -> tuple[str, BaseException | None]:
        async with mcp_session(f"{router.url}/mcp/github", "alice-key") as session:
            before = text_of(await session.call_tool("echo", {"value": "first"}))
            with _admin(router) as admin:
                assert admin.post("/admin/freeze", json={"agent": "alice"}).status_code == 200
            failure = None
            try:
                with anyio.fail_after(10):
                    await session.call_tool("echo", {"value": "after-freeze"})
            except Exception as exc:  # what the SDK raises for a 403 is its own business; that it raises is ours
                failure = exc
            return before, failure

    try:
        before, failure = anyio.run(body)
    finally:
        with _admin(router) as admin:
            admin.delete("/admin/freeze", params={"agent": "alice"})
    assert before == "\"first\""
    assert failure is not None and not isinstance(failure, TimeoutError), failure
    assert not any("after-freeze" in orjson.dumps(call).decode() for call in github.tool_calls("echo"))


def test_bad_admin_requests_are_refused(router: RouterServer) -> None:
    with _admin(router) as admin:
        assert admin.post("/admin/freeze", json={"agent": "a", "role": "b"}).status_code == 400
        assert admin.post("/admin/freeze", json={}).status_code == 400
        assert admin.post("/admin/freeze", json={"agent": "a", "by": "x"}).status_code == 400
        assert admin.delete("/admin/freeze").status_code == 400
    with httpx.Client(base_url=router.url, timeout=10) as http:
        assert http.post("/admin/freeze", json={"agent": "alice"}).status_code == 401
        assert http.post("/admin/freeze", json={"agent": "alice"},
                         headers={"authorization": "Bearer alice-key"}).status_code == 401


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "router", *args], capture_output=True, text=True, timeout=60,
                          check=False, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path.cwd())})


def test_a_cli_freeze_survives_a_restart_and_every_step_is_audited(config: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'records.db'}"
    frozen = _cli("agents", "freeze", "alice", "--reason", "incident 42", "--database-url", url)
    assert frozen.returncode == 0, frozen.stderr
    listed = _cli("agents", "frozen", "--json", "--database-url", url)
    assert [orjson.loads(line)["name"] for line in listed.stdout.splitlines()] == ["alice"]
    for _ in range(2):  # a restart keeps the freeze: it is in the records database
        server = RouterServer(config, database_url=url).start()
        try:
            with pytest.raises(openai.PermissionDeniedError) as refused:
                _chat(server, "alice")
            assert "incident 42" in refused.value.message
            assert _chat(server, "bob").choices
        finally:
            server.stop()
    server = RouterServer(config, database_url=url).start()
    try:
        assert _cli("agents", "unfreeze", "alice", "--database-url", url).returncode == 0
        began = time.monotonic()
        # Without Redis another process sees the change at its next database read (keys_refresh_interval, 1 s).
        assert wait_until(lambda: _served(server, "alice"), timeout=3), "still refused 3 s after the unfreeze"
        assert time.monotonic() - began < 2.0
        assert _cli("agents", "unfreeze", "alice", "--database-url", url).returncode == 1  # not frozen now
    finally:
        server.stop()
    verify = _cli("audit", "verify", "--database-url", url)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    events = _audit_events(url)
    actions = [(e["action"], e["agent"]) for e in events]
    assert ("freeze", "alice") in actions and ("unfreeze", "alice") in actions
    refusals = [e for e in events if e["action"] == "frozen"]
    assert all(e["agent"] == "alice" and e["rule"] == "agent:alice" and "incident 42" in e["reason"]
               for e in refusals)
    assert len(refusals) >= 2  # one per run, and more while the last run waited for the unfreeze


def _served(server: RouterServer, agent: str) -> bool:
    try:
        return bool(_chat(server, agent).choices)
    except openai.PermissionDeniedError:
        return False


def _audit_events(url: str) -> list[dict[str, Any]]:
    from router.store.database import Database

    database = Database(url)
    try:
        return database.fetchall("SELECT action, agent, role, rule, reason FROM audit_events ORDER BY seq")
    finally:
        database.close()


def test_with_redis_unreachable_a_freeze_still_reaches_the_router_through_the_database(config: Path) -> None:
    server = RouterServer(config, admin_key=ADMIN, redis_url=f"redis://127.0.0.1:{free_port()}/0").start()
    try:
        with _admin(server) as admin:
            assert admin.post("/admin/freeze", json={"agent": "alice"}).json()["published_to_redis"] is False
            with pytest.raises(openai.PermissionDeniedError):
                _chat(server, "alice")
            checks = admin.get("/readyz").json()["checks"]
            assert checks["freezes"].startswith("degraded: 1 agent(s)"), checks
            # Unfreezing needs Redis (it clears the fleet's copy first): refused, alice stays frozen.
            lifted = admin.delete("/admin/freeze", params={"agent": "alice"})
            assert lifted.status_code == 503 and "still frozen" in lifted.text
        with pytest.raises(openai.PermissionDeniedError):
            _chat(server, "alice")
    finally:
        server.stop()
