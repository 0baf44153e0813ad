"""Agent identity end to end: API keys -> agent -> role, model access by role, the admin keys API.

Real router, real fake upstream, the official openai SDK (httpx for the admin API and raw headers).
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import openai
import pytest

from router.config import load_snapshot
from router.context import RequestContext
from router.errors import IdentityUnavailable, PermissionDenied
from router.identity import ConflictingKeys, Identity, model_allowed, presented_key
from router.keys import store
from router.keys.material import hash_key, parse_expiry
from router.store.database import Database
from tests.configs import openai_config
from tests.fakes.behaviours import Text
from tests.harness import free_port, wait_until, write_config

USER = [{"role": "user", "content": "hello"}]
NARROW_KEY = "ar-narrow-0123456789abcdefghijklmnop"
OLD_KEY = "ar-old-0123456789abcdefghijklmnopqrs"
EXTRA = f"""
roles:
  narrow: {{models: ["fa*"]}}
agents:
  narrow-bot: {{role: narrow, keys: [{{hash: "{hash_key(NARROW_KEY)}", name: laptop}}]}}
  old-bot: {{role: tester, keys: [{{hash: "{hash_key(OLD_KEY)}", expires: "2020-01-01T00:00:00Z"}}]}}
"""


@pytest.fixture
def config(upstream: Any) -> str:
    return openai_config(upstream.openai_base_url, EXTRA)


@pytest.fixture
def router(config: str, start_router: Any) -> Any:
    return start_router(config, admin_key="adm")


def ask(router: Any, key: str, model: str = "fast") -> Any:
    return router.client(api_key=key).chat.completions.create(model=model, messages=USER)


def admin(router: Any, key: str = "adm") -> httpx.Client:
    return httpx.Client(base_url=router.url, timeout=10, headers={"authorization": f"Bearer {key}"})


# -- authentication ------------------------------------------------------------------------------------------
def test_missing_key_is_401_with_an_openai_error(router: Any, upstream: Any) -> None:
    with router.http() as http:
        resp = http.post("/v1/chat/completions", json={"model": "fast", "messages": USER})
    assert resp.status_code == 401
    error = resp.json()["error"]
    assert error["type"] == "authentication_error" and "no API key" in error["message"]
    with router.http() as http:
        resp = http.post("/v1/chat/completions", headers={"authorization": "Basic dXNlcjpwdw=="},
                         json={"model": "fast", "messages": USER})
    assert resp.status_code == 401 and "no API key" in resp.json()["error"]["message"]
    assert upstream.served() == []


def test_unknown_key_is_401_and_never_echoed(router: Any, upstream: Any) -> None:
    secret = "ar-not-a-real-key-but-secret-looking"
    with pytest.raises(openai.AuthenticationError) as info:
        ask(router, secret)
    assert "not known" in info.value.message and secret not in info.value.response.text
    assert upstream.served() == []


def test_bearer_and_azure_style_api_key_header_both_work(router: Any, upstream: Any) -> None:
    upstream.queue("up-primary", Text("one"), Text("two"))
    assert ask(router, "test-key").choices[0].message.content == "one"
    with router.http() as http:
        resp = http.post("/v1/chat/completions", headers={"api-key": NARROW_KEY},
                         json={"model": "fast", "messages": USER})
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "two"
    assert resp.headers["x-agent-router-agent"] == "narrow-bot"


def test_anthropic_style_x_api_key_header_works_and_disagreeing_keys_are_refused(router: Any,
                                                                                  upstream: Any) -> None:
    upstream.queue("up-primary", Text("via x-api-key"), Text("same key twice"))
    body = {"model": "fast", "messages": USER}
    with router.http() as http:
        resp = http.post("/v1/chat/completions", headers={"x-api-key": NARROW_KEY}, json=body)
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["message"]["content"] == "via x-api-key"
        assert resp.headers["x-agent-router-agent"] == "narrow-bot"
        assert [m["id"] for m in http.get("/v1/models", headers={"x-api-key": NARROW_KEY}).json()["data"]] == \
            ["fast"]
        same = http.post("/v1/chat/completions", json=body,
                         headers={"authorization": f"Bearer {NARROW_KEY}", "x-api-key": NARROW_KEY})
        assert same.status_code == 200, same.text
        for headers in ({"authorization": "Bearer test-key", "x-api-key": NARROW_KEY},
                        {"api-key": "test-key", "x-api-key": NARROW_KEY}):
            refused = http.post("/v1/chat/completions", headers=headers, json=body)
            assert refused.status_code == 401, (headers, refused.text)
            message = refused.json()["error"]["message"]
            assert "different API keys" in message and NARROW_KEY not in refused.text
    assert len(upstream.served()) == 2


def test_expired_config_key_is_refused(router: Any, upstream: Any) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        ask(router, OLD_KEY)
    assert "expired" in info.value.message
    assert upstream.served() == []


# -- model access by role ------------------------------------------------------------------------------------
def test_model_outside_the_role_is_403_and_never_reaches_upstream(router: Any, upstream: Any) -> None:
    with pytest.raises(openai.PermissionDeniedError) as info:
        ask(router, NARROW_KEY, model="both")
    body = info.value.response.json()["error"]
    assert body["code"] == "model_not_allowed" and body["param"] == "model"
    assert "narrow" in body["message"] and "both" in body["message"]
    assert upstream.served() == []
    assert ask(router, NARROW_KEY, model="fast").choices


def test_unknown_model_stays_404_for_a_role_that_allows_everything(router: Any) -> None:
    with pytest.raises(openai.NotFoundError):
        ask(router, "test-key", model="no-such-model")


def test_model_list_shows_only_what_the_caller_may_use(router: Any) -> None:
    assert [m.id for m in router.client(api_key=NARROW_KEY).models.list()] == ["fast"]
    assert [m.id for m in router.client().models.list()] == ["both", "fast"]
    with pytest.raises(openai.NotFoundError):
        router.client(api_key=NARROW_KEY).models.retrieve("both")
    with pytest.raises(openai.AuthenticationError):
        router.client(api_key="ar-nope").models.list()
    with router.http() as http:
        assert http.get("/v1/models").status_code == 401


def test_refusals_leave_audit_events_on_the_request(config: str, tmp_path: Any) -> None:
    snapshot = load_snapshot(str(write_config(config, str(tmp_path))))
    identity = Identity()
    ctx = RequestContext(request_id="req-1", snapshot=snapshot, payload={}, stream=False, requested_model="both")
    asyncio.run(identity.authenticate({"authorization": f"Bearer {NARROW_KEY}"}, ctx))
    assert (ctx.agent, ctx.role, ctx.key_id) == ("narrow-bot", "narrow", "config:narrow-bot:laptop")
    with pytest.raises(PermissionDenied):
        identity.authorize_model(ctx)
    (event,) = ctx.audit_events
    assert event == {"ts": event["ts"], "request_id": "req-1", "agent": "narrow-bot", "role": "narrow",
                     "model": "both", "tool": None, "action": "model_denied", "stage": "request", "rule": ["fa*"],
                     "reason": "role 'narrow' may not use model 'both'", "policy_version": snapshot.version}
    failed = RequestContext(request_id="req-2", snapshot=snapshot, payload={}, stream=False, requested_model="")
    with pytest.raises(Exception, match="not known"):
        asyncio.run(identity.authenticate({"api-key": "ar-wrong"}, failed))
    assert failed.audit_events[0]["action"] == "auth_failed" and failed.audit_events[0]["agent"] is None


def test_pure_helpers() -> None:
    assert presented_key({"authorization": "Bearer  k1 "}) == "k1"
    assert presented_key({"authorization": "Basic abc", "api-key": "k2"}) == "k2"
    assert presented_key({"authorization": "Bearer "}) is None
    assert presented_key({"x-api-key": " k3 "}) == "k3"
    with pytest.raises(ConflictingKeys):
        presented_key({"authorization": "Bearer k1", "x-api-key": "k3"})
    assert model_allowed(["gpt-*", "claude"], "gpt-4o") and not model_allowed(["gpt-*", "claude"], "claude-2")
    assert not model_allowed([], "fast")
    assert parse_expiry("2027-01-01").isoformat() == "2027-01-01T00:00:00+00:00"
    assert 29.9 * 86400 < parse_expiry("30d").timestamp() - time.time() <= 30 * 86400
    for bad in ("2001-01-01", "soon", "0d"):
        with pytest.raises(ValueError):
            parse_expiry(bad)


# -- admin API -----------------------------------------------------------------------------------------------
def test_admin_api_creates_lists_and_revokes_keys(router: Any, upstream: Any) -> None:
    with admin(router) as http:
        created = http.post("/admin/keys", json={"agent": "new-bot", "role": "narrow", "name": "ci"})
        assert created.status_code == 201, created.text
        entry = created.json()
        key = entry["key"]
        assert key.startswith("ar-") and len(key) >= 40 and entry["id"].startswith("key_")
        assert ask(router, key).choices  # usable at once on this replica
        assert [m.id for m in router.client(api_key=key).models.list()] == ["fast"]

        listed = http.get("/admin/keys").json()["data"]
        mine = [k for k in listed if k["id"] == entry["id"]]
        assert mine and (mine[0]["agent"], mine[0]["effective_role"], mine[0]["name"]) == ("new-bot", "narrow", "ci")
        assert key not in created.request.url.path and all(key not in str(k) for k in listed)
        assert all("key_hash" not in k for k in listed)
        assert {"config:narrow-bot:laptop", "config:test-agent:0"} <= {k["id"] for k in listed}
        assert [k["agent"] for k in http.get("/admin/keys", params={"agent": "new-bot"}).json()["data"]] == \
            ["new-bot"]

        revoked = http.delete(f"/admin/keys/{entry['id']}")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    with pytest.raises(openai.AuthenticationError) as info:
        ask(router, key)
    assert "revoked" in info.value.message


def test_admin_api_refuses_keys_that_could_never_work(router: Any) -> None:
    with admin(router) as http:
        for body, needle in [({"agent": "stranger"}, "not in the config"),
                             ({"agent": "stranger", "role": "root"}, "does not exist"),
                             ({"agent": "x", "role": "narrow", "expires": "yesterday"}, "expiry"),
                             ({"agent": "bad name", "role": "narrow"}, "not valid"),
                             ({"role": "narrow"}, "agent is required")]:
            resp = http.post("/admin/keys", json=body)
            assert resp.status_code == 400 and needle in resp.json()["error"]["message"], (body, resp.text)
        assert http.delete("/admin/keys/key_doesnotexist").status_code == 404
        assert http.delete("/admin/keys/config:test-agent:0").status_code == 400


def test_admin_api_needs_the_admin_key(router: Any, config: str, start_router: Any) -> None:
    with admin(router, key="wrong") as http:
        resp = http.get("/admin/keys")
        assert resp.status_code == 401 and resp.json()["error"]["type"] == "authentication_error"
    with admin(router, key="test-key") as http:
        assert http.post("/admin/keys", json={"agent": "x", "role": "narrow"}).status_code == 401
    without = start_router(config)
    with admin(without) as http:
        assert http.get("/admin/keys").status_code == 404


def test_database_key_expires(router: Any) -> None:
    with admin(router) as http:
        created = http.post("/admin/keys", json={"agent": "brief-bot", "role": "tester", "expires": "1s"}).json()
    assert ask(router, created["key"]).choices
    expires = datetime.fromisoformat(created["expires_at"]).timestamp()
    assert wait_until(lambda: time.time() > expires, timeout=3)
    with pytest.raises(openai.AuthenticationError, match="expired"):
        ask(router, created["key"])


def test_a_key_serves_until_its_expiry_to_the_fraction_of_a_second(router: Any) -> None:
    """An expiry at second N + 0.9 must still let the key in during second N (it was cut to whole seconds)."""
    expires = math.floor(time.time()) + 2.9
    moment = datetime.fromtimestamp(expires, UTC).isoformat()
    with admin(router) as http:
        created = http.post("/admin/keys", json={"agent": "brief-bot", "role": "tester", "expires": moment}).json()
    assert datetime.fromisoformat(created["expires_at"]).timestamp() == pytest.approx(expires, abs=1e-6)
    assert wait_until(lambda: time.time() >= math.floor(expires), timeout=4)
    assert time.time() < expires - 0.5
    assert ask(router, created["key"]).choices
    assert wait_until(lambda: time.time() > expires, timeout=2)
    with pytest.raises(openai.AuthenticationError, match="expired"):
        ask(router, created["key"])


def test_key_whose_role_is_not_in_the_config_is_refused_with_a_reason(router: Any) -> None:
    database = Database(router.state.settings.database_url)
    try:
        key, _ = store.create_key(database, "ghost", "vanished-role", None, None)
    finally:
        database.close()
    deadline = time.monotonic() + 5
    while True:  # the router reloads database keys every second
        try:
            ask(router, key)
        except openai.PermissionDeniedError as exc:
            assert "vanished-role" in exc.message and exc.response.json()["error"]["code"] == "unknown_role"
            break
        except openai.AuthenticationError:
            assert time.monotonic() < deadline, "the database key never became known"
            time.sleep(0.1)


# -- fail closed ---------------------------------------------------------------------------------------------
def test_redis_down_refuses_database_keys_but_not_config_keys(config: str, start_router: Any,
                                                              upstream: Any) -> None:
    router = start_router(config, admin_key="adm", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with admin(router) as http:
        key = http.post("/admin/keys", json={"agent": "db-bot", "role": "tester"}).json()["key"]
    with pytest.raises(openai.InternalServerError) as info:
        ask(router, key)
    assert info.value.status_code == 503
    assert info.value.response.json()["error"]["code"] == "identity_unavailable"
    assert "revoked" in info.value.message and "Redis" in info.value.message
    assert upstream.served() == []
    assert ask(router, "test-key").choices  # config keys are withdrawn by config, not by Redis


def test_unreadable_key_store_refuses_database_keys(tmp_path: Any, config: str) -> None:
    snapshot = load_snapshot(str(write_config(config, str(tmp_path))))

    async def scenario() -> None:
        database = Database(f"sqlite:///{tmp_path / 'keys.db'}")
        identity = Identity(database, refresh_interval=0.05, max_staleness=0.1)
        await identity.start()
        key, _ = await identity.create_key("db-bot", "tester", None, None)
        ctx = RequestContext(request_id="r", snapshot=snapshot, payload={}, stream=False, requested_model="fast")
        await identity.authenticate({"api-key": key}, ctx)
        assert ctx.agent == "db-bot"
        database.close()  # from now on every reload fails
        await asyncio.sleep(0.4)
        with pytest.raises(IdentityUnavailable):
            await identity.authenticate({"api-key": key}, ctx)
        assert identity.health()["keys"].startswith("down: key store unreadable")
        await identity.authenticate({"api-key": "test-key"}, ctx)  # config keys need no store
        await identity.close()

    asyncio.run(scenario())
