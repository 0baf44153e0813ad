"""A whole answer between Chat Completions and the Responses API. Upstream bytes are not trusted: missing or
malformed pieces are skipped, never raised on (but a Response that reports its own failure is an error)."""

from __future__ import annotations

import time
from typing import Any

from router.context import RequestContext
from router.errors import UpstreamServerError
from router.wire.translate import vocab
from router.wire.translate.responses_vocab import chat_usage, new_id, response_object, responses_usage, status_of


def chat_to_response(data: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    """A ``chat.completion`` as a ``Response``: reasoning (chat's non-standard ``reasoning_content``) as a
    reasoning item with a summary, the text (and refusal) as one message item, each tool call as a
    ``function_call`` item, in that order."""
    choices = data.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    raw = choice.get("message")
    message: dict[str, Any] = raw if isinstance(raw, dict) else {}
    status, incomplete = status_of(choice.get("finish_reason"))
    output: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        output.append(reasoning_item(new_id("rs_"), reasoning))
    content: list[dict[str, Any]] = []
    if isinstance(message.get("content"), str) and message["content"]:
        content.append(text_part(message["content"]))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        content.append({"type": "refusal", "refusal": message["refusal"]})
    if content:
        output.append(message_item(new_id("msg_"), content, "completed" if status == "completed" else "incomplete"))
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            continue
        arguments = function.get("arguments")
        call_id = call["id"] if isinstance(call.get("id"), str) else new_id("call_")
        output.append(call_item(new_id("fc_"), call_id, function["name"],
                                arguments if isinstance(arguments, str) else "{}"))
    created = data.get("created")
    return response_object(ctx, new_id("resp_"), created if type(created) is int else int(time.time()), status,
                           output, responses_usage(data.get("usage")), incomplete)


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, content: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id, "name": name,
            "arguments": arguments}


def reasoning_item(item_id: str, summary: str | None) -> dict[str, Any]:
    parts = [] if summary is None else [{"type": "summary_text", "text": summary}]
    return {"id": item_id, "type": "reasoning", "summary": parts}


def response_to_chat(data: dict[str, Any], model: str) -> dict[str, Any]:
    """A ``Response`` as a ``chat.completion``: output text joined, reasoning summaries (or reasoning text) as
    ``reasoning_content``, ``function_call`` items as ``tool_calls`` keyed by their ``call_id``. Items chat
    cannot carry (hosted tool calls) are left out. A failed Response raises :class:`UpstreamServerError`."""
    if data.get("status") == "failed":
        raise UpstreamServerError(f"the upstream's response failed: {_error_message(data.get('error'))}")
    texts: list[str] = []
    refusals: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    output = data.get("output")
    for item in output if isinstance(output, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            _message_texts(item.get("content"), texts, refusals)
        elif kind == "reasoning":
            thinking.extend(reasoning_texts(item))
        elif kind == "function_call" and isinstance(item.get("name"), str):
            call_id = item["call_id"] if isinstance(item.get("call_id"), str) else vocab.tool_id()
            arguments = item["arguments"] if isinstance(item.get("arguments"), str) else "{}"
            calls.append({"id": call_id, "type": "function", "function": {"name": item["name"],
                                                                         "arguments": arguments}})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None,
                               "refusal": "".join(refusals) if refusals else None}
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    if calls:
        message["tool_calls"] = calls
    out: dict[str, Any] = {"id": vocab.completion_id(_bare_id(data.get("id"))), "object": "chat.completion",
                           "created": data["created_at"] if type(data.get("created_at")) is int
                           else int(time.time()), "model": model,
                           "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(data, calls),
                                        "logprobs": None}]}
    usage = chat_usage(data.get("usage"))
    if usage is not None:
        out["usage"] = usage
    return out


def _message_texts(content: Any, texts: list[str], refusals: list[str]) -> None:
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "output_text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
            refusals.append(part["refusal"])


def reasoning_texts(item: dict[str, Any]) -> list[str]:
    """A reasoning item's readable text: its summary, else its raw ``reasoning_text`` (open-weight models)."""
    for key, part_type in (("summary", "summary_text"), ("content", "reasoning_text")):
        parts = item.get(key)
        texts = [part["text"] for part in parts if isinstance(part, dict) and part.get("type") == part_type
                 and isinstance(part.get("text"), str)] if isinstance(parts, list) else []
        if texts:
            return texts
    return []


def finish_reason(data: dict[str, Any], calls: list[Any] | bool) -> str:
    """Chat's ``finish_reason`` for a Response: why it is incomplete, else whether it ends on tool calls."""
    details = data.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    if data.get("status") == "incomplete" or reason is not None:
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if calls else "stop"


def _bare_id(response_id: Any) -> str | None:
    return response_id.removeprefix("resp_") if isinstance(response_id, str) and response_id else None


def _error_message(error: Any) -> str:
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) and message else "no reason given"
