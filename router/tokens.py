"""Estimate prompt sizes in tokens with tiktoken, offline, before any provider is asked.

Encodings: ``o200k_base`` for gpt-4o, gpt-4.1, gpt-4.5, gpt-5, chatgpt-4o and the o-series (o1, o3, o4...);
``cl100k_base`` for older OpenAI chat models (gpt-4, gpt-3.5) and, as the documented fallback, for every
other vendor (Anthropic, Google, Mistral... count differently, typically within about 10-20%: good enough to
choose a route or a context window, never to bill). Image parts count a flat 85 tokens each (OpenAI's
low-detail figure), audio and files nothing: the estimate is a lower bound for multimodal prompts.

tiktoken needs its BPE files; the router never downloads them. When ``TIKTOKEN_CACHE_DIR`` is unset it
points at the copies the litellm package ships (found without importing litellm). An encoding costs about
0.3-0.9 s to load and 40-70 MB of memory, so it loads once, guarded by a lock, and only when a count is really
needed: the request path loads it in a worker thread first (:mod:`router.exact_counts`), the ledger's writer
in its own thread. A router whose requests the cheap bounds below always decide never loads one.

Most rule decisions need no count at all: :func:`prompt_token_bounds` brackets the estimate from the text's
size (a token is 1 to :data:`MAX_TOKEN_BYTES` bytes of UTF-8), and a range test that the bracket already
decides never tokenizes. When the count is computed it is exactly the estimate below.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import tiktoken

from router.context import RequestContext
from router.wire import codec_for

FALLBACK_ENCODING = "cl100k_base"
IMAGE_PART_TOKENS = 85
# Per-message overhead of the chat format (role markers), and the reply priming, as OpenAI documents them.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
MAX_TOKEN_BYTES = 128
"""The longest token of cl100k_base and o200k_base, in bytes (a unit test checks it against the files)."""

_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "chatgpt-4o", "o1", "o3", "o4", "gpt-oss")
_CL100K_PREFIXES = ("gpt-4", "gpt-3.5", "gpt-35", "text-embedding-3", "text-embedding-ada")

_lock = threading.Lock()
_encodings: dict[str, tiktoken.Encoding] = {}



def encoding_name(model: str) -> str:
    """The tiktoken encoding for ``model`` (a provider prefix such as ``openai/`` is ignored)."""
    name = model.lower().rsplit("/", 1)[-1]
    if name.startswith(_O200K_PREFIXES):
        return "o200k_base"
    if name.startswith(_CL100K_PREFIXES):
        return "cl100k_base"
    return FALLBACK_ENCODING


def _use_bundled_bpe_files() -> None:
    if os.environ.get("TIKTOKEN_CACHE_DIR"):
        return
    from router.model_catalog import litellm_package_dir

    folder = litellm_package_dir()
    if folder is not None:
        os.environ["TIKTOKEN_CACHE_DIR"] = str(folder / "litellm_core_utils" / "tokenizers")


def get_encoding(name: str) -> tiktoken.Encoding:
    encoding = _encodings.get(name)
    if encoding is not None:
        return encoding
    with _lock:
        encoding = _encodings.get(name)
        if encoding is None:
            _use_bundled_bpe_files()
            import tiktoken

            encoding = _encodings[name] = tiktoken.get_encoding(name)
        return encoding


def encoding_loaded(name: str) -> bool:
    """Whether :func:`get_encoding` would answer at once (no file to read, no lock to wait for)."""
    return name in _encodings


def count_text_tokens(text: str, model: str) -> int:
    """Tokens in plain text (for example a streamed answer whose usage the upstream did not report)."""
    if not text:
        return 0
    return len(get_encoding(encoding_name(model)).encode_ordinary(text))


def _content_parts(content: Any) -> tuple[list[str], int]:
    """The text pieces of a message's content, and how many image parts it has."""
    if isinstance(content, str):
        return [content], 0
    texts: list[str] = []
    images = 0
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part.get("refusal"), str):
                texts.append(part["refusal"])
            elif part.get("type") == "image_url":
                images += 1
    return texts, images


def _message_texts(message: dict[str, Any]) -> tuple[list[str], int, int]:
    """(texts, image parts, fixed overhead tokens) of one chat message."""
    texts, images = _content_parts(message.get("content"))
    overhead = TOKENS_PER_MESSAGE
    role = message.get("role")
    if isinstance(role, str):
        texts.append(role)
    name = message.get("name")
    if isinstance(name, str):
        texts.append(name)
        overhead += TOKENS_PER_NAME
    texts.extend(tool_call_texts(message))
    return texts, images, overhead


def tool_call_texts(message: dict[str, Any]) -> list[str]:
    """Names and argument texts of a message's tool calls (and a legacy function_call)."""
    texts: list[str] = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            texts.extend(v for v in (function.get("name"), function.get("arguments")) if isinstance(v, str))
    function_call = message.get("function_call")
    if isinstance(function_call, dict):
        texts.extend(v for v in (function_call.get("name"), function_call.get("arguments")) if isinstance(v, str))
    return texts


