"""The records database a subcommand works on, named on stderr so nobody wonders which one was read.

Commands that only read (``usage report``, ``audit verify|list``, ``keys list|revoke``) use
:func:`existing_database`: a SQLite file that does not exist is refused, never created empty (an empty ledger
would report zero spend and an intact audit chain of 0 events), and an unreachable PostgreSQL is refused too.
"""

from __future__ import annotations

import sys
from pathlib import Path

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
