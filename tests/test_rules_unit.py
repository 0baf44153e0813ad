"""Routing rules as pure functions: matching, composition, routes, strategies, shadowing, load errors."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from router.config import ConfigError, Snapshot, load_snapshot
from router.deployment_stats import DeploymentStats
from router.errors import ModelNotFound
from router.plan import RoutePlan
from router.rules import plan_route
from router.rules.check import check_rules
from router.rules.decide import decide
from router.rules.explain import explain_route, request_context
from router.tokens import count_text_tokens, encoding_name, estimate_prompt_tokens, prompt_tokens

CONFIG = """
providers:
  p: {type: mock}
deployments:
  a: {provider: p, model: up-a, context_window: 8000, prices: {input_per_million: 1, output_per_million: 2}}
  b: {provider: p, model: up-b, context_window: 200000, prices: {input_per_million: 3, output_per_million: 6}}
  c: {provider: p, model: up-c, context_window: 1000000, prices: {input_per_million: 10, output_per_million: 30}}
models:
  fast: [a, b]
  smart: [c, b]
rules: rules
roles:
  coder: {models: ["*"]}
agents:
  coder-1: {role: coder}
"""


def load(tmp_path: Path, files: dict[str, str], config: str = CONFIG) -> Snapshot:
    (tmp_path / "rules").mkdir(exist_ok=True)
    for name, text in files.items():
        (tmp_path / "rules" / name).write_text(text)
    path = tmp_path / "config.yaml"
    path.write_text(config)
    return load_snapshot(str(path))


def route(snapshot: Snapshot, model: str = "fast", stats: DeploymentStats | None = None,
          tokens: int | None = None, **kwargs: Any) -> RoutePlan:
    payload = {"model": model, "messages": [{"role": "user", "content": "hi"}], **kwargs.pop("payload", {})}
    ctx = request_context(snapshot, payload, **kwargs)
    if tokens is not None:
        ctx.prompt_estimate = tokens
    return plan_route(ctx, stats)


def problems(tmp_path: Path, files: dict[str, str], config: str = CONFIG) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, files, config)
    return [str(p) for p in info.value.problems]


# -- matching ------------------------------------------------------------------------------------------------
def test_first_match_wins_across_files_sorted_by_name(tmp_path: Path) -> None:
    snapshot = load(tmp_path, {
        "20-later.yaml": "rules:\n  - {name: later, when: {model: fast}, route: {deployments: [c]}}\n",
        "10-first.yaml": "rules:\n  - {name: first, when: {model: 'f*'}, route: {deployments: [b]}}\n"
                         "  - {name: second, when: {model: fast}, route: {deployments: [a]}}\n",
    })
    assert [r.name for r in snapshot.rules] == ["first", "second", "later"]
    plan = route(snapshot)
    assert (plan.rule, plan.deployments) == ("first", ("b",))
    assert plan.reason == "when model ~ f*; chain ['b']"
    ctx = request_context(snapshot, {"model": "fast", "messages": []})
    assert explain_route(ctx)["reason"] == "model 'fast' ~ f*; chain ['b']"
    assert any(f.endswith("10-first.yaml") for f in snapshot.files)


def test_model_glob_regex_exact_and_lists(tmp_path: Path) -> None:
    snapshot = load(tmp_path, {"r.yaml": """
rules:
  - {name: exact, when: {model: gpt-4o}, route: {deployments: [a]}}
  - {name: regex, when: {model: 're:gpt-4o-\\d{4}-\\d{2}-\\d{2}'}, route: {deployments: [b]}}
  - {name: glob-list, when: {model: ['claude-*', '*-mini']}, route: {deployments: [c]}}
"""})
    assert route(snapshot, "gpt-4o").rule == "exact"
    assert route(snapshot, "gpt-4o-2024-08-06").rule == "regex"
    assert route(snapshot, "claude-sonnet").rule == "glob-list"
    assert route(snapshot, "o4-mini").rule == "glob-list"
    with pytest.raises(ModelNotFound):
        route(snapshot, "gpt-4o-x")


def test_agent_role_headers_metadata_user(tmp_path: Path) -> None:
    snapshot = load(tmp_path, {"r.yaml": """
rules:
  - {name: by-header, when: {headers: {team: search, x-agent-router-tier: 'gold*'}}, route: {deployments: [c]}}
  - {name: by-metadata, when: {metadata: {priority: low}}, route: {deployments: [b]}}
  - {name: by-user, when: {user: 'batch-*'}, route: {deployments: [b]}}
  - {name: by-agent, when: {agent: 'coder-*', role: coder}, route: {deployments: [a]}}
