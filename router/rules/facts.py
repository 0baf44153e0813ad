"""The facts about one request that rule conditions test, read from the context (lazily where costly)."""

from __future__ import annotations

from typing import Any

from router.agent_session import CLIENT_HEADER_NAMES, session_of
from router.context import RequestContext
from router.tokens import prompt_bounds, prompt_ceiling, prompt_fits, prompt_tokens
from router.wire import codec_for

HEADER_PREFIX = "x-agent-router-"


OWN_NAMES = (HEADER_PREFIX, "x-claude-code-", "anthropic-")
"""Header names rules use as written; any other name is taken as ``x-agent-router-<name>``."""


def header_name(name: str) -> str:
    """Rule files may write ``team`` for the header ``x-agent-router-team``; Claude Code's ``x-claude-code-*`` and
    ``anthropic-*`` headers, and Codex's ``session_id`` and ``originator``, are matched under their own names."""
    name = name.lower()
    return name if name.startswith(OWN_NAMES) or name in CLIENT_HEADER_NAMES else HEADER_PREFIX + name


class RequestFacts:
    """What a rule may ask about a request. The prompt's token count is computed on first use only."""

    __slots__ = ("ctx",)

    def __init__(self, ctx: RequestContext) -> None:
        self.ctx = ctx

    @property
    def model(self) -> str:
        return self.ctx.requested_model

    @property
    def agent(self) -> str | None:
        return self.ctx.agent

    @property
    def role(self) -> str | None:
        return self.ctx.role

    @property
    def user(self) -> str | None:
        user = self.ctx.payload.get("user")
        return user if isinstance(user, str) else None

    def header(self, name: str) -> str | None:
        return self.ctx.headers.get(name)

    def metadata(self, key: str) -> str | None:
        metadata = self.ctx.payload.get("metadata")
        if not isinstance(metadata, dict) or key not in metadata:
            return None
        value: Any = metadata[key]
        return value if isinstance(value, str) else str(value)

    @property
    def tools_offered(self) -> bool:
        return codec_for(self.ctx.wire).tools_offered(self.ctx.payload)

    @property
    def api(self) -> str:
        """The caller's wire format: ``chat``, ``messages``."""
        return self.ctx.wire

    @property
    def stream(self) -> bool:
        return self.ctx.stream

    @property
    def prompt_tokens(self) -> int:
        return prompt_tokens(self.ctx)

    @property
    def prompt_token_ceiling(self) -> int | None:
        """A bound of :attr:`prompt_tokens` from the body's size alone (None when unknown), free to compute."""
        return prompt_ceiling(self.ctx)

    @property
    def prompt_token_bounds(self) -> tuple[int, int]:
        """Cheap bounds of :attr:`prompt_tokens` (no tokenizer)."""
        return prompt_bounds(self.ctx)

    def prompt_fits(self, window: int) -> bool:
        """``prompt_tokens <= window``, without counting when the ceiling or the bounds already tell."""
        return prompt_fits(self.ctx, window)

    @property
    def session(self) -> str | None:
        """The coding agent's session id (:func:`router.agent_session.session_of`): a split keeps a session on one
        arm."""
        return session_of(self.ctx.headers)

    @property
    def sticky_keys(self) -> dict[str, str | None]:
        return {"agent": self.agent, "user": self.user}
