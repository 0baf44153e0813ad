"""Streaming side: a small state machine fed one chunk payload (JSON bytes) at a time.

Fast path: while no tool call is in flight and nothing is owed to the client, a chunk whose lower-cased bytes
hold no ``call`` (every spelling of ``tool_calls`` and ``function_call``, look-alikes such as ``toolCalls``
included) nor a ``\\u`` escape that could spell one is passed on untouched, unparsed. Text is never delayed. A
parsed chunk first loses its look-alike keys (:mod:`router.policy.lookalike_keys`).

A streamed call arrives as fragments: the first carries index, id and name, later ones pieces of the
arguments. Each call goes ``naming`` -> (``holding``) -> ``passed`` | ``dropped``:

- ``naming``: buffered until its name is settled (first non-empty arguments piece, the next call starting,
  the choice finishing or the stream ending); then decided by name.
- ``holding``: allowed by name but an argument condition applies: buffered until the arguments are
  complete (same triggers), then decided on them.
- ``passed``: re-emitted as our own fragments under a gap-free index; later argument pieces stream on.
- ``dropped``: everything else about it is swallowed.

A fragment at a used index with another id, or another name once the call is named, starts a new call (the
old one is filed away, never merged). ``type: custom`` calls are read from their ``custom`` body (``input``
as the arguments) and re-emitted as ``custom``, so they get the same decision as in a whole answer.

A call held for checking is bounded (``policy.max_tool_call_bytes``, 64 KiB by default); a bigger one is
refused, as are calls past :data:`MAX_CALLS` in one stream. When a choice finishes, ``finish_reason``
``tool_calls`` becomes ``stop`` if none of its calls passed, a notice chunk names what was removed, and
the chunk carrying ``finish_reason`` gets an ``agent_router`` field (``{"policy": [...]}``) that the
SDKs ignore and tools can read. ``block`` raises PolicyViolation (the relay turns it into an SSE error
event); ``audit_only`` records decisions and passes every byte unchanged.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import orjson

from router.context import RequestContext
from router.errors import PolicyViolation
from router.policy import lookalike_keys
from router.policy.decide import ToolDecision, decide_call
from router.policy.events import record_decision
from router.policy.response_side import may_carry_call, policy_of

MAX_CALLS = 128
Emitted = tuple[bool, dict[str, Any]]
"""(legacy function_call?, fragment) to put in a choice's delta."""


@dataclass(slots=True)
class _Call:
    choice: int
    legacy: bool
    id: str | None = None
    kind: str | None = None
    """``function`` or ``custom``: which body its fragments carry (and the one re-emitted)."""
    name: str = ""
    args: str = ""
    state: str = "naming"
    out_index: int = -1
    size: int = 0
    """UTF-8 bytes of name and arguments held so far (kept as it grows: re-encoding the whole each time is
    quadratic in a large call's fragment count)."""
    sealed: bool = False
    """Passed after its arguments were checked: nothing more may be appended to them."""


