"""The ledger's tables, created and migrated by the router itself (``schema_versions``; see Database.migrate).

Portable SQL only, so the same steps run on SQLite and PostgreSQL. Append new steps at the end; never
edit a step that has shipped.
"""

from __future__ import annotations

from router.store.database import Database

LEDGER_STEPS: list[str] = [
    """
    CREATE TABLE IF NOT EXISTS usage_records (
        id {autoid},
        ts DOUBLE PRECISION NOT NULL,
        day TEXT NOT NULL,
        kind TEXT NOT NULL,
        request_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        agent TEXT,
        role TEXT,
        rule TEXT,
        requested_model TEXT,
        deployment TEXT,
        provider TEXT,
        model TEXT,
        status TEXT NOT NULL,
        http_status INTEGER,
        error TEXT,
        latency_ms DOUBLE PRECISION NOT NULL,
        prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        cached_tokens BIGINT NOT NULL,
        cost_nano BIGINT,
        price_known INTEGER,
        estimated INTEGER NOT NULL,
        policy_outcome TEXT NOT NULL,
        stream INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS usage_records_ts ON usage_records (ts);
    CREATE INDEX IF NOT EXISTS usage_records_request ON usage_records (request_id)
    """,
    # 2: a row may stand for many requests (a minute of unauthenticated refusals from one source).
    """
    ALTER TABLE usage_records ADD COLUMN requests BIGINT NOT NULL DEFAULT 1;
    ALTER TABLE usage_records ADD COLUMN source TEXT
    """,
    # 3: records are keyed by the router's own request id; the caller's x-request-id is kept beside it.
    """
    ALTER TABLE usage_records ADD COLUMN client_request_id TEXT;
    CREATE INDEX IF NOT EXISTS usage_records_client_request ON usage_records (client_request_id)
    """,
    # 4: the caller's wire format, prompt-cache writes (priced apart), and Claude Code's session and sub-agent ids.
    """
    ALTER TABLE usage_records ADD COLUMN api TEXT;
    ALTER TABLE usage_records ADD COLUMN cache_write_tokens BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE usage_records ADD COLUMN session_id TEXT;
    ALTER TABLE usage_records ADD COLUMN session_agent TEXT;
    ALTER TABLE usage_records ADD COLUMN parent_agent TEXT;
    CREATE INDEX IF NOT EXISTS usage_records_session ON usage_records (session_id)
    """,
    # 5: MCP tool calls (router.mcp.records.ToolCallRecord), apart from usage: they carry no tokens or cost.
    """
    CREATE TABLE IF NOT EXISTS mcp_calls (
        id {autoid},
        ts DOUBLE PRECISION NOT NULL,
        day TEXT NOT NULL,
        request_id TEXT NOT NULL,
        session TEXT,
        agent TEXT,
        role TEXT,
        server TEXT NOT NULL,
        method TEXT NOT NULL,
        tool TEXT NOT NULL,
        arguments_sha256 TEXT,
        arguments TEXT,
        arguments_bytes BIGINT NOT NULL,
        decision TEXT NOT NULL,
        rule TEXT,
        reason TEXT,
        outcome TEXT NOT NULL,
        error TEXT,
        latency_ms DOUBLE PRECISION NOT NULL,
        result_bytes BIGINT NOT NULL,
        credential TEXT,
        policy_version TEXT
    );
    CREATE INDEX IF NOT EXISTS mcp_calls_ts ON mcp_calls (ts);
    CREATE INDEX IF NOT EXISTS mcp_calls_server_tool ON mcp_calls (server, tool, ts);
    CREATE INDEX IF NOT EXISTS mcp_calls_request ON mcp_calls (request_id)
    """,
]

AUDIT_STEPS: list[str] = [
    """
    CREATE TABLE IF NOT EXISTS audit_events (
        seq BIGINT PRIMARY KEY,
        ts DOUBLE PRECISION NOT NULL,
        request_id TEXT,
        agent TEXT,
        role TEXT,
        model TEXT,
        tool TEXT,
        action TEXT,
        stage TEXT,
        rule TEXT,
        reason TEXT,
        policy_version TEXT,
        extra TEXT,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS audit_events_ts ON audit_events (ts);
    CREATE TABLE IF NOT EXISTS audit_head (
        id INTEGER PRIMARY KEY,
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL
    )
    """,
    # HMAC chains: the key id a row's hash was sealed with (NULL: plain sha256); the head's flag of a recorded,
    # not yet acknowledged break.
    """
    ALTER TABLE audit_events ADD COLUMN key_id TEXT;
    ALTER TABLE audit_head ADD COLUMN open_break BIGINT
    """,
]

def migrate(database: Database) -> None:
    """Create or upgrade the ledger and audit tables (idempotent; safe with several replicas starting)."""
    database.migrate("ledger", LEDGER_STEPS)
    database.migrate("audit", AUDIT_STEPS)
