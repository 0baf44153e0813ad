"""The benchmark's modes, one row each: which wire, whole answer or stream, what is sent and what comes back.

The fake upstream serves every mode under its own root (``/<mode>``): chat modes at ``/<mode>/v1/chat/completions``,
Messages modes at ``/<mode>/v1/messages``, Responses modes at ``/<mode>/v1/responses``, so one upstream process serves
every contestant in every mode and an Anthropic-format provider takes ``/<mode>`` as its base URL, as it would take
``https://api.anthropic.com``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench import messages_payloads, payloads, responses_payloads

CHAT, MESSAGES, RESPONSES = "chat", "messages", "responses"


@dataclass(frozen=True)
class Mode:
    name: str
    title: str
    wire: str
    """``chat`` (OpenAI Chat Completions, Bearer key), ``messages`` (Anthropic, ``x-api-key`` and
    ``anthropic-version``) or ``responses`` (OpenAI Responses, Bearer key)."""
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
    call_marker: bytes | None = None
    """Found only where the answer carries the call, when ``tool_name`` alone could appear elsewhere (a Response
    echoes the tools it was offered); None: ``tool_name`` itself."""
    chat_twin: str | None = None
    """For a Messages or Responses mode, the chat mode with the same workload (whole or streamed): the report
    compares them."""

    def request(self) -> bytes:
        if self.wire == MESSAGES:
            return messages_payloads.request_body(self.stream)
        if self.wire == RESPONSES:
            return responses_payloads.request_body(self.stream)
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


_CHAT_PATH, _MESSAGES_PATH, _RESPONSES_PATH = "/v1/chat/completions", "/v1/messages", "/v1/responses"
MODES: dict[str, Mode] = {mode.name: mode for mode in (
    Mode("plain", "non-streaming", CHAT, False, _CHAT_PATH, payloads.completion_body, "application/json",
         b'"choices"'),
    Mode("sse", "streaming (SSE)", CHAT, True, _CHAT_PATH, payloads.stream_body, "text/event-stream",
         b"data: [DONE]"),
    Mode("messages", "Messages, non-streaming", MESSAGES, False, _MESSAGES_PATH, messages_payloads.message_body,
         "application/json", b'"stop_reason"', chat_twin="plain"),
    Mode("messages-sse", "Messages, streaming (SSE)", MESSAGES, True, _MESSAGES_PATH,
         messages_payloads.stream_body, "text/event-stream", b"event: message_stop", chat_twin="sse"),
    Mode("responses", "Responses, non-streaming", RESPONSES, False, _RESPONSES_PATH, responses_payloads.response_body,
         "application/json", b'"object":"response"', call_marker=responses_payloads.CALL_MARKER, chat_twin="plain"),
    Mode("responses-sse", "Responses, streaming (SSE)", RESPONSES, True, _RESPONSES_PATH,
         responses_payloads.stream_body, "text/event-stream", b"event: response.completed",
         call_marker=responses_payloads.CALL_MARKER, chat_twin="sse"),
)}
"""In the order the report shows them."""