"""})
    assert route(snapshot, headers={"team": "search", "tier": "gold-1"}).rule == "by-header"
    assert route(snapshot, headers={"x-agent-router-team": "search"}).rule == "model:fast"
    assert route(snapshot, payload={"metadata": {"priority": "low"}}).rule == "by-metadata"
    assert route(snapshot, payload={"user": "batch-9"}).rule == "by-user"
    assert route(snapshot, agent="coder-1").rule == "by-agent"  # role taken from the agent
    assert route(snapshot, agent="coder-1", role="other").rule == "model:fast"


def test_tools_stream_and_composition(tmp_path: Path) -> None:
    snapshot = load(tmp_path, {"r.yaml": """
rules:
  - name: tools-no-stream
    when:
      tools: true
      not: {stream: true}
    route: {deployments: [c]}
  - name: any-of
    when:
      any:
        - {stream: true, model: smart}
        - all: [{user: alice}, {metadata: {team: x}}]
    route: {deployments: [b]}
"""})
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert route(snapshot, payload={"tools": tools}).rule == "tools-no-stream"
    assert route(snapshot, payload={"tools": tools, "stream": True}).rule == "model:fast"
    assert route(snapshot, "smart", payload={"stream": True}).rule == "any-of"
    assert route(snapshot, payload={"user": "alice", "metadata": {"team": "x"}}).rule == "any-of"
    assert route(snapshot, payload={"user": "alice"}).rule == "model:fast"


def test_prompt_tokens_counted_only_when_a_rule_needs_them(tmp_path: Path) -> None:
    snapshot = load(tmp_path, {"r.yaml": """
rules:
  - {name: cheap-first, when: {model: smart}, route: {deployments: [c]}}
  - {name: big, when: {prompt_tokens: {min: 50}, model: fast}, route: {deployments: [b]}}
"""})
    ctx = request_context(snapshot, {"model": "smart", "messages": [{"role": "user", "content": "hi"}]})
    assert plan_route(ctx).rule == "cheap-first"
    assert ctx.prompt_estimate is None
    ctx = request_context(snapshot, {"model": "other", "messages": [{"role": "user", "content": "hi"}]})
    with pytest.raises(ModelNotFound):
        plan_route(ctx)
    assert ctx.prompt_estimate is None  # the model test failed first: nothing was counted
    long = {"model": "fast", "messages": [{"role": "user", "content": "word " * 200}]}
    ctx = request_context(snapshot, long)
    assert plan_route(ctx).rule == "big"
    assert ctx.prompt_estimate > 200
    assert route(snapshot, tokens=10).rule == "model:fast"


def test_rule_files_are_watched_and_versioned(tmp_path: Path) -> None:
    first = load(tmp_path, {"r.yaml": "rules:\n  - {name: r, route: {deployments: [a]}}\n"})
    assert str(tmp_path / "rules" / "r.yaml") in first.files
    assert first.extras["rule_folders"] == (str(tmp_path / "rules"),)
    second = load(tmp_path, {"r.yaml": "rules:\n  - {name: r, route: {deployments: [b]}}\n"})
    assert second.version != first.version
    assert load(tmp_path, {"r.yaml": "rules:\n  - {name: r, route: {deployments: [b]}}\n"}).version == second.version


def test_default_rule_and_model_fallback(tmp_path: Path) -> None:
    snapshot = load(tmp_path, {"r.yaml": """
rules:
  - {name: only-smart, when: {model: smart}, route: {model: fast}}
default:
  route: {deployments: [c]}
"""})
    plan = route(snapshot, "smart")
    assert (plan.rule, plan.deployments) == ("only-smart", ("a", "b"))
    plan = route(snapshot, "anything")
    assert (plan.rule, plan.deployments) == ("default", ("c",))
    assert snapshot.rules[-1].is_default


def test_set_and_cap_params(tmp_path: Path) -> None:
    snapshot = load(tmp_path, {"r.yaml": "rules:\n  - {name: r, route: {deployments: [a], set: {temperature: 0},"
                                         " cap: {max_tokens: 512}}}\n"})
    plan = route(snapshot)
    assert plan.set_params == {"temperature": 0}
    assert plan.cap_params == {"max_tokens": 512}


# -- routes ----------------------------------------------------------------------------------------------------
SPLIT = """
rules:
  - name: canary
    route:
      split:
        - {deployment: a, weight: 80}
        - {deployments: [c, b], weight: 20, name: canary}
      sticky: agent
