"""The real PostgreSQL and Redis behind TCP fault proxies of the test's own, for a router process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from tests.backing_services import REDIS_URL, fresh_database, redis_prefix
from tests.fakes.tcp_proxy import TcpFaultProxy


@dataclass
class ProxiedStores:
    database_url: str
    """The fresh database, reached directly (for the test's own reads)."""
    postgres: TcpFaultProxy
    redis: TcpFaultProxy
    env: dict[str, str]
    """The router's settings: both stores through their proxies."""


def _through(url: str, proxy: TcpFaultProxy) -> str:
    parts = urlsplit(url)
    host = f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


@contextmanager
def proxied_stores() -> Iterator[ProxiedStores]:
    """A fresh PostgreSQL database and a Redis prefix, each behind its own :class:`TcpFaultProxy`."""
    with fresh_database("ar_rel") as database_url, redis_prefix() as prefix:
        pg_target, redis_target = urlsplit(database_url), urlsplit(REDIS_URL)
        with TcpFaultProxy(pg_target.hostname or "127.0.0.1", pg_target.port or 5432) as postgres, \
                TcpFaultProxy(redis_target.hostname or "127.0.0.1", redis_target.port or 6379) as redis:
            env = {"AGENT_ROUTER_DATABASE_URL": _through(database_url, postgres),
                   "AGENT_ROUTER_REDIS_URL": _through(REDIS_URL, redis), "AGENT_ROUTER_REDIS_PREFIX": prefix}
            yield ProxiedStores(database_url, postgres, redis, env)
