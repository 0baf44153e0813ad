"""The questions every stage asks of a request or an answer, answered once per wire format.

A :class:`Codec` is all the pipeline knows of a wire format (Chat Completions, Anthropic Messages, and the
Responses API next): identity, limits, rules, the executor, the ledger and the audit trail stay single and read
format-neutral facts through it. A codec is stateless; the per-stream state machines it hands out
(:class:`EventFilter`) keep the state of one stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from router.api.request_caps import RequestCaps
    from router.capabilities import Needs
    from router.context import RequestContext
    from router.errors import RouterError
    from router.state import RouterState


class EventFilter(Protocol):
    """A small state machine fed one stream event payload (JSON bytes) at a time: the response-side policy of a
    stream, or a translation from one wire's events to another's."""

    def feed(self, payload: bytes) -> list[bytes]:
        """The payloads to send on for this one, in order (none, it, or others)."""
        ...

    def finish(self) -> list[bytes]:
        """The stream ended: what is still owed (held calls settled, notices, closing events)."""
        ...


class Codec(Protocol):
    name: str
    """``chat``, ``messages``, ``responses``: the ingress format, as rules (``api:``) and records name it."""
    stream_end: bytes
    """Bytes that close a successful stream after its last event (``data: [DONE]`` for chat; none for Messages)."""
    stateful: bool
    """Whether the wire keeps state between requests (Responses' ``previous_response_id``): then the pipeline calls
    :meth:`prepare` before the policy and :meth:`kept` after a successful answer."""

    # -- the request ---------------------------------------------------------------------------------
    def parse(self, body: bytes, caps: RequestCaps) -> dict[str, Any]:
        """The body as an object, checked as far as the stages need (model, stream, shapes); InvalidRequest else."""
        ...

    async def prepare(self, state: RouterState, ctx: RequestContext) -> None:
        """Bring in the state the request refers to (only called when :attr:`stateful`)."""
        ...

    def kept(self, state: RouterState, ctx: RequestContext, data: dict[str, Any] | None) -> None:
        """Keep what was served (the whole answer, or None for a stream: the codec's stream state has it)."""
        ...

    def review_request(self, ctx: RequestContext) -> None:
        """Request-side policy: keep only the tools, tool choice and history the role allows (or refuse)."""
        ...

    def tools_offered(self, payload: dict[str, Any]) -> bool: ...

    def needs(self, payload: dict[str, Any]) -> Needs:
        """What a deployment must support to serve this request (tools, JSON mode, images)."""
        ...

    def prompt_pieces(self, payload: dict[str, Any]) -> tuple[int, list[str]]:
        """(fixed tokens, texts to tokenize) of the prompt, for estimates and windows."""
        ...

    def message_count(self, payload: dict[str, Any]) -> int: ...

    def prepare_stream(self, ctx: RequestContext) -> None:
        """Adjust a streamed request before it goes out (chat asks for the usage chunk)."""
        ...

    # -- a whole answer ------------------------------------------------------------------------------
    def filter_answer(self, ctx: RequestContext, data: dict[str, Any]) -> bool:
        """Response-side policy on a whole answer, in place; True when it changed."""
        ...

    def may_carry_call(self, raw: bytes) -> bool:
        """Whether raw answer bytes could hold a tool call (then they are never relayed unparsed)."""
        ...

    def answer_usage(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any] | None:
        """The answer's usage in the ledger's (OpenAI-style) shape, when plausible; None else."""
        ...

    def answer_text(self, data: dict[str, Any]) -> str:
        """The generated text of a whole answer (for the estimate when no usage came)."""
        ...

    # -- a stream ------------------------------------------------------------------------------------
    def stream_filter(self, ctx: RequestContext) -> EventFilter: ...

    def stream_usage(self, ctx: RequestContext, payload: bytes) -> bool:
        """Take usage from one event into ``ctx.usage``; True when the event must be hidden from the client."""
        ...

    def streamed_text(self, chunks: Iterable[bytes]) -> str: ...

    def frame(self, payloads: list[bytes]) -> bytes:
        """Event payloads as SSE bytes, in one piece (one write)."""
        ...

    # -- errors --------------------------------------------------------------------------------------
    def error_body(self, exc: RouterError) -> tuple[int, bytes]:
        """(status, body) of an error answer in this wire's shape."""
        ...

    def error_event(self, exc: RouterError, ctx: RequestContext) -> bytes:
        """An error that ends a stream already under way, as SSE bytes (after the events ``ctx`` saw go out)."""
        ...
