"""The stored responses' table, created and migrated by the router itself (``schema_versions``, component
``responses``). Portable SQL only; append new steps at the end, never edit one that has shipped.

JSON is kept as TEXT, not PostgreSQL's JSONB: JSONB refuses ``\\u0000`` escapes, which a hostile caller can put
in any string, and nothing queries inside the documents.
"""

from __future__ import annotations

from router.store.database import Database

RESPONSE_STEPS: list[str] = [
    """
    CREATE TABLE IF NOT EXISTS stored_responses (
        id TEXT PRIMARY KEY,
        agent TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        deployment TEXT NOT NULL,
        provider TEXT NOT NULL,
        response TEXT NOT NULL,
        input_items TEXT NOT NULL,
        previous_id TEXT
    );
    CREATE INDEX IF NOT EXISTS stored_responses_expires ON stored_responses (expires_at)
    """,
]


def migrate(database: Database) -> None:
    """Create or upgrade the table (idempotent; safe with several replicas starting)."""
    database.migrate("responses", RESPONSE_STEPS)