"""


def test_weighted_split_follows_weights_and_keeps_other_arms_as_fallbacks(tmp_path: Path) -> None:
    snapshot = load(tmp_path, {"r.yaml": SPLIT})
    rng = random.Random(7)
    firsts = Counter()
    for _ in range(2000):
        ctx = request_context(snapshot, {"model": "fast", "messages": [{"role": "user", "content": "x"}]})
        plan = decide(ctx, rand=rng.random).plan
        firsts[plan.deployments[0]] += 1
        assert set(plan.deployments) == {"a", "b", "c"}
    assert 0.75 < firsts["a"] / 2000 < 0.85
    ctx = request_context(snapshot, {"model": "fast", "messages": []})
    assert decide(ctx, rand=lambda: 0.9).plan.deployments == ("c", "b", "a")
    assert decide(ctx, rand=lambda: 0.1).plan.deployments == ("a", "c", "b")


def test_sticky_split_keeps_each_agent_on_its_arm(tmp_path: Path) -> None:
    snapshot = load(tmp_path, {"r.yaml": SPLIT})
    arms = {}
    for i in range(300):
        agent = f"agent-{i}"
        seen = {route(snapshot, agent=agent, role="x").deployments[0] for _ in range(3)}
        assert len(seen) == 1
        arms[agent] = seen.pop()
    share = sum(1 for arm in arms.values() if arm == "c") / len(arms)
    assert 0.1 < share < 0.3
    plan = route(snapshot, agent="agent-1", role="x")
    assert "sticky by agent 'agent-1'" in plan.reason


def strategy(tmp_path: Path, name: str, pool: str = "[c, b, a]") -> Snapshot:
    return load(tmp_path, {"r.yaml": f"rules:\n  - {{name: s, route: {{strategy: {name}, pool: {pool}}}}}\n"})


def test_cheapest_among_those_whose_window_fits(tmp_path: Path) -> None:
    snapshot = strategy(tmp_path, "cheapest")
    assert route(snapshot, tokens=100).deployments == ("a", "b", "c")
    assert route(snapshot, tokens=50_000).deployments == ("b", "c", "a")
    assert route(snapshot, tokens=500_000).deployments == ("c", "b", "a")  # too small ones last, biggest first


def test_explain_shows_which_deployments_would_be_skipped(tmp_path: Path) -> None:
    snapshot = strategy(tmp_path, "cheapest")
    ctx = request_context(snapshot, {"model": "fast", "messages": []})
    ctx.prompt_estimate = 50_000
    out = explain_route(ctx)
    assert [(c["deployment"], bool(c["skip"])) for c in out["chain"]] == [("b", False), ("c", False), ("a", True)]
    assert "context window" in out["chain"][2]["skip"]
    assert out["route"]["ranking"][2] == {"deployment": "a", "price_per_million": 3.0, "context_window": 8000,
                                          "fits": False}


def test_lowest_latency_tries_unmeasured_first(tmp_path: Path) -> None:
    snapshot = strategy(tmp_path, "lowest_latency")
    stats = DeploymentStats()
    assert route(snapshot, stats=stats).deployments == ("c", "b", "a")
    stats.finished("c", 900, ok=True)
    stats.finished("b", 100, ok=True)
    assert route(snapshot, stats=stats).deployments == ("a", "b", "c")
    stats.finished("a", 500, ok=True)
    assert route(snapshot, stats=stats).deployments == ("b", "a", "c")


def test_least_busy(tmp_path: Path) -> None:
    snapshot = strategy(tmp_path, "least_busy")
    stats = DeploymentStats()
    for _ in range(3):
        stats.started("c")
    stats.started("b")
    assert route(snapshot, stats=stats).deployments == ("a", "b", "c")
    assert route(snapshot, stats=None).deployments == ("c", "b", "a")


# -- load errors, with file and line ---------------------------------------------------------------------------
def test_errors_name_file_and_line(tmp_path: Path) -> None:
    found = problems(tmp_path, {"r.yaml": """rules:
  - name: one
    route: {deployments: [a, nope]}
  - name: two
    when: {model: 're:gpt-(', colour: red}
    route: {deployments: [a]}
  - name: three
    route:
      split: [{deployment: a, weight: 0}]
  - name: one
    when: {prompt_tokens: {min: 10, max: 5}}
    route: {strategy: cheapest, pool: [a], deployments: [b]}
