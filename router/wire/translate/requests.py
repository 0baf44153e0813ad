"""A request body in one wire format rewritten for a deployment that speaks the other (Chat Completions <->
Anthropic Messages). Pure: the input is never mutated; ``model`` is kept (the executor sets the deployment's).

Only fields known to exist in the target are carried; the rest (Anthropic betas, ``top_k``, ``thinking``, chat's
``logprobs``, ``response_format``...) are dropped. What has no equivalent and would change the answer's meaning
is refused with :class:`RequestNotForwardable`: Anthropic's typed and server tools (``bash_*``, ``web_search_*``...),
chat's non-function tools, audio and uploaded-file parts, ``n`` above 1. A chat ``file`` part with inline data
becomes an Anthropic ``document``. An Anthropic ``document`` block becomes a text
placeholder instead (chat has no documents; the model is told one was left out rather than the whole request
failing), and so do images inside a ``tool_result`` (chat tool messages are text only).
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from router.config.schema import DeploymentSpec
from router.errors import InvalidRequest, RequestNotForwardable

DEFAULT_MAX_TOKENS = 4096
"""Anthropic requires ``max_tokens``; used when chat gave none and the deployment sets no ``max_output_tokens``."""
DOCUMENT_PLACEHOLDER = "[a document was attached here; this model cannot read documents]"
IMAGE_PLACEHOLDER = "[an image was attached here; it cannot be passed on in a tool result]"


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidRequest(f"{where} must be an array", param=where)
    return value


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where} must be an object", param=where)
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{where} must be a string", param=where)
    return value


# -- Messages -> chat --------------------------------------------------------------------------------------------

def messages_to_chat(payload: dict[str, Any], deployment: DeploymentSpec) -> dict[str, Any]:
    """An Anthropic Messages request as a Chat Completions request."""
    out: dict[str, Any] = {"model": payload.get("model")}
    messages: list[dict[str, Any]] = []
    system = payload.get("system")
    if system is not None:
        messages.append({"role": "system", "content": _system_text(system)})
    for i, message in enumerate(_list(payload.get("messages"), "messages")):
        messages.extend(_chat_messages(_dict(message, f"messages.{i}"), f"messages.{i}"))
    out["messages"] = messages
    if "max_tokens" in payload:
        out["max_tokens"] = payload["max_tokens"]
    for key in ("temperature", "top_p", "stream"):
        if key in payload:
            out[key] = payload[key]
    if payload.get("stream") is True:
        out["stream_options"] = {"include_usage": True}
    if "stop_sequences" in payload:
        out["stop"] = _list(payload["stop_sequences"], "stop_sequences")
    metadata = payload.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        out["user"] = metadata["user_id"]
    tools = payload.get("tools")
    if tools is not None:
        out["tools"] = [_chat_tool(_dict(tool, f"tools.{i}"), i) for i, tool in enumerate(_list(tools, "tools"))]
    choice = payload.get("tool_choice")
    if choice is not None:
        _chat_tool_choice(_dict(choice, "tool_choice"), out)
    return out


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    parts = []
    for i, block in enumerate(_list(system, "system")):
        block = _dict(block, f"system.{i}")
        if block.get("type") != "text":
            raise InvalidRequest("system blocks must be text blocks", param=f"system.{i}")
        parts.append(_text(block.get("text"), f"system.{i}.text"))
    return "\n\n".join(parts)


def _chat_messages(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """One Anthropic message as chat messages: tool results become ``role: tool`` messages first (they answer
    the previous assistant turn's calls), then what else the user said."""
    role = message.get("role")
    content = message.get("content")
    if role not in ("user", "assistant"):
        raise InvalidRequest("a message's role must be user or assistant", param=f"{where}.role")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    blocks = [_dict(block, f"{where}.content.{j}") for j, block in enumerate(_list(content, f"{where}.content"))]
    if role == "assistant":
        return [_chat_assistant(blocks, where)]
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        kind = block.get("type")
        at = f"{where}.content.{j}"
        if kind == "tool_result":
            out.append(_chat_tool_message(block, at))
        elif kind == "text":
            parts.append({"type": "text", "text": _text(block.get("text"), f"{at}.text")})
        elif kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block, at)}})
        elif kind == "document":
            parts.append({"type": "text", "text": DOCUMENT_PLACEHOLDER})
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise RequestNotForwardable(f"a {kind!r} content block has no Chat Completions equivalent")
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _chat_assistant(blocks: list[dict[str, Any]], where: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        kind = block.get("type")
        at = f"{where}.content.{j}"
        if kind == "text":
            texts.append(_text(block.get("text"), f"{at}.text"))
        elif kind == "tool_use":
            call_id = _text(block.get("id"), f"{at}.id")
            name = _text(block.get("name"), f"{at}.name")
            arguments = _json_text(block.get("input", {}), f"{at}.input")
            calls.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise RequestNotForwardable(f"a {kind!r} content block has no Chat Completions equivalent")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _json_text(value: Any, where: str) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        raise RequestNotForwardable(f"{where} cannot be encoded as JSON text (nested too deeply?)") from None


def _chat_tool_message(block: dict[str, Any], where: str) -> dict[str, Any]:
    content = block.get("content", "")
    if isinstance(content, str):
        text = content
    else:
        pieces = []
        for k, part in enumerate(_list(content, f"{where}.content")):
            part = _dict(part, f"{where}.content.{k}")
            if part.get("type") == "text":
                pieces.append(_text(part.get("text"), f"{where}.content.{k}.text"))
            elif part.get("type") == "image":
                pieces.append(IMAGE_PLACEHOLDER)
            elif part.get("type") == "document":
                pieces.append(DOCUMENT_PLACEHOLDER)
            else:
                raise RequestNotForwardable(f"a {part.get('type')!r} tool result part has no chat equivalent")
        text = "\n".join(pieces)
    if block.get("is_error") is True:
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": _text(block.get("tool_use_id"), f"{where}.tool_use_id"), "content": text}


def _image_url(block: dict[str, Any], where: str) -> str:
    source = _dict(block.get("source"), f"{where}.source")
    if source.get("type") == "base64":
        media = _text(source.get("media_type"), f"{where}.source.media_type")
        return f"data:{media};base64,{_text(source.get('data'), f'{where}.source.data')}"
    if source.get("type") == "url":
        return _text(source.get("url"), f"{where}.source.url")
    raise RequestNotForwardable(f"an image source of type {source.get('type')!r} has no chat equivalent")


def _chat_tool(tool: dict[str, Any], i: int) -> dict[str, Any]:
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise RequestNotForwardable(f"the Anthropic tool type {kind!r} has no Chat Completions equivalent")
    function: dict[str, Any] = {"name": _text(tool.get("name"), f"tools.{i}.name")}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    function["parameters"] = _dict(tool.get("input_schema"), f"tools.{i}.input_schema")
    return {"type": "function", "function": function}


def _chat_tool_choice(choice: dict[str, Any], out: dict[str, Any]) -> None:
    kind = choice.get("type")
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": _text(choice.get("name"), "tool_choice.name")}}
    else:
        raise InvalidRequest(f"unknown tool_choice type {kind!r}", param="tool_choice.type")
    if choice.get("disable_parallel_tool_use") is True and "tools" in out:
        out["parallel_tool_calls"] = False


# -- chat -> Messages --------------------------------------------------------------------------------------------

def chat_to_messages(payload: dict[str, Any], deployment: DeploymentSpec) -> dict[str, Any]:
    """A Chat Completions request as an Anthropic Messages request: system and developer messages become the
    ``system`` blocks; consecutive turns of one role merge (Anthropic requires user and assistant to alternate)."""
    if payload.get("n") not in (None, 1):
        raise RequestNotForwardable("Anthropic Messages gives one answer per request: n must be 1")
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(_list(payload.get("messages"), "messages")):
        message = _dict(message, f"messages.{i}")
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content"), f"messages.{i}.content"))
            continue
        role, blocks = _anthropic_turn(message, role, f"messages.{i}")
        if not blocks:
            continue
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})
    out: dict[str, Any] = {"model": payload.get("model")}
    if system:
        out["system"] = system
    out["messages"] = messages
    out["max_tokens"] = _max_tokens(payload, deployment)
    for key in ("temperature", "top_p", "stream"):
        if key in payload and payload[key] is not None:
            out[key] = payload[key]
    if isinstance(out.get("temperature"), (int, float)):
        out["temperature"] = min(out["temperature"], 1.0)  # chat allows up to 2, Anthropic up to 1
    stop = payload.get("stop")
    if stop is not None:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else _list(stop, "stop")
    if isinstance(payload.get("user"), str):
        out["metadata"] = {"user_id": payload["user"]}
    tools = payload.get("tools")
    if tools is not None:
        out["tools"] = [_anthropic_tool(_dict(tool, f"tools.{i}"), i) for i, tool in enumerate(_list(tools, "tools"))]
    _anthropic_tool_choice(payload, out)
    return out


