"""Routing rules through the real router: which rule and deployment served, what the upstream received,
``/v1/route/explain``, and the ``explain`` / ``check`` commands."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.configs import openai_config
from tests.fakes.behaviours import Error
from tests.fakes.upstream import FakeUpstream
from tests.harness import RouterServer

REPO = Path(__file__).resolve().parent.parent

RULES = """
rules:
  - name: premium
    when: {headers: {tier: premium}}
    route: {deployments: [secondary, primary]}
  - name: tools-capped
    when: {model: fast, any: [{tools: true}, {metadata: {job: capped}}]}
    route: {deployments: [primary], set: {temperature: 0}, cap: {max_tokens: 5}}
  - name: streams
    when: {stream: true, model: 'f*'}
    route: {deployments: [secondary]}
  - name: long-prompts
    when: {prompt_tokens: {min: 3000}}
    route: {strategy: cheapest, pool: [primary, secondary]}
  - name: ab-by-user
    when: {model: ab}
    route:
      split: [{deployment: primary, weight: 50}, {deployment: secondary, weight: 50}]
      sticky: user
"""

ROLES = f"""
rules: routing_rules
roles:
  writer: {{models: ["*"], tools: {{allow: ["*"]}}}}
agents:
  tester: {{role: writer, keys: [{{hash: "sha256:{hashlib.sha256(b'test-key').hexdigest()}"}}]}}
"""
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
HI = [{"role": "user", "content": "hi"}]


def rules_config(tmp_path: Path, upstream: FakeUpstream, rules: str = RULES) -> str:
    (tmp_path / "routing_rules").mkdir(exist_ok=True)
    (tmp_path / "routing_rules" / "10-test.yaml").write_text(rules)
    return openai_config(upstream.openai_base_url, ROLES)


@pytest.fixture
def router(tmp_path: Path, upstream: FakeUpstream, start_router: Callable[..., RouterServer]) -> RouterServer:
    return start_router(rules_config(tmp_path, upstream))


def send(router: RouterServer, **kwargs: Any) -> Any:
    kwargs.setdefault("messages", HI)
    return router.client().chat.completions.with_raw_response.create(**kwargs)


def test_header_rule_picks_its_chain(router: RouterServer, upstream: FakeUpstream) -> None:
    raw = send(router, model="fast", extra_headers={"x-agent-router-tier": "premium"})
    assert raw.headers["x-agent-router-rule"] == "premium"
    assert raw.headers["x-agent-router-deployment"] == "secondary"
    assert [r.body["model"] for r in upstream.served()] == ["up-secondary"]


def test_route_params_reach_the_upstream(router: RouterServer, upstream: FakeUpstream) -> None:
    raw = send(router, model="fast", metadata={"job": "capped"}, temperature=1.5, max_tokens=500)
    assert raw.headers["x-agent-router-rule"] == "tools-capped"
    body = upstream.served("up-primary")[0].body
    assert (body["temperature"], body["max_tokens"]) == (0, 5)
    assert raw.parse().choices[0].message.content


def test_rule_chain_falls_back_in_order(router: RouterServer, upstream: FakeUpstream) -> None:
    upstream.always("up-secondary", Error(503))
    raw = send(router, model="fast", extra_headers={"x-agent-router-tier": "premium"})
    assert raw.headers["x-agent-router-rule"] == "premium"
    assert raw.headers["x-agent-router-deployment"] == "primary"
    served = [r.body["model"] for r in upstream.served()]
    assert (served[0], served[-1]) == ("up-secondary", "up-primary")  # (the executor may retry in between)


def test_stream_condition(router: RouterServer, upstream: FakeUpstream) -> None:
    with router.client().chat.completions.with_streaming_response.create(model="fast", messages=HI,
                                                                         stream=True) as response:
        assert response.headers["x-agent-router-rule"] == "streams"
        assert response.headers["x-agent-router-deployment"] == "secondary"
        text = "".join(chunk.choices[0].delta.content or "" for chunk in response.parse() if chunk.choices)
    assert text
    assert upstream.served("up-secondary")[0].body["stream"] is True


def test_long_prompt_goes_where_it_fits(router: RouterServer, upstream: FakeUpstream) -> None:
    """primary has an 8192-token window, secondary 128000; the prompt is about 9000 tokens."""
    long = [{"role": "user", "content": "lorem ipsum dolor " * 3000}]
    raw = send(router, model="both", messages=long)
    assert raw.headers["x-agent-router-rule"] == "long-prompts"
    assert raw.headers["x-agent-router-deployment"] == "secondary"
    raw = send(router, model="both", messages=[{"role": "user", "content": "lorem ipsum dolor " * 300}])
    assert raw.headers["x-agent-router-rule"] == "model:both"


def test_sticky_split_by_user(router: RouterServer, upstream: FakeUpstream) -> None:
    arms: dict[str, set[str]] = {}
    for i in range(12):
        user = f"user-{i % 6}"
        raw = send(router, model="ab", user=user)
        assert raw.headers["x-agent-router-rule"] == "ab-by-user"
        arms.setdefault(user, set()).add(raw.headers["x-agent-router-deployment"])
    assert all(len(seen) == 1 for seen in arms.values())
    # The hash of rule+user is deterministic: these six users are spread over both arms.
    assert set(Counter(r.body["model"] for r in upstream.served())) == {"up-primary", "up-secondary"}


def test_no_rule_uses_the_model_chain_and_unknown_models_are_404(router: RouterServer,
                                                                 upstream: FakeUpstream) -> None:
    raw = send(router, model="both")
    assert raw.headers["x-agent-router-rule"] == "model:both"
    assert raw.headers["x-agent-router-deployment"] == "primary"
    with pytest.raises(openai.NotFoundError) as info:
        send(router, model="no-such-model")
    assert info.value.body["code"] == "model_not_found"  # type: ignore[index]


# -- explain -----------------------------------------------------------------------------------------------
def test_explain_endpoint_calls_no_provider(router: RouterServer, upstream: FakeUpstream) -> None:
    with router.http(headers={"authorization": "Bearer test-key"}) as http:
        response = http.post("/v1/route/explain", json={"model": "fast", "messages": HI, "metadata": {"job": "capped"},
                                                        "max_tokens": 100},
                             headers={"x-agent-router-tier": "basic"})
        assert response.status_code == 200, response.text
        out = response.json()
        assert out["rule"] == "tools-capped"
        assert out["matched_by"] == "rule" and out["where"].endswith("10-test.yaml:6")
        assert out["chain"] == [{"deployment": "primary", "provider": "fake", "model": "up-primary", "skip": None}]
        assert out["set_params"] == {"temperature": 0} and out["cap_params"] == {"max_tokens": 5}
        assert out["not_matched"][0]["rule"] == "premium"
        assert out["not_matched"][0]["conditions"][0]["actual"] == "basic"
        tests = out["conditions"][0]["all"]
        assert tests[0] == {"test": "model", "expected": ["fast"], "actual": "fast", "matched": True}
        assert tests[1]["any"][0] == {"test": "tools", "expected": True, "actual": False, "matched": False}
        assert tests[1]["any"][1]["test"] == "metadata job" and tests[1]["matched"]
        assert out["prompt_tokens"] is None  # no rule up to the match needed it

        missing = http.post("/v1/route/explain", json={"model": "nope", "messages": HI})
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "model_not_found"
        bad = http.post("/v1/route/explain", content=b"{not json")
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    assert upstream.served() == []


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("AGENT_ROUTER")}
    return subprocess.run([sys.executable, "-m", "router", *args], capture_output=True, text=True, timeout=60,
                          env={**clean, **(env or {})}, cwd=REPO)


def test_explain_command(tmp_path: Path, upstream: FakeUpstream) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(rules_config(tmp_path, upstream))
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"model": "fast", "messages": HI}))
    result = run_cli("explain", "--config", str(config), str(request), "--header", "tier=premium",
                     "--agent", "bot-1", "--role", "writer")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["rule"] == "premium" and out["deployments"] == ["secondary", "primary"]
    assert out["request"]["agent"] == "bot-1" and out["request"]["role"] == "writer"
    request.write_text(json.dumps({"model": "fast", "messages": HI, "tools": TOOLS, "max_tokens": 50}))
    result = run_cli("explain", "--config", str(config), str(request), "--agent", "tester")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert (out["rule"], out["request"]["role"], out["cap_params"]) == ("tools-capped", "writer", {"max_tokens": 5})
    request.write_text(json.dumps({"model": "gone", "messages": HI}))
    result = run_cli("explain", "--config", str(config), str(request))
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"]["code"] == "model_not_found"
    assert upstream.served() == []


# -- check -------------------------------------------------------------------------------------------------
def test_check_passes_on_the_example_config() -> None:
    result = run_cli("check", "--config", "examples/config.yaml")
    assert result.returncode == 0, result.stderr
    assert "0 problems" in result.stdout


def test_check_fails_on_a_wrong_rule_test_and_a_shadowed_rule(tmp_path: Path, upstream: FakeUpstream) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(rules_config(tmp_path, upstream))
    tests = tmp_path / "routing_rules" / "10-test.tests.yaml"
    tests.write_text("""- name: premium header
  headers: {tier: premium}
  request: {model: fast}
  expect: {rule: premium, deployment: secondary}
