"""Shared fixtures: one fake upstream per session (reset per test) and a router factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fakes.upstream import FakeUpstream
from tests.harness import RouterServer, write_config


@pytest.fixture(scope="session")
def _upstream_server() -> Iterator[FakeUpstream]:
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def upstream(_upstream_server: FakeUpstream) -> FakeUpstream:
    _upstream_server.reset()
    return _upstream_server


@pytest.fixture
def start_router(tmp_path: Any) -> Iterator[Callable[..., RouterServer]]:
    """``start_router(config_yaml_text, **settings)`` -> a running router; stopped after the test."""
    started: list[RouterServer] = []

    def start(config: str | None, **settings: Any) -> RouterServer:
        path = write_config(config, str(tmp_path)) if config is not None else None
        server = RouterServer(path, **settings).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The benchmark smoke test runs last: it is the slowest file and needs the CPUs to itself."""
    items.sort(key=lambda item: item.module is not None and item.module.__name__.endswith("test_bench_smoke"))
