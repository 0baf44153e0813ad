"""Process settings: how this one process runs, read from the environment (prefix ``AGENT_ROUTER_``).

What ops edit per fleet (providers, rules, roles) lives in the YAML config instead.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from router.store.database import database_dialect, redact_url

ENV_PREFIX = "AGENT_ROUTER_"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
SECRET_SETTINGS = frozenset({"admin_key", "audit_key"})
"""Named in errors, never shown. URL settings are shown with their password redacted."""
URL_SETTINGS = frozenset({"database_url", "redis_url"})


class SettingsError(ValueError):
    """A setting from the environment or the command line is invalid; the message is one line for people."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    host: str = Field(default="127.0.0.1", description="Address to listen on (0.0.0.0: every interface).")
    port: int = Field(default=8080, ge=1, le=65535, description="TCP port to listen on.")
    log_level: str = Field(default="info", description=f"One of {', '.join(LOG_LEVELS)}.")
    config: str | None = Field(default=None, description="Path of the YAML config; the built-in default when unset.")
    redis_url: str | None = Field(default=None, description="Shared counters, cooldowns and revocations for a fleet.")
    redis_prefix: str = Field(default="agent-router:", description="Prefix of every Redis key this router writes.")
    redis_timeout: float = Field(default=0.5, gt=0, description="Seconds to connect to Redis and to wait for each "
                                 "reply (one immediate retry on a fresh connection); a whole call is bounded by "
                                 "4 times this. Beyond it the store counts as unreachable (fail open / closed).")
    database_url: str = Field(
        default="sqlite:///agent-router.db",
        description="Usage ledger, audit trail and keys: sqlite:///PATH or postgresql://...",
    )
    database_connect_timeout: float = Field(default=5.0, gt=0, description="Seconds to open a PostgreSQL "
                                            "connection (TCP and login).")
    database_statement_timeout: float = Field(default=30.0, gt=0, description="Seconds a PostgreSQL statement "
                                              "may run (server-side statement_timeout); the router stops waiting "
                                              "and drops the connection 2 s after that, so a store that stopped "
                                              "answering never holds a thread, a request or the shutdown.")
    admin_key: str | None = Field(default=None, description="Bearer key for /admin/*; admin API is off when unset.")
    keys_refresh_interval: float = Field(default=1.0, description="Seconds between reloads of the API keys stored "
                                         "in the database (creations and revocations made elsewhere).")
    keys_max_staleness: float = Field(default=10.0, description="Database keys are refused (503) when the key "
                                      "store has not been readable for this long: revocations fail closed.")
    freeze_refresh_interval: float = Field(default=0.25, gt=0, description="Seconds between reads of the shared "
                                           "freeze map in Redis (the kill switch reaches every replica this fast).")
    freeze_max_staleness: float = Field(default=3.0, gt=0, description="With Redis configured, every key is refused "
                                        "(503) when neither Redis nor the database has been readable for this "
                                        "long: freezes fail closed.")
    max_body_bytes: int = Field(default=4 * 1024 * 1024, description="Larger request bodies get 413.")
    header_timeout: float = Field(default=10.0, gt=0, description="Seconds a client has to send a request's line "
                                  "and headers (from connecting, or from the first byte of a later request on a "
                                  "kept-alive connection); then 408 and the connection is closed.")
    body_timeout: float = Field(default=30.0, gt=0, description="Longest silence, in seconds, while a request "
                                "body arrives; then 408 and the connection is closed.")
    keepalive_timeout: float = Field(default=5.0, gt=0, description="Seconds an idle kept-alive connection stays "
                                     "open between requests (behind a load balancer: above the balancer's own).")
    max_header_bytes: int = Field(default=32 * 1024, ge=1024, description="Larger request heads (request line "
                                  "and headers) get 431 and the connection is closed.")
    max_connections: int | None = Field(default=None, ge=1, description="Open connections per process; beyond it "
                                        "the longest-idle kept-alive connection is closed, or the new one gets 503 "
                                        "when none is idle. Unset: half of (open-file limit - 128).")
    max_json_depth: int = Field(default=64, ge=8, le=200, description="Chat bodies nested deeper (objects and "
                                "arrays) get 400; at most 200, so every body accepted can still be re-encoded "
                                "for the upstream (the encoder stops at 254 levels).")
    max_tools: int = Field(default=512, ge=1, description="Chat requests offering more tools (or functions) get 400.")
    max_messages: int = Field(default=10_000, ge=1, description="Chat requests with more messages get 400.")
    max_tool_calls: int = Field(default=10_000, ge=0, description="Chat requests whose history holds more tool "
                                "calls (all assistant messages together) get 400.")
    max_tool_name_chars: int = Field(default=256, ge=64, description="A longer tool name (offered or called in "
                                     "history) gets 400.")
    max_tool_description_chars: int = Field(default=65_536, ge=1, description="A longer tool description gets 400.")
    max_message_chars: int = Field(default=4 * 1024 * 1024, ge=1, description="A message whose content (its text "
                                   "parts together) is longer gets 400.")
    watch_config: bool = Field(default=True, description="Reload when a config or rule file changes on disk.")
    watch_interval: float = 1.0
    limits_fail_open: bool = Field(default=True, description="When Redis is down, let rate limits (and, unless "
                                   "budgets_fail_open says otherwise, budgets) pass; false refuses with 503.")
    budgets_fail_open: bool | None = Field(default=None, description="When Redis is down, let USD budgets pass; "
                                           "unset follows limits_fail_open.")
    opentelemetry: bool | None = Field(default=None, description="FastAPI's native OpenTelemetry spans and metrics "
                                       "per request. Unset: on when OpenTelemetry is configured as the app is built "
                                       "(FASTAPI_OTEL_AUTO_CONFIGURE, an OTEL_*_EXPORTER or OTLP endpoint variable, "
                                       "or a global tracer provider already installed), else off.")
    mcp_json_response: bool = Field(default=False, description="MCP gateway: answer each request with one JSON "
                                    "body instead of an SSE stream (progress and server requests then cannot be "
                                    "relayed during a call).")
    mcp_session_idle_seconds: float = Field(default=1800.0, gt=0, description="MCP gateway: an agent session with "
                                            "no request for this long is closed, with its upstream connections.")
    mcp_max_sessions: int = Field(default=10_000, gt=0, description="MCP gateway: open agent sessions at most; "
                                  "one more is refused with 503.")
    mcp_max_sessions_per_agent: int = Field(default=100, gt=0, description="MCP gateway: open sessions one agent "
                                            "may hold; one more is refused with 429.")
    mcp_max_request_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, description="MCP gateway: largest request "
                                       "body; larger is refused with 413.")
    ledger_flush_interval: float = Field(default=0.5, description="Seconds between batched writes of usage records "
                                         "and audit events.")
    ledger_batch_size: int = Field(default=500, description="Write sooner once this many requests wait.")
    ledger_max_pending: int = Field(default=100_000, description="Requests kept in memory while the database is "
                                    "unreachable; beyond this the oldest records are dropped (logged as errors).")
    ledger_drain_timeout: float = Field(default=15.0, description="On shutdown, how long to keep retrying an "
                                        "unreachable database before the queued records are given up.")
    ledger_spill_file: str | None = Field(default=None, description="Where shutdown writes the records the "
                                          "database did not take within the drain timeout (JSON lines, "
                                          "fsynced), replayed at the next start. Unset: agent-router-spill.jsonl "
                                          "next to the SQLite file, or in the working directory for PostgreSQL.")
    responses_store: bool = Field(default=True, description="Keep the Responses API answers the router served "
                                  "(records database) for previous_response_id, GET and DELETE /v1/responses/{id}; "
                                  "false: nothing is kept and every previous_response_id is unknown.")
    responses_retention_hours: float = Field(default=720.0, gt=0, description="Hours a stored response stays "
                                             "retrievable; older ones are never returned and are purged.")
    responses_max_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, description="A response whose JSON (with "
                                     "the input it answered; in characters, bytes for ASCII) is larger is not "
                                     "stored (logged, counted).")
    responses_memory_items: int = Field(default=2000, ge=0, description="Most recent stored responses also kept "
                                        "in memory, so a follow-up finds one before its write lands.")
    responses_memory_bytes: int = Field(default=64 * 1024 * 1024, ge=0, description="Bytes of JSON those "
                                        "in-memory responses may take together.")
    audit_key: SecretStr | None = Field(default=None, description="Secret that makes the audit chain an HMAC "
                                        "chain: rewriting it then needs this key, not just database access. "
                                        "Only a short hash of it (the key id) is stored.")
    audit_anchor_interval: float = Field(default=60.0, description="Seconds between publications of the audit "
                                         "chain's head outside the database (log line, anchor file, Redis).")
    audit_anchor_file: str | None = Field(default=None, description="Append each new audit head to this file "
                                          "as a JSON line (fsynced), for audit verify --anchor FILE.")
    audit_anchor_redis: bool = Field(default=True, description="With REDIS_URL set, also keep the latest audit "
                                     "head in the Redis key <REDIS_PREFIX>audit:anchor.")

    @field_validator("audit_key")
    @classmethod
    def _audit_key_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("set but empty (unset it, or set a secret)")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level not in LOG_LEVELS:
            raise ValueError(f"use one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        database_dialect(value)
        return value


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and ``overrides`` (command-line values); raise :class:`SettingsError` naming
    the setting and its bad value (a secret by name only) instead of pydantic's multi-line report."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError("; ".join(_problem(error, overrides) for error in exc.errors())) from None


def _problem(error: Any, overrides: dict[str, Any]) -> str:
    name = str(error["loc"][0]) if error.get("loc") else "?"
    where = f"--{name.replace('_', '-')}" if name in overrides else f"{ENV_PREFIX}{name.upper()}"
    reason = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if name in SECRET_SETTINGS:
        return f"invalid {where}: {reason}"
    value = str(error.get("input", ""))
    return f"invalid {where} {redact_url(value) if name in URL_SETTINGS else value!r}: {reason}"
