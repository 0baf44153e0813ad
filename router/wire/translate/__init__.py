"""Between wire formats: a request in the caller's format for a deployment that speaks another, and its answer
(whole or streamed, event by event) back. The executor calls this only when the two formats differ.

The translators are our own, small and pure (see :mod:`router.wire.translate.requests`, ``answers`` and
``streams`` for chat <-> Messages; ``responses_requests``, ``responses_answers``, ``responses_streams`` and
``responses_chunks`` for chat <-> Responses): litellm's Anthropic adapters drop ``cache_control`` and break
thinking signatures. Chat is the hub: Messages <-> Responses is the two translations composed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from providers.base import LastBatch
from router.config.schema import DeploymentSpec
from router.context import RequestContext
from router.wire import CHAT, MESSAGES, RESPONSES
from router.wire.codec import EventFilter

FORWARDED_PREFIX = "anthropic-"
"""Headers a Messages caller sends that a Messages upstream must get verbatim (an open set: never allow-listed)."""


def upstream_request(ctx: RequestContext, wire: str, deployment: DeploymentSpec) -> dict[str, Any]:
    """``ctx.payload`` in format ``wire``, translated once per format (a fallback chain may try several).
    Chat is the hub: Messages <-> Responses goes through it (and reuses a chat translation already made)."""
    cached = ctx.translated.get(wire)
    if cached is not None:
        return cached
    from router.wire.translate import requests, responses_requests

    source = ctx.wire
    if source == MESSAGES and wire == CHAT:
        body = requests.messages_to_chat(ctx.payload, deployment)
    elif source == CHAT and wire == MESSAGES:
        body = requests.chat_to_messages(ctx.payload, deployment)
    elif source == RESPONSES and wire == CHAT:
        body = responses_requests.responses_to_chat(ctx.payload, deployment)
    elif source == CHAT and wire == RESPONSES:
        body = responses_requests.chat_to_responses(ctx.payload, deployment)
    elif source == RESPONSES and wire == MESSAGES:
        body = requests.chat_to_messages(upstream_request(ctx, CHAT, deployment), deployment)
    elif source == MESSAGES and wire == RESPONSES:
        body = responses_requests.chat_to_responses(upstream_request(ctx, CHAT, deployment), deployment)
    else:
        raise _untranslatable(source, wire)
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
    from router.wire.translate import answers, responses_answers

    model = ctx.requested_model
    if source == CHAT and target == MESSAGES:
        return answers.chat_to_messages(data, model)
    if source == MESSAGES and target == CHAT:
        return answers.messages_to_chat(data, model)
    if source == CHAT and target == RESPONSES:
        return responses_answers.chat_to_response(data, ctx)
    if source == RESPONSES and target == CHAT:
        return responses_answers.response_to_chat(data, model)
    if source == MESSAGES and target == RESPONSES:
        return responses_answers.chat_to_response(answers.messages_to_chat(data, model), ctx)
    if source == RESPONSES and target == MESSAGES:
        return answers.chat_to_messages(responses_answers.response_to_chat(data, model), model)
    raise _untranslatable(target, source)


def stream_translator(source: str, target: str, ctx: RequestContext) -> EventFilter:
    """The event filter that turns a ``source``-format stream into the ``target`` caller's events."""
    from router.wire.translate import responses_chunks, responses_streams, streams

    model = ctx.requested_model
    if source == CHAT and target == MESSAGES:
        return streams.ChatToMessages(model)
    if source == MESSAGES and target == CHAT:
        return streams.MessagesToChat(model)
    if source == CHAT and target == RESPONSES:
        return responses_streams.ChatToResponses(ctx)
    if source == RESPONSES and target == CHAT:
        return responses_chunks.ResponsesToChat(model)
    if source == MESSAGES and target == RESPONSES:
        return responses_streams.Chained(streams.MessagesToChat(model), responses_streams.ChatToResponses(ctx))
    if source == RESPONSES and target == MESSAGES:
        return responses_streams.Chained(responses_chunks.ResponsesToChat(model), streams.ChatToMessages(model))
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
