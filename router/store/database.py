"""Records store: a SQLite file on one machine, PostgreSQL for a fleet, behind one small interface.

Write SQL once with ``?`` placeholders and portable types; :class:`Database` adapts it to the dialect.
All calls are synchronous and meant for one worker thread (``await db.run(fn)``), so the event loop
never blocks on the database. Each component owns a numbered list of migrations, applied once, in order.

Every PostgreSQL call is bounded, so a store that stops answering never holds the records thread, a request
or the shutdown: ``connect_timeout`` for opening, TCP keepalives and ``tcp_user_timeout`` for a dead peer, a
server-side ``statement_timeout``, and (for a path that silently drops packets, where none of those fire) a
watchdog that shuts the socket down once a transaction has run ``statement_timeout + WATCHDOG_GRACE``
seconds (see ``watchdog``). SQLite is a local file: only its busy timeout applies.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from router.store.credentials import redact_url
from router.store.watchdog import CallWatchdog

__all__ = ["Database", "DatabaseUnavailable", "UnsupportedDatabaseURL", "database_dialect", "describe_database",
           "redact_url"]

T = TypeVar("T")

WATCHDOG_GRACE = 2.0
"""Seconds past ``statement_timeout`` before the watchdog drops the connection (the server's own timeout, which
says why, gets the first chance)."""
KEEPALIVE = {"keepalives": "1", "keepalives_idle": "5", "keepalives_interval": "2", "keepalives_count": "3"}
"""libpq's TCP keepalives: a peer gone silent is noticed within about 11 s even on an idle connection."""

_PLACEHOLDER = re.compile(r"\?")
_SQLITE_REFUSED_VALUES = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError)


_POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")


class DatabaseUnavailable(Exception):
    """The records store cannot be reached or used."""


class UnsupportedDatabaseURL(ValueError):
    """Not a URL this store speaks. The message names the scheme only: the URL may hold a password."""


def database_dialect(url: str) -> str:
    """``sqlite`` or ``postgres``; raise :class:`UnsupportedDatabaseURL` for anything else (checked at startup)."""
    if url.startswith("sqlite:///") or url == "sqlite://":
        return "sqlite"
    if url.startswith(_POSTGRES_SCHEMES):
        return "postgres"
    scheme = url.partition("://")[0] if "://" in url else url[:20]
    raise UnsupportedDatabaseURL(f"unsupported database URL scheme {scheme!r}: use sqlite:///PATH or "
                                 f"postgresql://USER@HOST/DB")


def describe_database(url: str) -> str:
    """Which database, for people: the SQLite file's absolute path, or the PostgreSQL URL without its password."""
    if database_dialect(url) == "sqlite":
        path = url[len("sqlite:///"):]
        return f"SQLite file {Path(path).resolve() if path and path != ':memory:' else ':memory:'}"
    return "PostgreSQL at " + redact_url(url)


