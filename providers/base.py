"""The one small interface every provider adapter implements.

A provider takes a :class:`ChatCall` (an OpenAI-shaped chat body whose ``model`` is already the upstream
model name) and returns either a :class:`Completion` or an async iterator of stream events. A stream event
is the JSON payload of one SSE ``data:`` line, as bytes, in OpenAI's chunk shape; ``[DONE]`` is not
yielded. Failures are raised as the typed errors of :mod:`router.errors`, never as strings or as the
client library's own exceptions. Errors that happen before the first event must be raised by the first
``__anext__``, so the executor can still fall back to another deployment.

A stream bounds its own wait for each event by the call's ``timeout`` (raising
:class:`router.errors.UpstreamTimeout`): the executor arms no timer per chunk. An adapter may also offer
``stream_batches(call)``, the same events as lists of those that arrived together, which the router relays in
one write each; it may yield its final batch (the one the upstream's ``[DONE]`` came with) as a
:class:`LastBatch`, so that the router ends the client's stream in that same write.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(slots=True)
class ChatCall:
    body: dict[str, Any]
    timeout: float
    request_id: str = ""
    extra_headers: dict[str, str] | None = None
    wire: str = "chat"
    """The format ``body`` is in, and so the endpoint to call (``chat``, ``messages``, ``responses``,
    ``embeddings``): one of the adapter's ``wires``."""


class LastBatch(list[bytes]):
    """A batch after which the stream is over: nothing more will be yielded."""

    __slots__ = ()


@dataclass(slots=True)
class Completion:
    """A whole answer: ``data`` parsed; ``raw`` the upstream bytes when they can be relayed unchanged."""

    data: dict[str, Any]
    raw: bytes | None = None


def served_wire(provider: object, caller: str) -> str:
    """The format a request of format ``caller`` goes to ``provider`` in: the caller's own when the adapter serves
    it natively, else the adapter's main ``wire`` (and the executor translates)."""
    wires = getattr(provider, "wires", None)
    if wires is not None and caller in wires:
        return caller
    wire: str = getattr(provider, "wire", "chat")
    return wire


class Provider(Protocol):
    """Optional: ``keeps_deadline = True`` promises that ``complete`` never outlives ``call.timeout`` (connect,
    send and read included), so the executor arms no timer of its own around it. ``wire`` names the format the
    adapter takes and answers in (``chat`` when absent; ``messages`` for Anthropic's): the executor translates
    when it differs from the caller's. ``wires`` (optional) lists every format the adapter serves natively (an
    OpenAI-compatible upstream may serve ``chat`` and ``responses``); a caller's format in it goes through as it is,
    with :attr:`ChatCall.wire` saying which."""

    name: str

    async def complete(self, call: ChatCall) -> Completion: ...

    def stream(self, call: ChatCall) -> AsyncIterator[bytes]: ...

    async def close(self) -> None: ...
