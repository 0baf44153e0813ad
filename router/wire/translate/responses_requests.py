"""A Responses API request rewritten for a Chat Completions deployment, and a chat request for a deployment that
serves only the Responses API. Pure: the input is never mutated; ``model`` becomes the deployment's.

Responses items are an open set: what chat can carry (messages, function calls and their outputs) is carried,
reasoning items are dropped (chat cannot send them back, and an encrypted one is only valid at the provider that
made it), and every other item or tool type (hosted tools, custom tools, types yet unknown) is refused with
:class:`RequestNotForwardable` naming it, so the executor tries the next deployment; a native Responses
deployment passes them through untouched. Server-side state (``store``, ``previous_response_id``, ``include``...)
means nothing to chat and is dropped.
"""

from __future__ import annotations

from typing import Any

from router.config.schema import DeploymentSpec
from router.errors import RequestNotForwardable
from router.wire.translate.requests import _dict, _list, _text

_KEPT = ("temperature", "top_p", "parallel_tool_calls", "user", "seed", "stop")
"""Fields both wires spell alike."""
_TEXT_PARTS = ("input_text", "output_text", "text")


# -- Responses -> chat -------------------------------------------------------------------------------------------

def responses_to_chat(payload: dict[str, Any], deployment: DeploymentSpec) -> dict[str, Any]:
    """A Responses request as a Chat Completions request."""
    messages: list[dict[str, Any]] = []
    instructions = payload.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    items = payload.get("input")
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
    elif items is not None:
        for i, item in enumerate(_list(items, "input")):
            _add_item(_dict(item, f"input.{i}"), f"input.{i}", messages)
    out: dict[str, Any] = {"model": deployment.model, "messages": messages}
    for key in _KEPT:
        if payload.get(key) is not None:
            out[key] = payload[key]
    if payload.get("max_output_tokens") is not None:
        out["max_tokens"] = payload["max_output_tokens"]
    reasoning = payload.get("reasoning")
    if isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str):
        out["reasoning_effort"] = reasoning["effort"]
    text = payload.get("text")
    if isinstance(text, dict) and isinstance(text.get("verbosity"), str):
        out["verbosity"] = text["verbosity"]
    response_format = _response_format(text)
    if response_format is not None:
        out["response_format"] = response_format
    tools = payload.get("tools")
    if tools is not None:
        out["tools"] = [_chat_tool(_dict(tool, f"tools.{i}"), f"tools.{i}")
                        for i, tool in enumerate(_list(tools, "tools"))]
    if payload.get("tool_choice") is not None:
        out["tool_choice"] = _chat_tool_choice(payload["tool_choice"])
    if payload.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _add_item(item: dict[str, Any], where: str, messages: list[dict[str, Any]]) -> None:
    kind = item.get("type")
    if kind == "message" or (kind is None and "role" in item):
        messages.append(_chat_message(item, where))
    elif kind == "function_call":
        call = {"id": _text(item.get("call_id"), f"{where}.call_id"), "type": "function",
                "function": {"name": _text(item.get("name"), f"{where}.name"),
                             "arguments": _text(item.get("arguments", "{}"), f"{where}.arguments")}}
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
            if not last.get("content"):
                last["content"] = None
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        messages.append({"role": "tool", "tool_call_id": _text(item.get("call_id"), f"{where}.call_id"),
                         "content": _output_text(item.get("output"), f"{where}.output")})
    elif kind == "reasoning":
        return
    else:
        raise RequestNotForwardable(f"a Responses input item of type {kind!r} has no Chat Completions equivalent")


def _chat_message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise RequestNotForwardable(f"a Responses message with role {role!r} has no Chat Completions equivalent")
    if role == "developer":
        role = "system"
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    parts: list[dict[str, Any]] = []
    for k, part in enumerate(_list(content, f"{where}.content")):
        parts.append(_chat_part(_dict(part, f"{where}.content.{k}"), f"{where}.content.{k}"))
    if role != "user" or all(part["type"] == "text" for part in parts):
        return {"role": role, "content": "".join(part.get("text", "") for part in parts)}
    return {"role": role, "content": parts}


def _chat_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    kind = part.get("type")
    if kind in _TEXT_PARTS:
        return {"type": "text", "text": _text(part.get("text"), f"{where}.text")}
    if kind == "refusal":
        return {"type": "text", "text": _text(part.get("refusal"), f"{where}.refusal")}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str):
            raise RequestNotForwardable("an input_image without image_url (an uploaded file_id) cannot go to chat")
        image: dict[str, Any] = {"url": url}
        if isinstance(part.get("detail"), str):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    raise RequestNotForwardable(f"a Responses content part of type {kind!r} has no Chat Completions equivalent")


