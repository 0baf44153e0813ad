"""Shared pieces of the ledger, audit and report tests: a priced config, a records database per module (SQLite
file or a fresh real PostgreSQL database; import ``db_fixture`` and ``module_db_fixture`` to get the ``db``
fixture), and readers that go straight to SQL."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

from router.ledger.schema import migrate
from router.store.database import Database
from tests.backing_services import fresh_database
from tests.configs import with_test_identity

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]

# prices in USD per million tokens
PRICED_INPUT, PRICED_OUTPUT = 2.5, 10.0


def ledger_config(base_url: str, extra: str = "") -> str:
    """Deployments with no known price, config prices, and a price from litellm's map (gpt-4o-mini)."""
    return f"""
providers:
  fake: {{type: openai, base_url: {base_url}, api_key: sk-upstream, timeout: 5}}
deployments:
  unpriced: {{provider: fake, model: up-unpriced}}
  priced:
    provider: fake
    model: up-priced
    prices: {{input_per_million: {PRICED_INPUT}, output_per_million: {PRICED_OUTPUT}}}
  catalog: {{provider: fake, model: gpt-4o-mini}}
models:
  unknown-price: [unpriced]
  paid: [priced]
  known: [catalog]
  fallback: [unpriced, priced]
{with_test_identity(extra)}
"""


def postgres_database() -> AbstractContextManager[str]:
    """A fresh PostgreSQL database ``ar_<random>``, dropped afterwards."""
    return fresh_database("ar")


@contextmanager
def module_database(kind: str) -> Iterator[str]:
    """A records database for one test module, its tables created by the router's own migrations."""
    if kind == "sqlite":
        url = f"sqlite:///{tempfile.mkdtemp(prefix='ar-ledger-')}/ledger.db"
        _migrate(url)
        yield url
    else:
        with postgres_database() as url:
            _migrate(url)
            yield url


def _migrate(url: str) -> None:
    database = Database(url)
    try:
        migrate(database)
    finally:
        database.close()


def clear(url: str) -> None:
    """Empty the ledger tables (a module shares one database; each test starts clean)."""
    database = Database(url)
    try:
        for table in ("usage_records", "mcp_calls", "audit_events", "audit_head"):
            database.execute(f"DELETE FROM {table}")
    finally:
        database.close()


def query(url: str, statement: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    database = Database(url)
    try:
        return database.fetchall(statement, params)
    finally:
        database.close()


def usage_rows(url: str, kind: str | None = None) -> list[dict[str, Any]]:
    if kind is None:
        return query(url, "SELECT * FROM usage_records ORDER BY id")
    return query(url, "SELECT * FROM usage_records WHERE kind = ? ORDER BY id", (kind,))


def run_cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENT_ROUTER_DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "router", *args], env=env, capture_output=True, text=True,
                          timeout=60)




@pytest.fixture(name="module_db", scope="module", params=["sqlite", "postgres"])
def module_db_fixture(request: Any) -> Iterator[str]:
    with module_database(request.param) as url:
        yield url


@pytest.fixture(name="db")
def db_fixture(module_db: str) -> str:
    """The module's records database, emptied for this test."""
    clear(module_db)
    return module_db