"""})
    text = "\n".join(found)
    assert "r.yaml:3: rules.0.route.deployments.1: unknown deployment 'nope'" in text
    assert "r.yaml:5: rules.1.when.colour: unknown field" in text
    assert "r.yaml:9: rules.2.route.split.0.weight: Input should be greater than 0" in text
    assert "r.yaml:11: rules.3.when.prompt_tokens: min (10) is larger than max (5)" in text
    assert "r.yaml:12: rules.3.route: a route is exactly one of" in text
    found = problems(tmp_path, {"r.yaml": "rules:\n  - name: two\n    when: {model: 're:gpt-('}\n"
                                          "    route: {deployments: [a]}\n  - name: two\n    route: {model: nope}\n"})
    text = "\n".join(found)
    assert "r.yaml:3: rules.0.when.model: bad regular expression" in text
    assert "r.yaml:5: rule name 'two' is already used at" in text
    assert "r.yaml:6: rules.1.route.model: unknown model 'nope'" in text


def test_bad_shapes_are_refused_with_lines(tmp_path: Path) -> None:
    found = problems(tmp_path, {"r.yaml": """rules:
  - name: empty-when
    when: {}
    route: {deployments: [a]}
  - name: sets-model
    route: {deployments: [a], set: {model: x}}
  - name: sticky-chain
    route: {deployments: [a], sticky: agent}
  - name: bad-strategy
    route: {strategy: fastest, pool: [a]}
  - name: bad-glob
    when: {agent: ['x', 'coder-[abc']}
    route: {deployments: [a]}
extra: true
"""})
    text = "\n".join(found)
    assert "r.yaml:3: rules.0.when: an empty condition" in text
    assert "r.yaml:6: rules.1.route.set: a route cannot set model" in text
    assert "r.yaml:8: rules.2.route: sticky is only for a split route" in text
    assert "r.yaml:10: rules.3.route.strategy: Input should be 'cheapest', 'lowest_latency' or 'least_busy'" in text
    assert "r.yaml:12: rules.4.when.agent.1: bad glob 'coder-[abc': unbalanced [ ]" in text
    assert "r.yaml:14: extra: unknown field" in text


def test_missing_rules_path_points_at_the_config_line(tmp_path: Path) -> None:
    config = CONFIG.replace("rules: rules", "rules: [rules, missing-folder]")
    found = problems(tmp_path, {}, config)
    assert any("config.yaml:11: rules: 'missing-folder' is neither a file nor a folder" in p for p in found)


def test_two_defaults_are_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, {"1.yaml": "default: {route: {deployments: [a]}}\n",
                                "2.yaml": "\n\ndefault: {route: {deployments: [b]}}\n"})
    assert any("2.yaml:3: a second default" in p and "1.yaml:1" in p for p in found)


# -- shadowing and rule tests ------------------------------------------------------------------------------------
def test_shadowed_rules_are_reported(tmp_path: Path) -> None:
    snapshot = load(tmp_path, {"r.yaml": """rules:
  - {name: general, when: {model: 'gpt-*'}, route: {deployments: [a]}}
  - {name: narrower, when: {model: gpt-4o, stream: true}, route: {deployments: [b]}}
  - {name: different, when: {model: claude}, route: {deployments: [b]}}
  - {name: big, when: {prompt_tokens: {min: 1000}}, route: {deployments: [b]}}
  - {name: bigger, when: {prompt_tokens: {min: 5000, max: 9000}}, route: {deployments: [b]}}
  - {name: catch-all, route: {deployments: [c]}}
  - {name: after-all, when: {model: x}, route: {deployments: [c]}}
"""})
    found = [str(p) for p in check_rules(snapshot).problems]
    assert len(found) == 3, found
    assert "r.yaml:3: rule 'narrower' can never match: rule 'general' at" in found[0]
    assert "r.yaml:6: rule 'bigger' can never match: rule 'big'" in found[1]
    assert "r.yaml:8: rule 'after-all' can never match: rule 'catch-all'" in found[2]
    assert "matches every request" in found[2]


def test_rule_tests_report_mismatches_with_line(tmp_path: Path) -> None:
    snapshot = load(tmp_path, {
        "r.yaml": "rules:\n  - {name: smart-rule, when: {model: smart}, route: {deployments: [c, b]}}\n",
        "r.tests.yaml": """- name: passes
  request: {model: smart}
  expect: {rule: smart-rule, deployment: c, deployments: [c, b]}