def _output_text(output: Any, where: str) -> str:
    if isinstance(output, str):
        return output
    pieces = []
    for k, part in enumerate(_list(output, where)):
        part = _dict(part, f"{where}.{k}")
        if part.get("type") not in _TEXT_PARTS:
            raise RequestNotForwardable(f"a function_call_output part of type {part.get('type')!r} cannot go to chat")
        pieces.append(_text(part.get("text"), f"{where}.{k}.text"))
    return "".join(pieces)


def _response_format(text: Any) -> dict[str, Any] | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        schema = {key: fmt[key] for key in ("name", "description", "schema", "strict") if key in fmt}
        return {"type": "json_schema", "json_schema": schema}
    return None


def _chat_tool(tool: dict[str, Any], where: str) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise RequestNotForwardable(f"the Responses tool type {tool.get('type')!r} has no Chat Completions equivalent")
    function: dict[str, Any] = {"name": _text(tool.get("name"), f"{where}.name")}
    for key in ("description", "parameters", "strict"):
        if tool.get(key) is not None:
            function[key] = tool[key]
    return {"type": "function", "function": function}


def _chat_tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": _text(choice.get("name"), "tool_choice.name")}}
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        tools = [_dict(tool, f"tool_choice.tools.{i}") for i, tool in enumerate(_list(choice.get("tools"),
                                                                                       "tool_choice.tools"))]
        if any(tool.get("type") != "function" for tool in tools):
            raise RequestNotForwardable("allowed_tools naming a non-function tool has no Chat Completions equivalent")
        named = [{"type": "function", "function": {"name": _text(tool.get("name"), "tool_choice.tools.name")}}
                 for tool in tools]
        return {"type": "allowed_tools", "allowed_tools": {"mode": choice.get("mode", "auto"), "tools": named}}
    kind = choice.get("type") if isinstance(choice, dict) else choice
    raise RequestNotForwardable(f"the Responses tool_choice {kind!r} has no Chat Completions equivalent")


# -- chat -> Responses -------------------------------------------------------------------------------------------

def chat_to_responses(payload: dict[str, Any], deployment: DeploymentSpec) -> dict[str, Any]:
    """A Chat Completions request as a Responses request. Leading system and developer messages become
    ``instructions``; later ones stay in place as developer messages. ``store`` is always false: the router
    keeps no upstream state for a chat caller."""
    if payload.get("n") not in (None, 1):
        raise RequestNotForwardable("the Responses API gives one answer per request: n must be 1")
    messages = [_dict(message, f"messages.{i}") for i, message in enumerate(_list(payload.get("messages"),
                                                                                    "messages"))]
    leading: list[str] = []
    while len(leading) < len(messages) and messages[len(leading)].get("role") in ("system", "developer"):
        at = len(leading)
        leading.append(_plain_text(messages[at].get("content"), f"messages.{at}.content"))
    items: list[dict[str, Any]] = []
    for i in range(len(leading), len(messages)):
        items.extend(_items(messages[i], f"messages.{i}"))
    out: dict[str, Any] = {"model": deployment.model}
    if leading:
        out["instructions"] = "\n\n".join(leading)
    out["input"] = items
    for key in ("temperature", "top_p", "parallel_tool_calls", "user", "stream"):
        if payload.get(key) is not None:
            out[key] = payload[key]
    for key in ("max_completion_tokens", "max_tokens"):
        if payload.get(key) is not None:
            out["max_output_tokens"] = payload[key]
            break
    if isinstance(payload.get("reasoning_effort"), str):
        out["reasoning"] = {"effort": payload["reasoning_effort"]}
    text: dict[str, Any] = {}
    text_format = _text_format(payload.get("response_format"))
    if text_format is not None:
        text["format"] = text_format
    if isinstance(payload.get("verbosity"), str):
        text["verbosity"] = payload["verbosity"]
    if text:
        out["text"] = text
    tools = payload.get("tools")
    if tools is not None:
        out["tools"] = [_responses_tool(_dict(tool, f"tools.{i}"), f"tools.{i}")
                        for i, tool in enumerate(_list(tools, "tools"))]
    choice = payload.get("tool_choice")
    if choice in ("auto", "none", "required"):
        out["tool_choice"] = choice
    elif isinstance(choice, dict) and choice.get("type") == "function":
        name = _dict(choice.get("function"), "tool_choice.function").get("name")
        out["tool_choice"] = {"type": "function", "name": _text(name, "tool_choice.function.name")}
    elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = _dict(choice.get("allowed_tools"), "tool_choice.allowed_tools")
        names = [_dict(_dict(tool, "tool_choice.allowed_tools.tools").get("function"),
                       "tool_choice.allowed_tools.tools.function").get("name")
                 for tool in _list(allowed.get("tools"), "tool_choice.allowed_tools.tools")]
        out["tool_choice"] = {"type": "allowed_tools", "mode": allowed.get("mode", "auto"),
                              "tools": [{"type": "function", "name": _text(name, "tool_choice.allowed_tools.name")}
                                        for name in names]}
    elif choice is not None:
        raise RequestNotForwardable("this chat tool_choice has no Responses equivalent")
    out["store"] = False
    return out


