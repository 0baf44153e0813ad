"""How much one chat request may carry: caps on counts and field sizes, set per process.

One request must not be able to cost the event loop (policy work per tool and per tool call) or the ledger
(audit rows per decision) enough to slow every other agent down, so what policy would walk is counted first.
The defaults sit far above what real agents send (an agent with hundreds of MCP tools, a session with
thousands of turns); each refusal names the cap and the setting that raises it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from router.errors import InvalidRequest
from router.settings import ENV_PREFIX, Settings


@dataclass(frozen=True, slots=True)
class RequestCaps:
    max_json_depth: int = 64
    max_tools: int = 512
    max_messages: int = 10_000
    max_tool_calls: int = 10_000
    max_tool_name_chars: int = 256
    max_tool_description_chars: int = 65_536
    max_message_chars: int = 4 * 1024 * 1024

    @classmethod
    def of(cls, settings: Settings) -> RequestCaps:
        return cls(**{name: getattr(settings, name) for name in cls.__slots__})


DEFAULT_CAPS = RequestCaps()


def refuse(what: str, cap: int, setting: str, param: str | None) -> InvalidRequest:
    """The 400 for a cap exceeded: says what was too much, the cap, and the setting that raises it."""
    return InvalidRequest(f"{what}; at most {cap} accepted (process setting {ENV_PREFIX}{setting.upper()})",
                          param=param, code="request_too_large")


def check_tools(name: str, tools: list[Any], caps: RequestCaps) -> None:
    """``tools`` or the legacy ``functions``: their number, and the size of each name and description."""
    if len(tools) > caps.max_tools:
        raise refuse(f"{name} has {len(tools)} entries", caps.max_tools, "max_tools", name)
    for i, tool in enumerate(tools):
        if type(tool) is not dict:
            continue  # the policy stage refuses or drops what is not a tool
        spec = tool.get("function", tool) if name == "tools" else tool
        if type(spec) is not dict:
            continue
        check_text(spec.get("name"), caps.max_tool_name_chars, "max_tool_name_chars", f"{name}[{i}] name")
        check_text(spec.get("description"), caps.max_tool_description_chars, "max_tool_description_chars",
                    f"{name}[{i}] description")


def check_content(i: int, content: object, caps: RequestCaps) -> None:
    """Refuse a message whose content (a string, or the text of its parts together) is too long."""
    if type(content) is str:
        size = len(content)
    elif type(content) is list:
        size = sum(len(part["text"]) for part in content if type(part) is dict and type(part.get("text")) is str)
    else:
        return
    if size > caps.max_message_chars:
        raise refuse(f"messages[{i}] content has {size} characters", caps.max_message_chars,
                     "max_message_chars", f"messages[{i}].content")


def count_calls(i: int, calls: object, caps: RequestCaps) -> int:
    """How many tool calls a message carries, each name checked against the cap."""
    if type(calls) is not list:
        return 0
    for j, call in enumerate(calls):
        function = call.get("function") if type(call) is dict else None
        if type(function) is dict:
            check_text(function.get("name"), caps.max_tool_name_chars, "max_tool_name_chars",
                        f"messages[{i}].tool_calls[{j}] name")
    return len(calls)


def check_text(value: object, cap: int, setting: str, where: str) -> None:
    if type(value) is str and len(value) > cap:
        raise refuse(f"{where} has {len(value)} characters", cap, setting, where.replace(" ", "."))
