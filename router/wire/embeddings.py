"""OpenAI embeddings (``POST /v1/embeddings``): the codec.

Embeddings walk the same pipeline as every other request (identity, model access, limits, rules, fallback, the
ledger and the audit trail) but carry no tools and never stream, so the policy hooks have nothing to do and the
answer is relayed as the upstream's bytes. Their usage has input tokens only: ``prompt_tokens`` is read from the
answer (completion 0), and an answer without a possible count is estimated from the input like any other.
Only an adapter that serves the ``embeddings`` API natively can answer (:class:`Needs` ``embeddings``): there is
no translation to a chat or Messages upstream.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson

from router import sse
from router.api.parse_embeddings import parse_embeddings_body
from router.api.request_caps import RequestCaps
from router.capabilities import Needs
from router.context import RequestContext
from router.errors import RouterError
from router.ledger.usage import valid_count
from router.wire.codec import EventFilter

if TYPE_CHECKING:
    from router.state import RouterState

log = logging.getLogger("agent_router.ledger")

_NEEDS = Needs(embeddings=True)


def embedding_usage(usage: Any) -> dict[str, Any] | None:
    """An embeddings answer's usage in the ledger's shape (completion 0), or None when its prompt count is
    missing or impossible."""
    if not isinstance(usage, dict) or not valid_count(usage.get("prompt_tokens")):
        return None
    prompt = int(usage["prompt_tokens"])
    return {"prompt_tokens": prompt, "completion_tokens": 0, "total_tokens": prompt}


def input_pieces(value: Any) -> tuple[int, list[str]]:
    """(token ids given as such, texts to tokenize) of an ``input`` of any of its four shapes."""
    if isinstance(value, str):
        return 0, [value]
    if not isinstance(value, list):
        return 0, []
    fixed, texts = 0, []
    for item in value:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, list):
            fixed += len(item)
        else:
            fixed += 1  # one token id of a flat token list
    return fixed, texts


class _Unchanged:
    """Embeddings never stream (the parser refuses ``stream``); a filter is still owed by the protocol."""

    def feed(self, payload: bytes) -> list[bytes]:
        return [payload]

    def finish(self) -> list[bytes]:
        return []


class EmbeddingsCodec:
    name = "embeddings"
    stream_end = b""
    stateful = False

    async def prepare(self, state: RouterState, ctx: RequestContext) -> None:
        return None

    def kept(self, state: RouterState, ctx: RequestContext, data: dict[str, Any] | None) -> None:
        return None

    def parse(self, body: bytes, caps: RequestCaps) -> dict[str, Any]:
        return parse_embeddings_body(body, caps)

    def review_request(self, ctx: RequestContext) -> None:
        """No tools, tool choice or history: nothing for the tool policy to keep or refuse."""

    def tools_offered(self, payload: dict[str, Any]) -> bool:
        return False

    def needs(self, payload: dict[str, Any]) -> Needs:
        return _NEEDS

    def prompt_pieces(self, payload: dict[str, Any]) -> tuple[int, list[str]]:
        return input_pieces(payload.get("input"))

    def message_count(self, payload: dict[str, Any]) -> int:
        return 0

    def prepare_stream(self, ctx: RequestContext) -> None:
        """Never called: a streamed embeddings request is refused when parsed."""

    def filter_answer(self, ctx: RequestContext, data: dict[str, Any]) -> bool:
        return False

    def may_carry_call(self, raw: bytes) -> bool:
        return False

    def answer_usage(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any] | None:
        reported = data.get("usage")
        usage = embedding_usage(reported)
        if usage is None and reported is not None:
            log.warning("request %s: the upstream reported impossible usage; its tokens will be estimated instead",
                        ctx.request_id)
        return usage

    def answer_text(self, data: dict[str, Any]) -> str:
        return ""  # vectors, no generated text: the estimate counts the input only

    def stream_filter(self, ctx: RequestContext) -> EventFilter:
        return _Unchanged()

    def stream_usage(self, ctx: RequestContext, payload: bytes) -> bool:
        return False

    def streamed_text(self, chunks: Iterable[bytes]) -> str:
        return ""

    def frame(self, payloads: list[bytes]) -> bytes:
        return sse.events(payloads)

    def error_body(self, exc: RouterError) -> tuple[int, bytes]:
        return exc.status, orjson.dumps(exc.to_body())

    def error_event(self, exc: RouterError, ctx: RequestContext) -> bytes:
        return sse.json_event(exc.to_body())