class StreamFilter:
    def __init__(self, ctx: RequestContext) -> None:
        self.ctx = ctx
        self.policy, self.offered = policy_of(ctx)
        self.audit = self.policy.mode == "audit_only"
        self.calls: dict[tuple[int, Any], _Call] = {}
        self.open: dict[int, tuple[int, Any]] = {}
        self.next_index: dict[int, int] = defaultdict(int)
        self.passed: set[int] = set()
        self.notices: dict[int, list[str]] = defaultdict(list)
        self.had_text: set[int] = set()
        self.unsettled = 0
        self.owed = 0
        self.summary_sent = False
        self.base: dict[str, Any] = {"object": "chat.completion.chunk"}

    # -- the two entry points ------------------------------------------------------------------------
    def feed(self, payload: bytes) -> list[bytes]:
        """Take one chunk payload (JSON bytes); return the payloads to send on, in order."""
        if self._fast(payload):
            return [payload]
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return [payload] if self.audit else []  # it may carry a call: never pass what cannot be checked
        if not isinstance(chunk, dict):
            return [payload]
        found = lookalike_keys.find(chunk, lookalike_keys.ANSWER)
        scrubbed = bool(found) and lookalike_keys.refuse(self.ctx, self.policy, found, "stream") > 0
        if not isinstance(chunk.get("choices"), list):
            return [orjson.dumps(chunk)] if scrubbed else [payload]
        self._remember(chunk)
        before: list[bytes] = []
        choices, modified, finished = [], scrubbed, False
        for choice in chunk["choices"]:
            if not isinstance(choice, dict):
                choices.append(choice)
                continue
            new, changed = self._choice(choice, before)
            modified = modified or changed
            finished = finished or choice.get("finish_reason") is not None
            if new is not None:
                choices.append(new)
        if self.audit:
            return [payload]
        if finished and self.ctx.policy_summary:
            chunk["agent_router"] = {"policy": list(self.ctx.policy_summary)}
            self.summary_sent = modified = True
        if not modified and not may_carry_call(payload):
            return [*before, payload]
        if not choices and chunk.get("usage") is None:
            return before
        chunk["choices"] = choices
        return [*before, orjson.dumps(chunk)]

    def finish(self) -> list[bytes]:
        """The stream ended: settle calls still held, then owe the client its notices and summary."""
        by_choice: dict[int, list[Emitted]] = defaultdict(list)
        for call in list(self.calls.values()):
            if call.state in ("naming", "holding"):
                by_choice[call.choice].extend(self._settle(call))
        if self.audit:
            return []
        out = [self._chunk(choice, _delta(emitted)) for choice, emitted in by_choice.items() if emitted]
        out += [self._notice_chunk(choice) for choice in list(self.notices) if self.notices[choice]]
        if self.ctx.policy_summary and not self.summary_sent:
            last = out.pop() if out else {**self.base, "choices": []}
            last["agent_router"] = {"policy": list(self.ctx.policy_summary)}
            out.append(last)
        return [orjson.dumps(chunk) for chunk in out]

    # -- one choice of one chunk ---------------------------------------------------------------------
    def _fast(self, payload: bytes) -> bool:
        if not self.had_text and b'"content":"' in payload and b'"content":""' not in payload:
            self.had_text.add(0)
        if self.unsettled or self.owed or may_carry_call(payload):
            return False
        return not (self.ctx.policy_summary and not self.summary_sent
                    and (b'"finish_reason":"' in payload or b'"finish_reason": "' in payload))

    def _choice(self, choice: dict[str, Any], before: list[bytes]) -> tuple[dict[str, Any] | None, bool]:
        given_index, given_delta = choice.get("index"), choice.get("delta")
        index: int = given_index if isinstance(given_index, int) else 0
        delta: dict[str, Any] = given_delta if isinstance(given_delta, dict) else {}
        if delta.get("content"):
            self.had_text.add(index)
        emitted: list[Emitted] = []
        touched = "tool_calls" in delta or "function_call" in delta
        fragments = delta.get("tool_calls")
        for fragment in fragments if isinstance(fragments, list) else []:
            emitted.extend(self._tool_fragment(index, fragment))
        legacy = delta.get("function_call")
        if isinstance(legacy, dict):
            emitted.extend(self._legacy_fragment(index, legacy))
        finish = choice.get("finish_reason")
        changed = touched
        if finish is not None:
            for call in [c for c in self.calls.values() if c.choice == index and c.state in ("naming", "holding")]:
                emitted.extend(self._settle(call))
            if finish in ("tool_calls", "function_call") and index not in self.passed and not self.audit:
                finish, changed = "stop", True
            if self.notices.get(index) and not self.audit:
                before.append(orjson.dumps(self._notice_chunk(index)))
                changed = True
        if not changed and not emitted:
            return choice, False
        new_delta = {k: v for k, v in delta.items() if k not in ("tool_calls", "function_call")}
        new_delta.update(_delta(emitted))
        if not new_delta and finish is None and touched:
            return None, True
        return {**choice, "delta": new_delta, "finish_reason": finish}, True

    def _tool_fragment(self, choice: int, fragment: Any) -> list[Emitted]:
        if not isinstance(fragment, dict):
            return []
        upstream = fragment.get("index")
        if not isinstance(upstream, int) or isinstance(upstream, bool):
            opened = self.open.get(choice)
            upstream = opened[1] if opened and "id" not in fragment else ("unindexed", len(self.calls))
        key = (choice, upstream)
        kind, body = _body_of(fragment)
        known = self.calls.get(key)
        if known is not None and _starts_another_call(known, fragment.get("id"), body.get("name")):
            self._retire(key)
            known = None
        if kind != "ambiguous" and (known is None or kind is None or known.kind in (None, kind)):
            return self._fragment(choice, key, False, fragment, body, kind)
        out = self._fragment(choice, key, False, fragment, {}, None) if known is None else []
        call = self.calls[key]
        if call.state not in ("naming", "holding"):
            return out  # a passed call takes no piece of another kind; a dropped one takes nothing
        return out + self._refuse(call, ToolDecision(False, "ambiguous-call", "a streamed tool call carried both a "
                                                     "function and a custom body, or switched between them"))

    def _legacy_fragment(self, choice: int, function: dict[str, Any]) -> list[Emitted]:
        """A legacy ``function_call`` piece. A choice has one such call: a second one (a new name once the first is
        named) cannot be told apart from the first by the client, so it is refused."""
        key = (choice, "function_call")
        known = self.calls.get(key)
        if known is None or not _starts_another_call(known, None, function.get("name")):
            return self._fragment(choice, key, True, None, function, "function")
        self._retire(key)
        out = self._fragment(choice, key, True, None, {}, "function")
        call = self.calls[key]
        name = function.get("name")
        call.name = name if isinstance(name, str) else ""
        if call.state == "dropped":
            return out
        return out + self._refuse(call, ToolDecision(False, "second-function-call", "a second function_call in one "
                                                     "choice would be merged with the first by the client"))

    def _retire(self, key: tuple[int, Any]) -> None:
        """A new call reuses ``key``'s upstream index: file the old call away so the two are never merged."""
        retired = (key[0], ("reused", len(self.calls)))
        self.calls[retired] = self.calls.pop(key)
        if self.open.get(key[0]) == key:
            self.open[key[0]] = retired

    def _fragment(self, choice: int, key: tuple[int, Any], legacy: bool, fragment: dict[str, Any] | None,
                  function: dict[str, Any], kind: str | None) -> list[Emitted]:
        out: list[Emitted] = []
        call = self.calls.get(key)
        if call is None:
            opened = self.calls.get(self.open.get(choice, (-1, None)))
            if opened is not None and opened.state in ("naming", "holding"):
                out.extend(self._settle(opened))
            call = self.calls[key] = _Call(choice, legacy)
            self.open[choice] = key
            self.unsettled += 1
            if len(self.calls) > MAX_CALLS:
                return out + self._refuse(call, ToolDecision(False, "too-many-calls",
                                                             f"more than {MAX_CALLS} tool calls in one answer"))
        if call.state == "dropped":
            return out
        call.kind = call.kind or kind
        piece = function.get("input" if call.kind == "custom" else "arguments")
        piece = piece if isinstance(piece, str) else ""
        if call.state == "passed":
            return out + ([self._emit(call, piece, first=False)] if piece and not call.sealed else [])
        if fragment is not None:
            call.id = call.id or (fragment.get("id") if isinstance(fragment.get("id"), str) else None)
        name = function.get("name")
        if call.state == "naming" and isinstance(name, str) and name:
            call.name += name
            call.size += _utf8_size(name)
        if piece:
            call.args += piece
            call.size += _utf8_size(piece)
        if call.size > self.policy.max_call_bytes:
            return out + self._refuse(call, ToolDecision(
                False, "oversized", f"tool call is larger than {self.policy.max_call_bytes} bytes while held for "
                                    "checking"))
        if call.state == "naming" and call.name and piece:
            return out + self._named(call)
        return out

    # -- decisions -----------------------------------------------------------------------------------
    def _named(self, call: _Call) -> list[Emitted]:
        decision = decide_call(self.policy, self.offered, call.name, None)
        if not decision.allowed:
            return self._refuse(call, decision)
        if decision.pending:
            call.state = "holding"
            return []
        return self._pass(call, decision)

    def _settle(self, call: _Call) -> list[Emitted]:
        """The call's arguments are complete: decide it for good."""
        if call.state == "naming":
            out = self._named(call)
            if call.state != "holding":
                return out
        decision = decide_call(self.policy, self.offered, call.name, call.args)
        call.sealed = True
        return self._pass(call, decision) if decision.allowed else self._refuse(call, decision)

    def _pass(self, call: _Call, decision: ToolDecision) -> list[Emitted]:
        record_decision(self.ctx, self.policy, call.name, decision, "stream")
        call.state = "passed"
        self.unsettled -= 1
        if not call.legacy:
            call.out_index = self.next_index[call.choice]
            self.next_index[call.choice] += 1
        self.passed.add(call.choice)
        emitted = self._emit(call, call.args, first=True)
        call.args = ""
        return [emitted]

    def _refuse(self, call: _Call, decision: ToolDecision) -> list[Emitted]:
        record_decision(self.ctx, self.policy, call.name, decision, "stream")
        if call.state in ("naming", "holding"):
            self.unsettled -= 1
        call.state, call.args = "dropped", ""
        if self.policy.mode == "block":
            raise PolicyViolation(f"the model called tool {call.name!r}, which role {self.policy.role!r} may not "
                                  f"use: {decision.reason}")
        if not self.audit:
            self.notices[call.choice].append(self.policy.notice_for(call.name, decision.reason))
            self.owed += 1
        return []

    # -- building output -----------------------------------------------------------------------------
    def _emit(self, call: _Call, arguments: str, *, first: bool) -> Emitted:
        if call.legacy:
            return True, ({"name": call.name, "arguments": arguments} if first else {"arguments": arguments})
        kind, piece = ("custom", "input") if call.kind == "custom" else ("function", "arguments")
        if not first:
            return False, {"index": call.out_index, kind: {piece: arguments}}
        fragment: dict[str, Any] = {"index": call.out_index}
        if call.id is not None:
            fragment["id"] = call.id
        fragment["type"] = kind
        fragment[kind] = {"name": call.name, piece: arguments}
        return False, fragment

    def _remember(self, chunk: dict[str, Any]) -> None:
        for key in ("id", "created", "model", "system_fingerprint"):
            if key in chunk and key not in self.base:
                self.base[key] = chunk[key]

    def _chunk(self, choice: int, delta: dict[str, Any]) -> dict[str, Any]:
        return {**self.base, "choices": [{"index": choice, "delta": delta, "logprobs": None, "finish_reason": None}]}

    def _notice_chunk(self, choice: int) -> dict[str, Any]:
        notices = self.notices.pop(choice)
        self.owed -= len(notices)
        text = "\n".join(notices)
        if choice in self.had_text:
            text = "\n\n" + text
        self.had_text.add(choice)
        return self._chunk(choice, {"content": text})