""")
    result = run_cli("check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "1 rule tests passed in 1 files" in result.stdout
    tests.write_text(tests.read_text() + """- name: wrong expectation
  request: {model: both}
  expect: {deployment: secondary}
- request: {model: fast}
  expect: {rule: premium}
""")
    (tmp_path / "routing_rules" / "20-more.yaml").write_text(
        "rules:\n  - {name: never, when: {headers: {tier: premium}, model: fast}, route: {deployments: [primary]}}\n")
    result = run_cli("check", "--config", str(config))
    assert result.returncode == 1
    assert f"{tests}:5: test 'wrong expectation': expected first deployment 'secondary', got 'primary'" \
        in result.stderr
    assert f"{tests}:8: test #2: expected rule 'premium', got 'model:fast'" in result.stderr
    assert f"{tmp_path / 'routing_rules' / '20-more.yaml'}:2: rule 'never' can never match: rule 'premium'" \
        in result.stderr


def test_check_refuses_unknown_deployment_and_field(tmp_path: Path, upstream: FakeUpstream) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(rules_config(tmp_path, upstream, """rules:
  - name: typo
    when: {modle: fast}
    route: {deployments: [primary]}
  - name: ghost
    route: {deployments: [primary, ghost]}
"""))
    result = run_cli("check", "--config", str(config))
    assert result.returncode == 1
    rules = tmp_path / "routing_rules" / "10-test.yaml"
    assert f"{rules}:3: rules.0.when.modle: unknown field" in result.stderr
    assert f"{rules}:6: rules.1.route.deployments.1: unknown deployment 'ghost'" in result.stderr
