"""Streaming side on the Messages wire: a state machine fed one Anthropic SSE event payload at a time.

Fast path: while no block was removed (so no index needs renumbering) and none is held, an event whose bytes
cannot concern a call (:func:`router.policy.messages_answer.may_carry_call`) is passed on as the same bytes
object, unparsed. A parsed event that nothing changes also goes on as the bytes that came.

A call block (``tool_use``, ``server_tool_use``, ``mcp_tool_use``, or a type imitating one) is decided on its name
at ``content_block_start``. Allowed with no argument condition: it streams on. Allowed but a condition applies:
it is held, start and input pieces, until ``content_block_stop``, then decided on its input and re-emitted (start,
one ``input_json_delta`` with the whole input, stop), or dropped. A refused block is swallowed entirely (its name
and every ``input_json_delta``), as are the blocks answering it (same ``tool_use_id``). Surviving blocks are
numbered without gaps, in the order they start (so the upstream's own numbering is never trusted).

Text, thinking and signature deltas are the same bytes on the fast path even at an index never started: they
cannot carry a call. Anything that may (``tool`` in any case, a ``\\u`` escape, ``input_json_delta``) and every
``message_start`` / ``content_block_start`` is parsed, so block starts are counted and input pieces placed.

Removed calls are announced by a text block (start, one ``text_delta``, stop) placed before ``message_delta``;
there ``stop_reason`` ``tool_use`` becomes ``end_turn`` when no ``tool_use`` block survived, and the event gets an
``agent_router`` field (``{"policy": [...]}``, which SDKs ignore) when the policy changed anything.

Fail closed: a held block is bounded by ``policy.max_call_bytes`` (input bytes held) and a stream by
:data:`MAX_BLOCKS`; a delta or stop for an index never started (or already stopped) is dropped; a second start at a
used index retires the first block (closed, never merged) and is judged as a new one; a block still held when
another starts or the message ends is decided on the input it has. ``block`` raises PolicyViolation (the pipeline
ends the stream with an Anthropic ``error`` event); ``audit_only`` records every decision and passes every byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeGuard

import orjson

from router.context import RequestContext
from router.errors import PolicyViolation
from router.policy import lookalike_keys, messages_keys
from router.policy.decide import ToolDecision, decide_call
from router.policy.events import action_for, record, record_decision
from router.policy.messages_answer import may_carry_call
from router.policy.response_side import policy_of

MAX_BLOCKS = 256


@dataclass(slots=True)
class _Block:
    out: int
    """Its index towards the client (-1: not given one, it is held or dropped)."""
    call: bool
    state: str = "passed"
    """``passed``, ``held`` or ``dropped``."""
    name: Any = None
    id: str | None = None
    start: dict[str, Any] | None = None
    pieces: list[str] = field(default_factory=list)
    """The held ``partial_json`` pieces (re-emitted as one ``input_json_delta``)."""
    size: int = 0
    """UTF-8 bytes held (name and pieces, each piece at least one, so empty pieces are bounded too)."""
    stopped: bool = False


class MessagesStreamFilter:
    def __init__(self, ctx: RequestContext) -> None:
        self.ctx = ctx
        self.policy, self.offered = policy_of(ctx)
        self.audit = self.policy.mode == "audit_only"
        self.blocks: dict[int, _Block] = {}
        self.started = 0
        self.next_out = 0
        self.renumbered = False
        self.held: _Block | None = None
        self.removed_ids: set[str] = set()
        self.notices: list[str] = []
        self.tool_use_passed = False
        self.summary_sent = False

    # -- the two entry points ------------------------------------------------------------------------
    def feed(self, payload: bytes) -> list[bytes]:
        """Take one event payload (JSON bytes); return the payloads to send on, in order."""
        if self.held is None and not self.renumbered and not may_carry_call(payload) \
                and b"_start" not in payload and b"_json" not in payload and not (
                self.ctx.policy_summary and not self.summary_sent and b"message_delta" in payload):
            return [payload]
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return [payload] if self.audit else []  # it may carry a call: never pass what cannot be checked
        if not isinstance(event, dict):
            return [payload] if self.audit else []
        scrubbed = self._lookalikes(event)
        out = self._event(event)
        if self.audit:
            return [payload]
        same = not scrubbed and not may_carry_call(payload)  # bytes that may hold a call (a repeated key read
        # first-wins by the client, say) go out as the object that was judged
        return [payload if item is event and same else orjson.dumps(item) for item in out]

    def finish(self) -> list[bytes]:
        """The stream ended without ``message_delta``/``message_stop``: settle a held block, owe the notice."""
        out = self._settle_held() + self._notice_block()
        return [] if self.audit else [orjson.dumps(item) for item in out]

    # -- one event -----------------------------------------------------------------------------------
    def _event(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind == "content_block_start":
            return self._start(event)
        if kind in ("content_block_delta", "content_block_stop"):
            return self._inside(event, kind == "content_block_stop")
        if kind == "message_delta":
            return [*self._settle_held(), *self._notice_block(), self._message_delta(event)]
        if kind == "message_stop":
            return [*self._settle_held(), *self._notice_block(), event]
        if kind == "message_start":
            return [self._message_start(event)]
        return [event]

    def _start(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        out = self._settle_held()
        index, block = event.get("index"), event.get("content_block")
        if not _is_index(index) or not isinstance(block, dict):
            return out + self._protocol("a content_block_start without an integer index and a block object")
        if index in self.blocks:
            out += self._retire(index)
        self.started += 1
        if self.started > MAX_BLOCKS:
            self.blocks[index] = _Block(-1, False, "dropped", stopped=True)
            return out + self._protocol(f"more than {MAX_BLOCKS} content blocks in one answer")
        if not messages_keys.is_call_type(block.get("type")):
            answered = block.get("tool_use_id")
            if isinstance(answered, str) and answered in self.removed_ids:
                self.blocks[index] = _Block(-1, False, "dropped")
                return out
            entry = self.blocks[index] = _Block(self._next(), False)
            return [*out, self._renumbered(event, entry)]
        name = messages_keys.call_name(block)
        entry = self.blocks[index] = _Block(-1, True, "held", name, block.get("id") if isinstance(
            block.get("id"), str) else None, event, size=_utf8_size(str(name)))
        decision = decide_call(self.policy, self.offered, name, None)
        if not decision.allowed:
            return out + self._refuse(entry, decision)
        if decision.pending:
            self.held = entry
            return out
        return out + self._pass(entry, decision)

    def _inside(self, event: dict[str, Any], stop: bool) -> list[dict[str, Any]]:
        index = event.get("index")
        entry = self.blocks.get(index) if _is_index(index) else None
        if entry is None or entry.stopped:
            return self._protocol(f"a {event.get('type')} for content block {index!r}, which is not open")
        if entry.state == "dropped":
            entry.stopped = stop
            return []
        if entry.state == "passed":
            entry.stopped = stop
            return [self._renumbered(event, entry)]
        if stop:
            entry.stopped = True
            return self._settle_held()
        delta = event.get("delta")
        piece = delta.get("partial_json") if isinstance(delta, dict) and delta.get("type") == "input_json_delta" \
            else None
        if not isinstance(piece, str):
            return []  # only input belongs in a call block; anything else is dropped with its bytes unread
        entry.pieces.append(piece)
        entry.size += max(1, _utf8_size(piece))
        if entry.size > self.policy.max_call_bytes:
            return self._refuse(entry, ToolDecision(False, "oversized", f"tool call is larger than "
                                                    f"{self.policy.max_call_bytes} bytes while held for checking"))
        return []

    def _message_start(self, event: dict[str, Any]) -> dict[str, Any]:
        """Blocks come as their own events; content already in ``message_start`` cannot be judged in order."""
        message = event.get("message")
        if isinstance(message, dict) and message.get("content"):
            self._protocol("message_start carried content blocks")
            return {**event, "message": {**message, "content": []}}
        return event

    def _message_delta(self, event: dict[str, Any]) -> dict[str, Any]:
        delta = event.get("delta")
        if isinstance(delta, dict) and delta.get("stop_reason") == "tool_use" and not self.tool_use_passed \
                and self.policy.mode == "strip":
            event = {**event, "delta": {**delta, "stop_reason": "end_turn"}}
        if self.ctx.policy_summary and not self.audit:
            event = {**event, "agent_router": {"policy": list(self.ctx.policy_summary)}}
            self.summary_sent = True
        return event

    # -- decisions -----------------------------------------------------------------------------------
    def _settle_held(self) -> list[dict[str, Any]]:
        """Decide the held block on its input (complete at its stop; what there is when cut short)."""
        entry, self.held = self.held, None
        if entry is None or entry.state != "held":
            return []
        if entry.pieces:
            arguments = "".join(entry.pieces)
        else:
            start = (entry.start or {}).get("content_block") or {}
            value = start.get("input", {})
            arguments = orjson.dumps(value).decode() if isinstance(value, dict) else "\x00"
        decision = decide_call(self.policy, self.offered, entry.name, arguments)
        if not decision.allowed:
            return self._refuse(entry, decision)
        return self._pass(entry, decision)

    def _pass(self, entry: _Block, decision: ToolDecision) -> list[dict[str, Any]]:
        record_decision(self.ctx, self.policy, entry.name, decision, "stream")
        entry.state, entry.out = "passed", self._next()
        if entry.start is not None and (entry.start.get("content_block") or {}).get("type") == "tool_use":
            self.tool_use_passed = True
        out = [self._renumbered(entry.start, entry)] if entry.start is not None else []
        if entry.pieces:
            out.append({"type": "content_block_delta", "index": entry.out,
                        "delta": {"type": "input_json_delta", "partial_json": "".join(entry.pieces)}})
        if entry.stopped and entry.start is not None:
            out.append({"type": "content_block_stop", "index": entry.out})
        entry.start, entry.pieces = None, []
        return out

    def _refuse(self, entry: _Block, decision: ToolDecision) -> list[dict[str, Any]]:
        record_decision(self.ctx, self.policy, entry.name, decision, "stream")
        entry.state, entry.start, entry.pieces = "dropped", None, []
        if self.held is entry:
            self.held = None
        if entry.id is not None:
            self.removed_ids.add(entry.id)
        if self.policy.mode == "block":
            raise PolicyViolation(f"the model called tool {entry.name!r}, which role {self.policy.role!r} may not "
                                  f"use: {decision.reason}")
        if not self.audit:
            self.notices.append(self.policy.notice_for(str(entry.name), decision.reason))
            self.renumbered = True
        return []

    def _protocol(self, reason: str) -> list[dict[str, Any]]:
        """An event out of order: dropped (and recorded); it ends a block-mode stream."""
        decision = ToolDecision(False, "out-of-order", reason)
        record(self.ctx, self.policy, None, action_for(self.policy, decision), "stream", decision.rule, reason)
        if self.policy.mode == "block":
            raise PolicyViolation(f"role {self.policy.role!r}: the stream cannot be judged: {reason}")
        self.renumbered = self.renumbered or not self.audit
        return []

    def _retire(self, index: int) -> list[dict[str, Any]]:
        """A second start at a used index: the first block is closed (a held one decided), never merged."""
        old = self.blocks.pop(index)
        self.blocks[-1 - self.started] = old
        self._protocol(f"a second content_block_start at index {index}")
        out = self._settle_held() if self.held is old else []
        if old.state == "passed" and not old.stopped:
            old.stopped = True
            out.append({"type": "content_block_stop", "index": old.out})
        return out

    # -- building output -----------------------------------------------------------------------------
    def _next(self) -> int:
        out = self.next_out
        self.next_out += 1
        return out

    def _renumbered(self, event: dict[str, Any], entry: _Block) -> dict[str, Any]:
        if event.get("index") == entry.out:
            return event
        self.renumbered = True
        return {**event, "index": entry.out}

    def _notice_block(self) -> list[dict[str, Any]]:
        if not self.notices or self.audit:
            return []
        text, self.notices = "\n".join(self.notices), []
        index = self._next()
        return [{"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
                {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}},
                {"type": "content_block_stop", "index": index}]

    def _lookalikes(self, event: dict[str, Any]) -> bool:
        found = messages_keys.find(event, "$")
        for key in ("content_block", "delta", "message"):
            found += messages_keys.find(event.get(key), key)
        return bool(found) and lookalike_keys.refuse(self.ctx, self.policy, found, "stream") > 0


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _is_index(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