- name: wrong rule
  request: {model: fast}
  expect: {rule: smart-rule}
- name: not found
  request: {model: nothing}
  expect: {error: model_not_found}
- name: bad case
  request: {model: fast}
  expect: {rule: x, colour: red}
""",
    })
    result = check_rules(snapshot)
    found = [str(p) for p in result.problems]
    assert result.tests_passed == 2
    assert any("r.tests.yaml:4: test 'wrong rule': expected rule 'smart-rule', got 'model:fast'" in p for p in found)
    assert any(p.endswith("r.tests.yaml:12: 3.expect.colour: unknown field") for p in found)
    assert len(found) == 2


def test_explain_lists_conditions_and_skipped_rules(tmp_path: Path) -> None:
    snapshot = load(tmp_path, {"r.yaml": """rules:
  - {name: nope, when: {model: smart}, route: {deployments: [c]}}
  - {name: yep, when: {model: fast, prompt_tokens: {max: 100000}}, route: {deployments: [b], cap: {max_tokens: 9}}}
"""})
    ctx = request_context(snapshot, {"model": "fast", "messages": [{"role": "user", "content": "hi"}]})
    out = explain_route(ctx)
    assert out["rule"] == "yep" and out["deployments"] == ["b"]
    assert out["chain"] == [{"deployment": "b", "provider": "p", "model": "up-b", "skip": None}]
    assert out["not_matched"][0]["rule"] == "nope"
    assert out["not_matched"][0]["conditions"][0]["actual"] == "fast"
    tests = out["conditions"][0]["all"]
    assert [t["test"] for t in tests] == ["model", "prompt_tokens"]
    assert out["prompt_tokens"] == tests[1]["actual"] > 0
    assert out["cap_params"] == {"max_tokens": 9}


# -- tokens ----------------------------------------------------------------------------------------------------
def test_encodings_by_model() -> None:
    assert encoding_name("gpt-4o-mini") == "o200k_base"
    assert encoding_name("openai/gpt-4.1") == "o200k_base"
    assert encoding_name("o3-mini") == "o200k_base"
    assert encoding_name("gpt-5") == "o200k_base"
    assert encoding_name("gpt-4-turbo") == "cl100k_base"
    assert encoding_name("gpt-3.5-turbo") == "cl100k_base"
    assert encoding_name("anthropic/claude-sonnet-4-5") == "cl100k_base"


def test_estimate_counts_text_tool_calls_and_tools() -> None:
    base = {"messages": [{"role": "user", "content": "hello world"}]}
    small = estimate_prompt_tokens(base, "gpt-4o")
    assert 5 < small < 20
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hello world " * 50},
                                                       {"type": "image_url", "image_url": {"url": "x"}}]}]}
    assert estimate_prompt_tokens(parts, "gpt-4o") > small + 100 + 85 - 5
    calls = {"messages": [{"role": "assistant", "content": None, "name": "bot", "tool_calls": [
        {"id": "1", "type": "function", "function": {"name": "search", "arguments": '{"q": "' + "x y " * 40 + '"}'}}
    ]}]}
    assert estimate_prompt_tokens(calls, "gpt-4o") > 40
    tools = {**base, "tools": [{"type": "function", "function": {"name": "f", "description": "d " * 100}}]}
    assert estimate_prompt_tokens(tools, "claude-x") > small + 100
    assert count_text_tokens("hello world", "gpt-4o") == 2
    assert count_text_tokens("", "gpt-4o") == 0


def test_public_model_counts_with_its_primary_deployments_encoding(tmp_path: Path) -> None:
    config = CONFIG.replace("model: up-a,", "model: gpt-4o,")
    snapshot = load(tmp_path, {}, config)
    text = "Ωmega ünïcode 测试 " * 30
    payload = {"model": "fast", "messages": [{"role": "user", "content": text}]}
    ctx = request_context(snapshot, payload)
    assert prompt_tokens(ctx) == estimate_prompt_tokens(payload, "gpt-4o")
    assert estimate_prompt_tokens(payload, "gpt-4o") != estimate_prompt_tokens(payload, "fast")


def test_token_bounds_bracket_the_estimate_for_every_encoding() -> None:
    from router.tokens import MAX_TOKEN_BYTES, get_encoding, prompt_token_bounds

    longest = max(len(token) for name in ("cl100k_base", "o200k_base")
                  for token in get_encoding(name).token_byte_values())
    assert longest <= MAX_TOKEN_BYTES
    tools = [{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}]
    payloads = [
        {"messages": []},
        {"messages": [{"role": "user", "content": ""}, "not a message"]},
        {"messages": [{"role": "user", "content": "hi", "name": "alice"}], "tools": tools},
        {"messages": [{"role": "user", "content": "Ωmega ünïcode 测试 🙂 " * 40}]},
        {"messages": [{"role": "user", "content": " " * 5000 + "=" * 3000}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "look"},
                                                   {"type": "image_url", "image_url": {"url": "x"}}]},
                      {"role": "assistant", "content": None, "tool_calls": [
                          {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]}],
         "functions": [{"name": "f"}]},
    ]
    for payload in payloads:
        low, high = prompt_token_bounds(payload)
        for model in ("gpt-4o", "gpt-4", "claude-x"):
            assert low <= estimate_prompt_tokens(payload, model) <= high, (payload, model)


def test_routing_skips_counting_when_the_bounds_decide(tmp_path: Path) -> None:
    snapshot = load(tmp_path, {"r.yaml": """