def _max_tokens(payload: dict[str, Any], deployment: DeploymentSpec) -> Any:
    for key in ("max_completion_tokens", "max_tokens"):
        if payload.get(key) is not None:
            return payload[key]
    return deployment.max_output_tokens or DEFAULT_MAX_TOKENS


def _text_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for k, part in enumerate(_list(content, where)):
        part = _dict(part, f"{where}.{k}")
        if part.get("type") not in ("text", "refusal"):
            raise RequestNotForwardable(f"a {part.get('type')!r} part cannot go into Anthropic text")
        text = _text(part.get("text", part.get("refusal")), f"{where}.{k}.text")
        if text:
            blocks.append({"type": "text", "text": text})
    return blocks


def _anthropic_turn(message: dict[str, Any], role: Any, where: str) -> tuple[str, list[dict[str, Any]]]:
    if role == "user":
        return "user", _user_blocks(message.get("content"), f"{where}.content")
    if role == "assistant":
        blocks = _text_blocks(message.get("content") or "", f"{where}.content")  # reasoning_content: unsigned, dropped
        calls = message.get("tool_calls")
        if calls is not None:
            blocks.extend(_tool_use(_dict(call, f"{where}.tool_calls.{k}"), f"{where}.tool_calls.{k}")
                          for k, call in enumerate(_list(calls, f"{where}.tool_calls")))
        return "assistant", blocks
    if role == "tool":
        content = message.get("content")
        result: dict[str, Any] = {"type": "tool_result",
                                  "tool_use_id": _text(message.get("tool_call_id"), f"{where}.tool_call_id"),
                                  "content": content if isinstance(content, str)
                                  else _user_blocks(content, f"{where}.content")}
        return "user", [result]
    raise RequestNotForwardable(f"a {role!r} message has no Anthropic Messages equivalent")


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for k, part in enumerate(_list(content, where)):
        part = _dict(part, f"{where}.{k}")
        if part.get("type") == "image_url":
            url = _text(_dict(part.get("image_url"), f"{where}.{k}.image_url").get("url"), f"{where}.{k}.url")
            blocks.append({"type": "image", "source": _image_source(url, f"{where}.{k}")})
        elif part.get("type") == "file":
            blocks.append(_document(_dict(part.get("file"), f"{where}.{k}.file"), f"{where}.{k}.file"))
        else:
            blocks.extend(_text_blocks([part], where))
    return blocks