class Database:
    def __init__(self, url: str, connect_timeout: float = 5.0, statement_timeout: float = 30.0) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.dialect = database_dialect(url)
        if self.dialect == "sqlite":
            self.path = url[len("sqlite:///"):] or ":memory:"
        else:
            self.path = url.replace("postgresql+psycopg://", "postgresql://", 1)
        self._conn: Any = None
        self._lock = threading.RLock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="records-db")
        self._watchdog = CallWatchdog(statement_timeout + WATCHDOG_GRACE, self.interrupt)

    # -- dialect helpers ---------------------------------------------------------------------------
    @property
    def autoid(self) -> str:
        """Column type of an auto-incrementing integer primary key."""
        return "INTEGER PRIMARY KEY AUTOINCREMENT" if self.dialect == "sqlite" else "BIGSERIAL PRIMARY KEY"

    def sql(self, statement: str) -> str:
        return statement if self.dialect == "sqlite" else _PLACEHOLDER.sub("%s", statement)

    # -- connection --------------------------------------------------------------------------------
    def connect(self) -> None:
        with self._lock:
            if self._conn is not None:
                return
            conn: Any
            try:
                if self.dialect == "sqlite":
                    if self.path != ":memory:":
                        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                    conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=NORMAL")
                    conn.execute("PRAGMA busy_timeout=30000")
                else:
                    import psycopg
                    from psycopg.conninfo import make_conninfo

                    conn = psycopg.connect(make_conninfo(self.path, **self._postgres_options()), autocommit=True)
            except Exception as exc:
                raise DatabaseUnavailable(f"cannot open {self.describe()}: {exc}") from exc
            self._conn = conn

    def _postgres_options(self) -> dict[str, str]:
        """Timeouts and keepalives for libpq; what the URL sets itself wins (its ``options`` are extended)."""
        from psycopg.conninfo import conninfo_to_dict

        given = conninfo_to_dict(self.path)
        options = {key: value for key, value in KEEPALIVE.items() if key not in given}
        options["connect_timeout"] = str(given.get("connect_timeout") or max(1, math.ceil(self.connect_timeout)))
        if "tcp_user_timeout" not in given:
            options["tcp_user_timeout"] = str(int((self.statement_timeout + WATCHDOG_GRACE) * 1000))
        statement = f"-c statement_timeout={int(self.statement_timeout * 1000)}"
        options["options"] = f"{given['options']} {statement}" if given.get("options") else statement
        return options

    def interrupt(self) -> None:
        """Make a call blocked on the PostgreSQL socket fail now (from any thread): shut the socket down.

        The socket is shut down, not closed, so its descriptor cannot be reused under the blocked call; the
        call fails as a lost connection and the next one reconnects."""
        conn = self._conn
        if conn is None or self.dialect != "postgres":
            return
        try:
            fd = os.dup(conn.pgconn.socket)
        except Exception:  # closed meanwhile: nothing is blocked on it
            return
        with socket.socket(fileno=fd) as sock:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def describe(self) -> str:
        return describe_database(self.url)

    def close(self) -> None:
        """Cancel the calls still queued, end the one running (a stuck one fails at once), close the connection."""
        if self._lock.acquire(blocking=False):
            self._lock.release()
        else:
            self.interrupt()  # a call holds the connection: the database may not be answering it
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except Exception:
                    pass
                finally:
                    self._conn = None
        self._watchdog.close()

    def _reset(self) -> None:
        """Drop a broken connection so the next call reconnects."""
        try:
            if self._conn is not None:
                self._conn.close()
        except Exception:
            pass
        self._conn = None

    # -- statements --------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor inside BEGIN ... COMMIT (ROLLBACK on error)."""
        with self._lock:
            self.connect()
            conn = self._conn
            try:
                if self.dialect == "sqlite":
                    conn.execute("BEGIN IMMEDIATE")
                    cursor = conn.cursor()
                    try:
                        yield cursor
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
                else:
                    overruns = self._watchdog.overruns
                    self._watchdog.begin()
                    try:
                        with conn.transaction(), conn.cursor() as cursor:
                            yield cursor
                    except Exception as exc:
                        if self._watchdog.overruns == overruns:
                            raise
                        self._reset()
                        raise DatabaseUnavailable(f"{self.describe()} did not answer within "
                                                  f"{self._watchdog.limit:g}s") from exc
                    finally:
                        self._watchdog.end()
            except _SQLITE_REFUSED_VALUES:
                raise  # the statement's values were refused, not the database: the caller may retry without them
            except sqlite3.DatabaseError as exc:
                raise DatabaseUnavailable(str(exc)) from exc
            except Exception as exc:
                if type(exc).__module__.startswith("psycopg") and _is_connection_error(exc):
                    self._reset()
                    raise DatabaseUnavailable(str(exc)) from exc
                raise

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        with self.transaction() as cursor:
            cursor.execute(self.sql(statement), tuple(params))

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        with self.transaction() as cursor:
            cursor.executemany(self.sql(statement), [tuple(r) for r in rows])

    def fetchall(self, statement: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.transaction() as cursor:
            cursor.execute(self.sql(statement), tuple(params))
            if cursor.description is None:
                return []
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def fetchone(self, statement: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        rows = self.fetchall(statement, params)
        return rows[0] if rows else None

    def ping(self) -> None:
        self.fetchall("SELECT 1 AS ok")

    # -- migrations --------------------------------------------------------------------------------
    def migrate(self, component: str, steps: Sequence[str | Callable[[Database, Any], None]]) -> int:
        """Apply the steps of ``component`` not applied yet; return the version now in force.

        A step is SQL (``;``-separated statements, may use ``{autoid}``) or a function(db, cursor).
        Replicas starting together are serialised by a lock (PostgreSQL advisory lock).
        """
        with self.transaction() as cursor:
            if self.dialect == "postgres":
                cursor.execute("SELECT pg_advisory_xact_lock(727274)")
            cursor.execute("CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, "
                           "version INTEGER NOT NULL)")
            cursor.execute(self.sql("SELECT version FROM schema_versions WHERE component = ?"), (component,))
            row = cursor.fetchone()
            current = int(row[0]) if row else 0
            for number, step in enumerate(steps, start=1):
                if number <= current:
                    continue
                if callable(step):
                    step(self, cursor)
                else:
                    for statement in step.format(autoid=self.autoid).split(";"):
                        if statement.strip():
                            cursor.execute(statement)
            if len(steps) > current:
                if row:
                    cursor.execute(self.sql("UPDATE schema_versions SET version = ? WHERE component = ?"),
                                   (len(steps), component))
                else:
                    cursor.execute(self.sql("INSERT INTO schema_versions (component, version) VALUES (?, ?)"),
                                   (component, len(steps)))
            return max(current, len(steps))

    # -- async bridge ------------------------------------------------------------------------------
    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the database thread; the event loop keeps serving meanwhile."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


def _is_connection_error(exc: Exception) -> bool:
    import psycopg

    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