rules:
  - {name: huge, when: {prompt_tokens: {min: 100000}}, route: {deployments: [c]}}
  - {name: tiny, when: {prompt_tokens: {max: 1000}}, route: {deployments: [a]}}
"""})
    short = {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}
    ctx = request_context(snapshot, short)
    assert plan_route(ctx).rule == "tiny"
    assert ctx.prompt_estimate is None  # neither range needed the tokenizer
    long = {"model": "fast", "messages": [{"role": "user", "content": "word " * 400}]}
    ctx = request_context(snapshot, long)
    assert plan_route(ctx).rule == "tiny"  # 2000 bytes might be over 1000 tokens: counted to know
    assert ctx.prompt_estimate == estimate_prompt_tokens(long, "up-a") <= 1000
    traced = explain_route(request_context(snapshot, short))  # an explanation always shows the count
    assert traced["prompt_tokens"] == estimate_prompt_tokens(short, "up-a")


def test_token_range_is_decided_by_bounds_only_when_every_count_agrees() -> None:
    from router.rules.conditions import TokenRangeTest

    at_least = TokenRangeTest(100, None)
    assert at_least.decided_by(0, 99) is False
    assert at_least.decided_by(100, 500) is True
    assert at_least.decided_by(50, 150) is None
    window = TokenRangeTest(10, 20)
    assert window.decided_by(21, 30) is False and window.decided_by(10, 20) is True
    assert window.decided_by(5, 15) is None and window.decided_by(15, 25) is None


def test_rules_match_the_ingress_wire_and_claude_codes_headers(tmp_path: Path) -> None:
    snapshot = load(tmp_path, {"wire.yaml": """
rules:
  - name: claude-subagents
    when: {api: messages, headers: {x-claude-code-parent-agent-id: "re:.+"}}
    route: {deployments: [a]}
  - name: messages
    when: {api: messages}
    route: {deployments: [c]}
  - name: chat
    when: {api: chat}
    route: {deployments: [b]}
"""})
    payload = {"model": "fast", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    ctx = request_context(snapshot, dict(payload), wire="messages")
    assert plan_route(ctx).rule == "messages"
    sub = request_context(snapshot, dict(payload), wire="messages",
                          headers={"x-claude-code-parent-agent-id": "main"})
    assert plan_route(sub).rule == "claude-subagents"
    assert route(snapshot).rule == "chat"


def test_a_split_keeps_one_claude_code_session_on_one_arm(tmp_path: Path) -> None:
    snapshot = load(tmp_path, {"split.yaml": """
rules:
  - name: halves
    route: {split: [{deployment: a, weight: 1}, {deployment: b, weight: 1}]}
"""})
    arms = set()
    for _ in range(20):
        ctx = request_context(snapshot, {"model": "fast", "messages": []}, wire="messages",
                              headers={"x-claude-code-session-id": "session-42"})
        arms.add(plan_route(ctx).deployments[0])
    assert len(arms) == 1
    spread = {plan_route(request_context(snapshot, {"model": "fast", "messages": []}, wire="messages",
                                         headers={"x-claude-code-session-id": f"s-{i}"})).deployments[0]
              for i in range(40)}
    assert spread == {"a", "b"}
