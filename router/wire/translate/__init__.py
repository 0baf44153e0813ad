"""Between wire formats: a request in the caller's format for a deployment that speaks another, and its answer
(whole or streamed, event by event) back. The executor calls this only when the two formats differ.

The translators are our own, small and pure (see :mod:`router.wire.translate.requests`, ``answers`` and
``streams``): litellm's Anthropic adapters drop ``cache_control`` and break thinking signatures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from providers.base import LastBatch
from router.config.schema import DeploymentSpec
from router.context import RequestContext
from router.wire import CHAT, MESSAGES
from router.wire.codec import EventFilter

FORWARDED_PREFIX = "anthropic-"
"""Headers a Messages caller sends that a Messages upstream must get verbatim (an open set: never allow-listed)."""


def upstream_request(ctx: RequestContext, wire: str, deployment: DeploymentSpec) -> dict[str, Any]:
    """``ctx.payload`` in format ``wire``, translated once per format (a fallback chain may try several)."""
    cached = ctx.translated.get(wire)
    if cached is not None:
        return cached
    from router.wire.translate import requests

    if ctx.wire == MESSAGES and wire == CHAT:
        body = requests.messages_to_chat(ctx.payload, deployment)
    elif ctx.wire == CHAT and wire == MESSAGES:
        body = requests.chat_to_messages(ctx.payload, deployment)
    else:
        raise _untranslatable(ctx.wire, wire)
    ctx.translated[wire] = body
    return body


def upstream_headers(ctx: RequestContext, wire: str) -> dict[str, str] | None:
    """Headers that travel with the body: ``anthropic-*`` from a Messages caller to a Messages upstream."""
    if wire != MESSAGES or ctx.wire != MESSAGES:
        return None
    forwarded = {name: value for name, value in ctx.headers.items() if name.startswith(FORWARDED_PREFIX)}
    return forwarded or None


def translate_answer(source: str, target: str, data: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    """A whole answer from a ``source``-format upstream, as the ``target``-format caller expects it."""
    from router.wire.translate import answers

    if source == CHAT and target == MESSAGES:
        return answers.chat_to_messages(data, ctx.requested_model)
    if source == MESSAGES and target == CHAT:
        return answers.messages_to_chat(data, ctx.requested_model)
    raise _untranslatable(target, source)


def stream_translator(source: str, target: str, ctx: RequestContext) -> EventFilter:
    from router.wire.translate import streams

    if source == CHAT and target == MESSAGES:
        return streams.ChatToMessages(ctx.requested_model)
    if source == MESSAGES and target == CHAT:
        return streams.MessagesToChat(ctx.requested_model)
    raise _untranslatable(target, source)


class TranslatedStream:
    """A stream's batches from a ``source``-format upstream, translated event by event for the caller. The
    translator's closing events go out with the last batch; ``aclose`` reaches the upstream's stream."""

    def __init__(self, source: str, target: str, rest: AsyncIterator[list[bytes]], ctx: RequestContext) -> None:
        self._rest = rest
        self._translator = stream_translator(source, target, ctx)
        self._ended = False

    def first(self, batch: list[bytes]) -> list[bytes]:
        return self._translate(batch)

    def __aiter__(self) -> TranslatedStream:
        return self

    async def __anext__(self) -> list[bytes]:
        if self._ended:
            raise StopAsyncIteration
        try:
            batch = await anext(self._rest)
        except StopAsyncIteration:
            self._ended = True
            return LastBatch(self._translator.finish())
        return self._translate(batch)

    def _translate(self, batch: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        for payload in batch:
            out.extend(self._translator.feed(payload))
        if type(batch) is LastBatch:
            self._ended = True
            out.extend(self._translator.finish())
            return LastBatch(out)
        return out

    async def aclose(self) -> None:
        aclose = getattr(self._rest, "aclose", None)
        if aclose is not None:
            await aclose()


def _untranslatable(caller: str, upstream: str) -> Exception:
    from router.errors import RequestNotForwardable

    return RequestNotForwardable(f"a {caller} request cannot be translated for a {upstream} deployment")
