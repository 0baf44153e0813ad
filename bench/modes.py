"""The benchmark's modes, one row each: which wire, whole answer or stream, what is sent and what comes back.

The fake upstream serves every mode under its own root (``/<mode>``): chat modes at ``/<mode>/v1/chat/completions``,
Messages modes at ``/<mode>/v1/messages``, so one upstream process serves every contestant in every mode and an
Anthropic-format provider takes ``/<mode>`` as its base URL, as it would take ``https://api.anthropic.com``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench import messages_payloads, payloads

CHAT, MESSAGES = "chat", "messages"


@dataclass(frozen=True)
class Mode:
    name: str
    title: str
    wire: str
    """``chat`` (OpenAI Chat Completions, Bearer key) or ``messages`` (Anthropic, ``x-api-key`` and
    ``anthropic-version``)."""
    stream: bool
    path: str
    """The API path a client posts to, on a contestant and (under ``/<mode>``) on the fake upstream."""
    answer: Callable[[], bytes]
    """The fake upstream's canned answer."""
    answer_type: str
    whole_marker: bytes
    """Found in a complete answer: a stream's last event, or a whole answer's content field."""
    tool_name: bytes = b"run_shell"
    """The allowed tool call every answer carries; an answer without it lost it on the way."""
    chat_twin: str | None = None
    """For a Messages mode, the chat mode with the same workload (whole or streamed): the report compares them."""

    def request(self) -> bytes:
        if self.wire == MESSAGES:
            return messages_payloads.request_body(self.stream)
        return payloads.request_body(self.stream)

    def headers(self, key: str | None) -> dict[str, str]:
        """The request headers a client of this wire sends, with ``key`` as its credential when given."""
        headers = {"content-type": "application/json"}
        if self.wire == MESSAGES:
            headers["anthropic-version"] = messages_payloads.ANTHROPIC_VERSION
            if key:
                headers["x-api-key"] = key
        elif key:
            headers["authorization"] = f"Bearer {key}"
        return headers


_CHAT_PATH, _MESSAGES_PATH = "/v1/chat/completions", "/v1/messages"
MODES: dict[str, Mode] = {mode.name: mode for mode in (
    Mode("plain", "non-streaming", CHAT, False, _CHAT_PATH, payloads.completion_body, "application/json",
         b'"choices"'),
    Mode("sse", "streaming (SSE)", CHAT, True, _CHAT_PATH, payloads.stream_body, "text/event-stream",
         b"data: [DONE]"),
    Mode("messages", "Messages, non-streaming", MESSAGES, False, _MESSAGES_PATH, messages_payloads.message_body,
         "application/json", b'"stop_reason"', chat_twin="plain"),
    Mode("messages-sse", "Messages, streaming (SSE)", MESSAGES, True, _MESSAGES_PATH,
         messages_payloads.stream_body, "text/event-stream", b"event: message_stop", chat_twin="sse"),
)}
"""In the order the report shows them."""
