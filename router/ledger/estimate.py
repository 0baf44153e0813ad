"""Token estimates for answers whose provider reported no usage (flagged ``estimated`` in the ledger).

The hot path pays (almost) nothing for this: a non-streaming answer without usage keeps its text in
``ctx.answer_text``; a stream keeps references to its raw chunks (no copy, no parse) in
``ctx.stream_chunks``, which are parsed only when the stream ended without a usage chunk. The
tokenizing itself runs in the ledger's writer, off the event loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from router.tokens import count_text_tokens, estimate_prompt_tokens, tool_call_texts
from router.wire import codec_for

MAX_KEPT_CHUNKS = 50_000
"""A stream longer than this is estimated from its first chunks only (a lower bound)."""


def _message_text(message: Any) -> list[str]:
    if not isinstance(message, dict):
        return []
    texts = [v for v in (message.get("content"), message.get("refusal"), message.get("reasoning_content"))
             if isinstance(v, str)]
    texts.extend(tool_call_texts(message))
    return texts


def completion_text(data: dict[str, Any]) -> str:
    """The generated text of a whole chat completion: contents and tool-call names and arguments."""
    texts: list[str] = []
    for choice in data.get("choices") or []:
        if isinstance(choice, dict):
            texts.extend(_message_text(choice.get("message")))
    return "".join(texts)


def streamed_text(chunks: Iterable[bytes]) -> str:
    """The generated text of a stream, from its raw chunk payloads (unparseable chunks are skipped)."""
    texts: list[str] = []
    for raw in chunks:
        try:
            chunk = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(chunk, dict):
            continue
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict):
                texts.extend(_message_text(choice.get("delta")))
    return "".join(texts)


@dataclass(slots=True)
class Estimate:
    """What is needed to estimate one answer's tokens later, in the writer's thread."""

    payload: dict[str, Any]
    model: str
    text: str | None = None
    chunks: list[bytes] | None = None
    wire: str = "chat"
    """The caller's format: the payload and the chunks are in it."""

    def tokens(self) -> tuple[int, int]:
        """(prompt, completion) token estimates with tiktoken."""
        prompt = estimate_prompt_tokens(self.payload, self.model, self.wire)
        if self.text is not None:
            text = self.text
        elif self.wire == "chat":
            text = streamed_text(self.chunks or ())
        else:
            text = codec_for(self.wire).streamed_text(self.chunks or ())
        return prompt, count_text_tokens(text, self.model)