def _document(file: dict[str, Any], where: str) -> dict[str, Any]:
    """A chat ``file`` part sent inline (a base64 data URL, PDFs in practice) as an Anthropic document; an
    uploaded ``file_id`` lives at OpenAI and cannot be passed on."""
    data = file.get("file_data")
    if not isinstance(data, str):
        raise RequestNotForwardable("a chat file part without inline file_data cannot be passed to Anthropic")
    source = _image_source(data if data.startswith("data:") else f"data:application/pdf;base64,{data}", where)
    return {"type": "document", "source": source}


def _image_source(url: str, where: str) -> dict[str, Any]:
    if not url.startswith("data:"):
        return {"type": "url", "url": url}
    header, sep, data = url[5:].partition(",")
    media, _, encoding = header.partition(";")
    if not sep or encoding != "base64" or not media:
        raise InvalidRequest("an image data URL must be data:<media type>;base64,<data>", param=where)
    try:
        base64.b64decode(data[:8], validate=True)
    except ValueError:
        raise InvalidRequest("an image data URL's data is not base64", param=where) from None
    return {"type": "base64", "media_type": media, "data": data}


def _tool_use(call: dict[str, Any], where: str) -> dict[str, Any]:
    function = _dict(call.get("function"), f"{where}.function")
    arguments = function.get("arguments") or "{}"
    try:
        parsed = orjson.loads(_text(arguments, f"{where}.function.arguments"))
    except orjson.JSONDecodeError:
        raise InvalidRequest("tool call arguments must be a JSON object", param=f"{where}.function.arguments") from None
    if not isinstance(parsed, dict):
        raise InvalidRequest("tool call arguments must be a JSON object", param=f"{where}.function.arguments")
    return {"type": "tool_use", "id": _text(call.get("id"), f"{where}.id"),
            "name": _text(function.get("name"), f"{where}.function.name"), "input": parsed}


def _anthropic_tool(tool: dict[str, Any], i: int) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise RequestNotForwardable(f"the chat tool type {tool.get('type')!r} has no Anthropic equivalent")
    function = _dict(tool.get("function"), f"tools.{i}.function")
    out: dict[str, Any] = {"name": _text(function.get("name"), f"tools.{i}.function.name")}
    if isinstance(function.get("description"), str):
        out["description"] = function["description"]
    parameters = function.get("parameters")
    out["input_schema"] = _dict(parameters, f"tools.{i}.function.parameters") if parameters is not None \
        else {"type": "object", "properties": {}}
    return out


def _anthropic_tool_choice(payload: dict[str, Any], out: dict[str, Any]) -> None:
    choice = payload.get("tool_choice")
    result: dict[str, Any] | None
    if choice is None:
        result = None
    elif choice == "auto":
        result = {"type": "auto"}
    elif choice == "required":
        result = {"type": "any"}
    elif choice == "none":
        result = {"type": "none"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        name = _dict(choice.get("function"), "tool_choice.function").get("name")
        result = {"type": "tool", "name": _text(name, "tool_choice.function.name")}
    else:
        raise InvalidRequest("unknown tool_choice", param="tool_choice")
    if payload.get("parallel_tool_calls") is False and "tools" in out:
        result = result or {"type": "auto"}
        if result["type"] != "none":
            result["disable_parallel_tool_use"] = True
    if result is not None and ("tools" in out or result["type"] == "none"):
        out["tool_choice"] = result
