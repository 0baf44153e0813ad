"""Which coding-agent session a request belongs to, from the header its client names it in.

Claude Code sends ``x-claude-code-session-id``; Codex CLI sends ``session_id``. The session keys records (usage per
session), split routes (one arm per session) and session affinity (one deployment per session while healthy).
"""

from __future__ import annotations

SESSION_HEADERS = ("x-claude-code-session-id", "session_id")
CLIENT_HEADER_NAMES = frozenset(("session_id", "originator"))
"""Codex CLI's session id and client name: headers without a prefix that records and rules read."""


def session_of(headers: dict[str, str]) -> str | None:
    """The session id of a request's (lower-cased) headers; None when it names none."""
    for name in SESSION_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None
