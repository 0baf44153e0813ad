"""What a fake upstream does with one request. A test queues these per upstream model name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Text:
    content: str = "Hello from the fake upstream."
    chunk_size: int = 6
    finish_reason: str = "stop"
    usage: tuple[int, int] | None = (11, 7)
    """(prompt, completion) tokens the upstream reports; None reports no usage at all."""


@dataclass
class ToolCalls:
    """Tool calls the model 'decides' to make: (name, arguments JSON text) pairs, in parallel."""

    calls: list[tuple[str, str]]
    content: str | None = None
    fragment: int = 5
    """Streamed arguments are cut into pieces this long."""
    usage: tuple[int, int] | None = (20, 9)


@dataclass
class Error:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class EchoCredentials:
    """Refuse the request and quote the credentials it carried back in the error text, as some providers do
    on a 401: the Authorization header, the key alone, and every request header."""

    status: int = 401


@dataclass
class Hang:
    seconds: float = 30.0


@dataclass
class InvalidJSON:
    pass


@dataclass
class Garbage:
    """Answer 200 with these bytes as they are, streamed or not: an upstream gone wrong (a proxy's HTML page,
    events that are not JSON)."""

    body: bytes = b"<html><body>502 Bad Gateway</body></html>"
    content_type: str = "text/html"


@dataclass
class ResetMidStream:
    """Send this many chunks of a text answer, then drop the connection."""

    after_chunks: int = 2


@dataclass
class SlowStream:
    """Stream a text answer with a pause between chunks."""

    delay: float = 0.05
    content: str = "slow words arrive one by one"


@dataclass
class Scripted:
    """A hostile or quirky upstream, word for word: the whole answer's JSON body, or each stream event's data
    (bytes are sent as they are, anything else as JSON); ``[DONE]`` follows the events."""

    answer: Any = None
    events: list[Any] = field(default_factory=list)


Behaviour = (Text | ToolCalls | Error | EchoCredentials | Hang | InvalidJSON | Garbage | ResetMidStream | SlowStream
             | Scripted)


def openai_error(message: str, code: str | None = None, type_: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def anthropic_error(message: str, type_: str = "invalid_request_error") -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}}


CONTEXT_EXCEEDED_OPENAI = openai_error(
    "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
    code="context_length_exceeded")
CONTEXT_EXCEEDED_ANTHROPIC = anthropic_error("prompt is too long: 210000 tokens > 200000 maximum")
