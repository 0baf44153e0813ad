"""The records database a subcommand works on, named on stderr so nobody wonders which one was read.

Commands that only read (``usage report``, ``audit verify|list``, ``keys list|revoke``) use
:func:`existing_database`: a SQLite file that does not exist is refused, never created empty (an empty ledger
would report zero spend and an intact audit chain of 0 events), and an unreachable PostgreSQL is refused too.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from router.commands.command_error import CommandError
from router.settings import ENV_PREFIX, load_settings
from router.store.database import Database, DatabaseUnavailable, UnsupportedDatabaseURL, redact_url

_WHERE = f"give --database-url or set {ENV_PREFIX}DATABASE_URL"


def open_database(given: str | None) -> Database:
    """``--database-url`` when given, else the setting (environment, then the default)."""
    settings = load_settings()
    url = given or settings.database_url
    try:
        return Database(url, settings.database_connect_timeout, settings.database_statement_timeout)
    except UnsupportedDatabaseURL as exc:
        raise CommandError(f"invalid --database-url {redact_url(url)!r}: {exc}", exit_code=2) from None


def existing_database(given: str | None) -> Database:
    """The database to read, connected; raise :class:`CommandError` when it does not exist or cannot be reached."""
    database = open_database(given)
    if database.dialect == "sqlite" and (database.path == ":memory:" or not Path(database.path).is_file()):
        database.close()
        raise CommandError(f"no database to read: {database.describe()} does not exist ({_WHERE})")
    try:
        database.connect()
    except DatabaseUnavailable as exc:
        database.close()
        raise CommandError(f"cannot read {database.describe()}: {exc.__cause__ or exc}") from None
    print(f"reading {database.describe()}", file=sys.stderr)
    return database


Report = dict[str, Any]


def run_report(command: str, group_by: Callable[[], list[str]], since_text: str | None, until_text: str | None,
               database_url: str | None, build: Callable[[Database, float | None, float | None, list[str]], Report],
               render: Callable[[Report], str]) -> int:
    """One report subcommand (``usage report``, ``mcp report``): parse the grouping and the time range (exit 2
    on a bad one), read the existing database (exit 1 when it cannot be), print the rendered report."""
    from router.ledger.reports import ReportError  # here: the ledger is not needed to open a database
    from router.ledger.schema import migrate
    from router.ledger.timerange import TimeRangeError, parse_bound

    try:
        keys = group_by()
        since, until = parse_bound(since_text), parse_bound(until_text, end=True)
    except (ReportError, TimeRangeError) as exc:
        print(f"agent-router {command}: {exc}", file=sys.stderr)
        return 2
    database = existing_database(database_url)
    try:
        migrate(database)
        report = build(database, since, until, keys)
    except DatabaseUnavailable as exc:
        print(f"agent-router {command}: cannot use {database.describe()}: {exc}", file=sys.stderr)
        return 1
    finally:
        database.close()
    sys.stdout.write(render(report))
    return 0