def chat_prompt_pieces(payload: dict[str, Any]) -> tuple[int, list[str]]:
    """(fixed tokens: priming, per-message overhead, images; the texts to tokenize) of a chat request."""
    total = REPLY_PRIMING
    pieces: list[str] = []
    for message in payload.get("messages") or []:
        if not isinstance(message, dict):
            continue
        texts, images, overhead = _message_texts(message)
        pieces.extend(texts)
        total += overhead + images * IMAGE_PART_TOKENS
    for name in ("tools", "functions"):
        offered = payload.get(name)
        if offered:
            pieces.append(orjson.dumps(offered).decode())
    return total, pieces


def _pieces(payload: dict[str, Any], wire: str) -> tuple[int, list[str]]:
    return chat_prompt_pieces(payload) if wire == "chat" else codec_for(wire).prompt_pieces(payload)


def estimate_prompt_tokens(payload: dict[str, Any], model: str, wire: str = "chat") -> int:
    """Tokens the prompt of a request in format ``wire`` will take: messages (text parts, names, tool-call
    arguments) plus the JSON of the tools offered. An estimate (see the module docstring)."""
    encoding = get_encoding(encoding_name(model))
    total, pieces = _pieces(payload, wire)
    return total + sum(len(encoding.encode_ordinary(piece)) for piece in pieces)


def prompt_token_bounds(payload: dict[str, Any], wire: str = "chat") -> tuple[int, int]:
    """(low, high) with low <= :func:`estimate_prompt_tokens` <= high for every encoding, without one.

    Byte-level BPE splits a text's UTF-8 bytes into tokens of 1 to MAX_TOKEN_BYTES bytes each: a non-empty
    text takes at least max(1, ceil(bytes / MAX_TOKEN_BYTES)) tokens and at most its byte count.
    """
    fixed, pieces = _pieces(payload, wire)
    low = high = fixed
    for piece in pieces:
        if not piece:
            continue
        size = len(piece) if piece.isascii() else len(piece.encode("utf-8", "surrogatepass"))
        high += size
        low += -(-size // MAX_TOKEN_BYTES)
    return low, high


def prompt_tokens(ctx: RequestContext) -> int:
    """The request's prompt estimate, computed once and kept on ``ctx.prompt_estimate``.

    The encoding follows the requested model, or for a public model name its primary deployment's model.
    """
    cached = ctx.prompt_estimate
    if cached is not None:
        return cached
    tokens = ctx.prompt_estimate = estimate_prompt_tokens(ctx.payload, _upstream_model(ctx), ctx.wire)
    return tokens


def prompt_bounds(ctx: RequestContext) -> tuple[int, int]:
    """Bounds of the request's prompt estimate (the estimate itself when already counted), kept on ``ctx``."""
    counted = ctx.prompt_estimate
    if counted is not None:
        return counted, counted
    bounds = ctx.prompt_token_bounds
    if bounds is None:
        bounds = ctx.prompt_token_bounds = prompt_token_bounds(ctx.payload, ctx.wire)
    return bounds


def encoding_for(ctx: RequestContext) -> str:
    """The encoding :func:`prompt_tokens` counts ``ctx``'s prompt with."""
    return encoding_name(_upstream_model(ctx))


def _upstream_model(ctx: RequestContext) -> str:
    """A public alias (``fast``) says nothing of the tokenizer: count as its primary deployment's model."""
    chain = ctx.snapshot.models.get(ctx.requested_model)
    deployment = ctx.snapshot.deployments.get(chain[0]) if chain else None
    return deployment.model if deployment is not None else ctx.requested_model


def prompt_ceiling(ctx: RequestContext) -> int | None:
    """A bound of the prompt estimate from the request body's size alone (None when unknown): free to compute.

    Every text counted is a substring of the JSON body, and its UTF-8 bytes (at least one per token) are no
    more than its escaped form there. A message adds at most 4 tokens of overhead; an image part counts
    IMAGE_PART_TOKENS (85) but takes at least 20 bytes of JSON (``{"type":"image_url"}``); re-encoded tool
    schemas can grow a little (``1E2`` -> ``100.0``). Five tokens per body byte plus the per-message overhead
    covers all of it."""
    size = ctx.body_bytes
    if not size:
        return None
    messages = codec_for(ctx.wire).message_count(ctx.payload)
    overhead = TOKENS_PER_MESSAGE + TOKENS_PER_NAME
    return REPLY_PRIMING + overhead * messages + 5 * size


def cheap_fit(ctx: RequestContext, window: int) -> bool | None:
    """Whether the prompt's estimate is at most ``window`` tokens, when the free ceiling or the cheap bounds
    tell; None when only a count can."""
    ceiling = prompt_ceiling(ctx)
    if ceiling is not None and ceiling <= window:
        return True
    low, high = prompt_bounds(ctx)
    if high <= window:
        return True
    return False if low > window else None


def prompt_fits(ctx: RequestContext, window: int) -> bool:
    """Whether the prompt's estimate is at most ``window`` tokens: counted only when :func:`cheap_fit` cannot
    tell."""
    fit = cheap_fit(ctx, window)
    return prompt_tokens(ctx) <= window if fit is None else fit
