"""A coding-agent session (Claude Code, Codex) stays on the deployment that last served it while that deployment is
in its plan."""

from __future__ import annotations

from pathlib import Path

from router.config import load_snapshot
from router.context import Attempt, RequestContext
from router.plan import RoutePlan
from router.session_affinity import SessionAffinity

PLAN = RoutePlan(rule="r", deployments=("a", "b", "c"))


def _ctx(tmp_path: Path, session: str | None, served: str | None = None, ok: bool = True) -> RequestContext:
    path = tmp_path / "config.yaml"
    if not path.exists():
        path.write_text("providers: {p: {type: mock}}\ndeployments: {a: {provider: p, model: m}}\nmodels: {m: [a]}\n")
    ctx = RequestContext(request_id="x", snapshot=load_snapshot(str(path)), payload={}, stream=False,
                         requested_model="m", wire="messages")
    if session is not None:
        ctx.headers = {"x-claude-code-session-id": session}
    if served is not None:
        ctx.attempts.append(Attempt(deployment=served, provider="p", model="m", status="ok" if ok else "error"))
    return ctx


def test_the_serving_deployment_leads_the_sessions_next_plan(tmp_path: Path) -> None:
    affinity = SessionAffinity()
    assert affinity.apply(_ctx(tmp_path, "s1"), PLAN) is PLAN  # nothing remembered yet
    affinity.remember(_ctx(tmp_path, "s1", served="b"))
    moved = affinity.apply(_ctx(tmp_path, "s1"), PLAN)
    assert moved.deployments == ("b", "a", "c") and "session affinity" in moved.reason
    assert affinity.apply(_ctx(tmp_path, "s2"), PLAN) is PLAN  # another session is not affected
    assert affinity.apply(_ctx(tmp_path, None), PLAN) is PLAN


def test_failures_do_not_move_a_session_and_a_new_server_takes_over(tmp_path: Path) -> None:
    affinity = SessionAffinity()
    affinity.remember(_ctx(tmp_path, "s1", served="b"))
    affinity.remember(_ctx(tmp_path, "s1", served="c", ok=False))
    assert affinity.apply(_ctx(tmp_path, "s1"), PLAN).deployments[0] == "b"
    affinity.remember(_ctx(tmp_path, "s1", served="c"))  # b cooled down; c answered: c is the session's now
    assert affinity.apply(_ctx(tmp_path, "s1"), PLAN).deployments[0] == "c"
    other = RoutePlan(rule="r", deployments=("x", "y"))
    assert affinity.apply(_ctx(tmp_path, "s1"), other) is other  # not in this plan: the plan is kept


def test_memory_is_bounded(tmp_path: Path) -> None:
    affinity = SessionAffinity(size=3)
    for i in range(10):
        affinity.remember(_ctx(tmp_path, f"s{i}", served="c"))
    assert affinity.apply(_ctx(tmp_path, "s0"), PLAN) is PLAN
    assert affinity.apply(_ctx(tmp_path, "s9"), PLAN).deployments[0] == "c"


def test_codex_session_id_and_a_pinned_deployment(tmp_path: Path) -> None:
    """Codex names its session in ``session_id``; a deployment the request's own state is pinned to (encrypted
    reasoning) leads even a session's remembered one."""
    affinity = SessionAffinity()
    codex = _ctx(tmp_path, None, served="c")
    codex.headers = {"session_id": "codex-1"}
    affinity.remember(codex)
    follow_up = _ctx(tmp_path, None)
    follow_up.headers = {"session_id": "codex-1"}
    assert affinity.apply(follow_up, PLAN).deployments == ("c", "a", "b")
    follow_up.pinned_deployment = "b"
    pinned = affinity.apply(follow_up, PLAN)
    assert pinned.deployments == ("b", "a", "c") and "encrypted reasoning" in pinned.reason
