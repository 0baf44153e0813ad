"""Hostile-input fuzzing: schemathesis generates requests for every path documented on ``/openapi.json``
(derandomized: the same cases every run) and sends them to a running router with valid agent and admin keys.

The check: no 5xx other than the documented upstream-fault statuses (502, 503, 504), never a traceback, and a
response matches its documented schema wherever one is documented (issue 11: 36,693 cases, 0 server errors).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.configs import openai_config
from tests.fakes.upstream import FakeUpstream
from tests.harness import RouterServer
from tests.reliability.scale import size

pytestmark = pytest.mark.reliability

ADMIN_KEY = "admin-secret-for-fuzzing"
UPSTREAM_FAULTS = {502, 503, 504}


def _fuzz(router: RouterServer, examples: int, checks: list[Any]) -> tuple[int, list[str]]:
    """Run ``examples`` cases per operation; return (cases sent, problems found)."""
    schema = schemathesis.openapi.from_url(f"{router.url}/openapi.json")
    problems: list[str] = []
    sent = [0]
    for result in schema.get_all_operations():
        operation = result.ok()
        key = ADMIN_KEY if operation.path.startswith("/admin") else "test-key"
        _runner(router, operation, key, examples, checks, problems, sent)()
    return sent[0], problems


def _runner(router: RouterServer, operation: Any, key: str, examples: int, checks: list[Any],
            problems: list[str], sent: list[int]) -> Callable[[], None]:
    """One hypothesis-driven test of one operation, collecting problems instead of stopping at the first."""

    @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(case=operation.as_strategy())
    def one(case: Any) -> None:
        sent[0] += 1
        response = case.call(base_url=router.url, headers={"authorization": f"Bearer {key}"}, timeout=30)
        where = f"{operation.label} -> {response.status_code}"
        if response.status_code >= 500 and response.status_code not in UPSTREAM_FAULTS:
            problems.append(f"{where}: {response.text[:200]}")
        if "Traceback" in response.text:
            problems.append(f"{where}: a traceback")
        try:
            case.validate_response(response, checks=checks)
        except (AssertionError, BaseExceptionGroup) as exc:  # a schemathesis failure, or a group of them
            problems.append(f"{where}: {str(exc).splitlines()[0][:200]}")

    return one  # type: ignore[no-any-return]


def test_every_documented_path_survives_fuzzing(upstream: FakeUpstream,
                                               start_router: Callable[..., RouterServer]) -> None:
    router = start_router(openai_config(upstream.openai_base_url), admin_key=ADMIN_KEY)
    sent, problems = _fuzz(router, size(20, 300), [response_schema_conformance])
    print(f"\nschemathesis: {sent} cases, {len(problems)} problems")
    assert sent > 100
    assert problems == [], "\n".join(sorted(set(problems))[:20])


def test_every_status_a_path_returns_is_documented(upstream: FakeUpstream,
                                                  start_router: Callable[..., RouterServer]) -> None:
    router = start_router(openai_config(upstream.openai_base_url), admin_key=ADMIN_KEY)
    _, problems = _fuzz(router, size(5, 100), [status_code_conformance])
    assert problems == [], "\n".join(sorted(set(problems))[:20])


def test_a_seq_beyond_the_records_integer_range_is_the_callers_400(upstream: FakeUpstream,
                                                                   start_router: Callable[..., RouterServer]) -> None:
    """Found by the fuzzing above: a seq of 2**64 reached the SQLite driver and came back as a 500."""
    router = start_router(openai_config(upstream.openai_base_url), admin_key=ADMIN_KEY)
    with router.http() as http:
        answer = http.post("/admin/audit/acknowledge", json={"seq": 2**64, "note": "fuzzed"},
                           headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["type"] == "invalid_request_error"
