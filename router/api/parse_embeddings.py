"""Read and check an embeddings request once: the JSON object, its ``model`` and ``input``, within the caps.

OpenAI's ``input`` takes four shapes: a string, a list of strings, a list of token ids, or a list of such lists.
Only what the stages read is checked (the model, the input's shape and size, ``stream``); every other field
(``encoding_format``, ``dimensions``, ``user`` and fields the router does not know) passes through for the
upstream to judge. The caps reuse chat's: the number of inputs counts like messages, each text like a message's.
"""

from __future__ import annotations

from typing import Any

from router.api.parse import load_object
from router.api.request_caps import DEFAULT_CAPS, RequestCaps, refuse
from router.errors import InvalidRequest

ENCODING_FORMATS = ("float", "base64")


def parse_embeddings_body(body: bytes, caps: RequestCaps = DEFAULT_CAPS) -> dict[str, Any]:
    payload = load_object(body, caps, "embeddings request")
    model = payload.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("you must provide a model parameter (a non-empty string)", param="model")
    if "input" not in payload:
        raise InvalidRequest("you must provide an input parameter", param="input")
    check_input(payload["input"], caps)
    stream = payload.get("stream")
    if stream is not None and stream is not False:
        raise InvalidRequest("embeddings are not streamed: leave stream out (or false)", param="stream")
    encoding = payload.get("encoding_format")
    if encoding is not None and encoding not in ENCODING_FORMATS:
        raise InvalidRequest(f"encoding_format must be one of {', '.join(ENCODING_FORMATS)}",
                             param="encoding_format")
    dimensions = payload.get("dimensions")
    if dimensions is not None and (type(dimensions) is not int or dimensions < 1):
        raise InvalidRequest("dimensions must be a positive integer", param="dimensions")
    return payload


def check_input(value: Any, caps: RequestCaps) -> None:
    """One of OpenAI's four input shapes, none empty, within the caps; InvalidRequest else."""
    if type(value) is str:
        _check_text(value, "input", caps)
        return
    if type(value) is not list or not value:
        raise InvalidRequest("input must be a string or a non-empty array of strings, token ids, or token id arrays",
                             param="input")
    if len(value) > caps.max_messages:
        raise refuse(f"input has {len(value)} entries", caps.max_messages, "max_messages", "input")
    kind = type(value[0])
    if kind is str:
        for i, text in enumerate(value):
            if type(text) is not str:
                raise InvalidRequest("input mixes strings with other values", param=f"input[{i}]")
            _check_text(text, f"input[{i}]", caps)
    elif kind is int:
        _check_tokens(value, "input")
    elif kind is list:
        for i, tokens in enumerate(value):
            if type(tokens) is not list or not tokens:
                raise InvalidRequest("input mixes token id arrays with other values, or holds an empty one",
                                     param=f"input[{i}]")
            _check_tokens(tokens, f"input[{i}]")
    else:
        raise InvalidRequest("input must be a string or a non-empty array of strings, token ids, or token id arrays",
                             param="input[0]")


def _check_text(text: str, where: str, caps: RequestCaps) -> None:
    if not text:
        raise InvalidRequest(f"{where} is an empty string", param=where)
    if len(text) > caps.max_message_chars:
        raise refuse(f"{where} has {len(text)} characters", caps.max_message_chars, "max_message_chars", where)


def _check_tokens(tokens: list[Any], where: str) -> None:
    for token in tokens:
        if type(token) is not int or token < 0:
            raise InvalidRequest(f"{where} must hold only non-negative integer token ids", param=where)