def _items(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    role = message.get("role")
    content = message.get("content")
    if role in ("system", "developer"):
        return [{"type": "message", "role": "developer", "content": _plain_text(content, f"{where}.content")}]
    if role == "user":
        return [{"type": "message", "role": "user", "content": _input_parts(content, f"{where}.content")}]
    if role == "assistant":
        items: list[dict[str, Any]] = []
        text = _plain_text(content, f"{where}.content") if content is not None else ""
        if text:
            items.append({"type": "message", "role": "assistant", "content": text})
        calls = message.get("tool_calls")
        for k, call in enumerate(_list(calls, f"{where}.tool_calls") if calls is not None else []):
            at = f"{where}.tool_calls.{k}"
            call = _dict(call, at)
            function = _dict(call.get("function"), f"{at}.function")
            items.append({"type": "function_call", "call_id": _text(call.get("id"), f"{at}.id"),
                          "name": _text(function.get("name"), f"{at}.function.name"),
                          "arguments": _text(function.get("arguments") or "{}", f"{at}.function.arguments")})
        return items
    if role == "tool":
        return [{"type": "function_call_output",
                 "call_id": _text(message.get("tool_call_id"), f"{where}.tool_call_id"),
                 "output": _plain_text(content, f"{where}.content")}]
    raise RequestNotForwardable(f"a {role!r} message has no Responses equivalent")


def _plain_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    pieces = []
    for k, part in enumerate(_list(content, where)):
        part = _dict(part, f"{where}.{k}")
        if part.get("type") not in ("text", "refusal"):
            raise RequestNotForwardable(f"a {part.get('type')!r} part cannot go into Responses text here")
        pieces.append(_text(part.get("text", part.get("refusal")), f"{where}.{k}.text"))
    return "".join(pieces)


def _input_parts(content: Any, where: str) -> Any:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for k, part in enumerate(_list(content, where)):
        part = _dict(part, f"{where}.{k}")
        if part.get("type") == "text":
            parts.append({"type": "input_text", "text": _text(part.get("text"), f"{where}.{k}.text")})
        elif part.get("type") == "image_url":
            image = _dict(part.get("image_url"), f"{where}.{k}.image_url")
            out: dict[str, Any] = {"type": "input_image", "image_url": _text(image.get("url"), f"{where}.{k}.url"),
                                   "detail": image.get("detail") if isinstance(image.get("detail"), str)
                                   else "auto"}
            parts.append(out)
        else:
            raise RequestNotForwardable(f"a chat {part.get('type')!r} part has no Responses equivalent")
    return parts


def _text_format(response_format: Any) -> dict[str, Any] | None:
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_object":
        return {"type": "json_object"}
    if response_format.get("type") == "json_schema":
        schema = _dict(response_format.get("json_schema"), "response_format.json_schema")
        return {"type": "json_schema", **{key: schema[key] for key in ("name", "description", "schema", "strict")
                                          if key in schema}}
    return None


def _responses_tool(tool: dict[str, Any], where: str) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise RequestNotForwardable(f"the chat tool type {tool.get('type')!r} has no Responses equivalent")
    function = _dict(tool.get("function"), f"{where}.function")
    out: dict[str, Any] = {"type": "function", "name": _text(function.get("name"), f"{where}.function.name")}
    if function.get("description") is not None:
        out["description"] = function["description"]
    parameters = function.get("parameters")
    out["parameters"] = parameters if parameters is not None else {"type": "object", "properties": {}}
    out["strict"] = function.get("strict") is True  # chat's default; the Responses API's would be strict
    return out