def _body_of(fragment: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(kind, body) of a streamed call fragment: ``function`` or ``custom`` (from the body it carries, else its
    ``type``), None when it says neither, ``ambiguous`` when it carries both bodies or contradicts its type."""
    function, custom = fragment.get("function"), fragment.get("custom")
    declared = fragment.get("type")
    if function is not None and custom is not None:
        return "ambiguous", {}
    kind = "custom" if custom is not None else "function" if function is not None else None
    if kind is not None and declared is not None and declared != kind:
        return "ambiguous", {}
    body = custom if custom is not None else function
    if kind is None and declared in ("function", "custom"):
        kind = declared
    return kind, body if isinstance(body, dict) else {}


def _starts_another_call(call: _Call, new_id: Any, name: Any) -> bool:
    """A fragment at a used index opens a new call when it carries another id, or another name once the call's
    name is settled (providers repeat the head of a call, never change it)."""
    if isinstance(new_id, str) and new_id and call.id is not None and new_id != call.id:
        return True
    return isinstance(name, str) and bool(name) and call.state != "naming" and name != call.name


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _delta(emitted: list[Emitted]) -> dict[str, Any]:
    """Tool-call fragments as a delta; legacy function_call pieces merged into one object."""
    delta: dict[str, Any] = {}
    tools = [fragment for legacy, fragment in emitted if not legacy]
    if tools:
        delta["tool_calls"] = tools
    legacy_parts = [fragment for legacy, fragment in emitted if legacy]
    if legacy_parts:
        merged: dict[str, Any] = {}
        for part in legacy_parts:
            if "name" in part and "name" not in merged:
                merged["name"] = part["name"]
            merged["arguments"] = merged.get("arguments", "") + part.get("arguments", "")
        delta["function_call"] = merged
    return delta


def needs_stream_filter(ctx: RequestContext) -> bool:
    """Always True: a manipulated model may emit calls nobody offered, so every stream is watched.

    The filter's fast path (a byte search per chunk) keeps the cost of watching text-only streams tiny.
    """
    return True
