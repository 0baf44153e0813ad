"""Streaming side on the Responses wire: a state machine fed one Responses SSE event payload at a time.

A client-executed call item is decided at its ``response.output_item.added`` on its name (refused: every event of
it is swallowed), then held with every later event, order kept, until its ``response.output_item.done``: there it
is decided on its whole arguments and released or dropped. A released call must be the call that streamed: its
done item has the type, name and ids of its added item, and its argument (or custom input) deltas add up to the
done item's arguments; otherwise it is refused (``inconsistent-call``), since clients build calls from either.

Towards the client, output items are numbered without gaps in the order their ``output_item.added`` goes out, and
``sequence_number`` starts at the first event's and rises by one per event sent. Every event that carries a
``response`` (lifecycle and terminal) carries as its ``output`` exactly the items the client saw, so the
``response.completed`` an SDK keeps cannot hold a call the stream did not show.

Fast path: while nothing was dropped, inserted or renumbered and nothing is held, a plain text event (by the
byte prefix of its type) that cannot carry a call (:func:`router.policy.responses_answer.may_carry_call`) and has
the expected ``sequence_number`` goes on as the same bytes, unparsed. A parsed event that nothing changed is also
sent as the bytes that came.

Fail closed: a held call is bounded by ``policy.max_call_bytes`` (argument bytes) and :data:`MAX_QUEUED` (events
held behind it), a stream by :data:`MAX_ITEMS`; an event for an item never added (or already done), a second
``output_item.added`` at a used index, and a call item in any event but ``output_item.added``/``.done`` are dropped
and recorded (``out-of-order``).

``strip``: the notice goes out as one more message item before the terminal event. ``block``: the first refusal
ends the stream with an ``error`` event (code ``tool_not_allowed``) and a ``response.failed``; the rest is
swallowed. ``audit_only``: every byte passes and every call is decided and recorded at its ``output_item.done``.
A stream that ends without a terminal event gets a ``response.failed`` (code ``stream_incomplete``).
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import orjson

from router.context import RequestContext
from router.errors import PolicyViolation
from router.policy import lookalike_keys, responses_keys
from router.policy.decide import ToolDecision, decide_call
from router.policy.events import action_for, record, record_decision
from router.policy.response_side import policy_of
from router.policy.responses_answer import may_carry_call, notice_item

MAX_ITEMS = 256
MAX_QUEUED = 4096
"""Events held behind an undecided call; past this the call is refused (a stream cannot stall the filter)."""
LIFECYCLE = frozenset(("response.created", "response.queued", "response.in_progress"))
TERMINAL = frozenset(("response.completed", "response.incomplete", "response.failed"))
_PLAIN = tuple(b'{"type":"response.%s"' % kind for kind in (
    b"output_text.delta", b"output_text.done", b"reasoning_summary_text.delta", b"reasoning_summary_text.done",
    b"reasoning_text.delta", b"reasoning_text.done", b"refusal.delta", b"refusal.done", b"content_part.added",
    b"content_part.done", b"reasoning_summary_part.added", b"reasoning_summary_part.done"))
_ITEM_EVENTS = frozenset(("response.output_item.added", "response.output_item.done"))
_SEQ = re.compile(rb'"sequence_number"\s*:\s*(\d+)')
_DELTAS = {"response.function_call_arguments.delta": "arguments", "response.custom_tool_call_input.delta": "input"}
_DONES = {"response.function_call_arguments.done": "arguments", "response.custom_tool_call_input.done": "input"}
_STREAMED = {"function_call": "arguments", "custom_tool_call": "input"}
"""Call types whose argument text streams as deltas, and the item field the deltas build."""


@dataclass(slots=True)
class _Item:
    call: bool
    added: dict[str, Any]
    state: str = "passed"
    """``passed``, ``held`` (a call awaiting its decision) or ``dropped``."""
    out: int = -1
    """Its ``output_index`` towards the client, once its ``output_item.added`` went out."""
    name: Any = None
    pieces: list[str] = field(default_factory=list)
    streamed_done: str | None = None
    size: int = 0
    done: bool = False


_Queued = tuple[dict[str, Any], bytes | None, _Item | None]


class ResponsesStreamFilter:
    """An EventFilter for Responses streams (see the module docstring for what it promises)."""

    def __init__(self, ctx: RequestContext) -> None:
        self.ctx = ctx
        self.policy, self.offered = policy_of(ctx)
        self.audit = self.policy.mode == "audit_only"
        self.next_sequence_number = 0
        self.started = False
        self.exact = False
        """Nothing dropped, inserted or renumbered so far (the fast path's condition)."""
        self.ended = False
        self.base: dict[str, Any] | None = None
        self.shown: list[dict[str, Any]] = []
        self.items: dict[int, _Item] = {}
        self.by_id: dict[str, _Item] = {}
        self.queue: list[_Queued] = []
        self.notices: list[str] = []
        self.out: list[bytes] = []

    # -- the entry points ----------------------------------------------------------------------------
    def feed(self, payload: bytes) -> list[bytes]:
        """Take one event payload (JSON bytes); return the payloads to send on, in order."""
        if self.exact and not self.queue and payload.startswith(_PLAIN) and b"call" not in payload.lower() \
                and b"\\u" not in payload:  # may_carry_call, inlined: this is every text delta's path
            found = _SEQ.findall(payload)
            if len(found) == 1 and int(found[0]) == self.next_sequence_number:
                self.next_sequence_number += 1
                return [payload]
        if self.ended and not self.audit:
            return []
        if self.audit:
            self._observe(payload)
            return [payload]
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            event = None
        try:
            if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                self._protocol("an event that is not a JSON object with a string type")
            else:
                self._start(event)
                self._event(event, None if self._lookalikes(event) else payload)
        except PolicyViolation as exc:
            self._block(exc.message)
        out, self.out = self.out, []
        return out

    def finish(self) -> list[bytes]:
        """The upstream stream ended: settle what is held, owe the notice and a terminal event."""
        if self.audit:
            return [] if self.ended else [self._dumps(self._failed("stream_incomplete", _CUT_SHORT))]
        if not self.ended:
            try:
                self._settle_all()
                if not self.ended:
                    self._notice()
                    self._emit_new(self._failed("stream_incomplete", _CUT_SHORT))
                    self._end()
            except PolicyViolation as exc:
                self._block(exc.message)
        out, self.out = self.out, []
        return out

    def skeleton(self) -> dict[str, Any]:
        """The Response as last seen, its ``output`` the items the client saw (for an error event's sequel)."""
        base = dict(self.base) if self.base is not None else {
            "id": f"resp_{uuid.uuid4().hex}", "object": "response", "created_at": int(time.time()),
            "status": "in_progress", "model": self.ctx.requested_model, "error": None, "incomplete_details": None,
            "instructions": None, "metadata": {}, "parallel_tool_calls": True, "temperature": None,
            "tool_choice": "auto", "tools": [], "top_p": None}
        base["output"] = list(self.shown)
        return base

    # -- one event -----------------------------------------------------------------------------------
    def _start(self, event: dict[str, Any]) -> None:
        if not self.started:
            self.started = True
            seq = event.get("sequence_number")
            self.next_sequence_number = seq if _is_index(seq) else 0
            self.exact = True

    def _event(self, event: dict[str, Any], raw: bytes | None) -> None:
        kind = event["type"]
        if kind not in _ITEM_EVENTS and responses_keys.is_client_call(event.get("item")):
            self._protocol(f"a {kind[:60]} event carrying a call item")
        elif kind == "response.output_item.added":
            self._added(event, raw)
        elif kind in TERMINAL:
            self._settle_all()
            if not self.ended:
                self._notice()
                self._offer(event, raw, None)
                self._end()
        elif "output_index" in event or "item_id" in event:
            self._of_item(event, raw)
        else:
            self._offer(event, raw, None)

    def _added(self, event: dict[str, Any], raw: bytes | None) -> None:
        index, item = event.get("output_index"), event.get("item")
        if not _is_index(index) or not isinstance(item, dict):
            return self._protocol("an output_item.added without an integer output_index and an item object")
        if index in self.items:  # a reused index makes its later events ambiguous: none go on
            reason = f"a second output_item.added at output_index {index}"
            self._protocol(reason)
            old = self.items[index]
            if old.state == "held":
                return self._refuse(old, ToolDecision(False, "out-of-order", reason))
            old.state = "dropped"
            return None
        if len(self.items) >= MAX_ITEMS:
            return self._protocol(f"more than {MAX_ITEMS} output items in one response")
        entry = self.items[index] = _Item(responses_keys.is_client_call(item), item)
        if isinstance(item.get("id"), str):
            self.by_id.setdefault(item["id"], entry)
        if entry.call:
            entry.name = responses_keys.call_facts(item)[0]
            decision = decide_call(self.policy, self.offered, entry.name, None)
            if not decision.allowed:
                return self._refuse(entry, decision)
            entry.state = "held"
        self._offer(event, raw, entry)

    def _of_item(self, event: dict[str, Any], raw: bytes | None) -> None:
        index, item_id = event.get("output_index"), event.get("item_id")
        entry = self.items.get(index) if _is_index(index) else None
        if entry is None and "output_index" not in event and isinstance(item_id, str):
            entry = self.by_id.get(item_id)
        kind = event["type"]
        if entry is None or entry.done:
            return self._protocol(f"a {kind[:60]} for output item {index!r}, which is not open")
        if entry.state == "dropped":
            return None
        done = kind == "response.output_item.done"
        if entry.state == "passed":
            if done and responses_keys.is_client_call(event.get("item")) and not entry.call:
                return self._protocol(f"output item {index} turned into a call at its output_item.done")
            entry.done = done
            return self._offer(event, raw, entry)
        if kind in _DELTAS:
            piece = event.get("delta")
            if not isinstance(piece, str):
                return self._refuse(entry, ToolDecision(False, "invalid-arguments", "an argument delta that is "
                                                        "not a string"))
            entry.pieces.append(piece)
            entry.size += max(1, len(piece.encode("utf-8", "surrogatepass")))
            if entry.size > self.policy.max_call_bytes:
                return self._refuse(entry, ToolDecision(False, "oversized", "tool call is larger than "
                                                        f"{self.policy.max_call_bytes} bytes while held for checking"))
        elif kind in _DONES:
            text = event.get(_DONES[kind])
            entry.streamed_done = text if isinstance(text, str) else "\x00"
        self._offer(event, raw, entry)
        if done:
            entry.done = True
            self._settle(entry, event.get("item"))
        return None

    # -- decisions -----------------------------------------------------------------------------------
    def _settle_all(self) -> None:
        for entry in list(self.items.values()):
            if entry.state == "held" and not self.ended:
                self._settle(entry, None)

    def _settle(self, entry: _Item, final: Any) -> None:
        """Decide a held call on its done item (None: cut short, on what streamed) and release or drop it."""
        decision = self._judge(entry, final)
        if not decision.allowed:
            return self._refuse(entry, decision)
        record_decision(self.ctx, self.policy, entry.name, decision, "stream")
        entry.state = "passed"
        return self._drain()

    def _judge(self, entry: _Item, final: Any) -> ToolDecision:
        added = entry.added
        kind = added.get("type")
        key = _STREAMED.get(kind) if isinstance(kind, str) else None
        streamed = None
        if key is not None:
            head = added.get(key)
            streamed = (head if isinstance(head, str) else "") + "".join(entry.pieces)
        if final is None:
            final = {**added, key: streamed} if key is not None else added
        elif not isinstance(final, dict) or _identity(final) != _identity(added) or (
                key is not None and not _same_text(entry, streamed, final.get(key))):
            return ToolDecision(False, "inconsistent-call", f"call {entry.name!r} at its output_item.done is not "
                                                            "the call that streamed")
        name, arguments = responses_keys.call_facts(final)
        return decide_call(self.policy, self.offered, name, arguments)

    def _refuse(self, entry: _Item, decision: ToolDecision) -> None:
        record_decision(self.ctx, self.policy, entry.name, decision, "stream")
        entry.state = "dropped"
        self.exact = False
        self.queue = [queued for queued in self.queue if queued[2] is not entry]
        if self.policy.mode == "block":
            raise PolicyViolation(f"the model called tool {entry.name!r}, which role {self.policy.role!r} may not "
                                  f"use: {decision.reason}")
        self.notices.append(self.policy.notice_for(str(entry.name), decision.reason))
        self._drain()

    def _protocol(self, reason: str) -> None:
        """An event that cannot be placed: dropped (and recorded); it ends a block-mode stream."""
        decision = ToolDecision(False, "out-of-order", reason)
        record(self.ctx, self.policy, None, action_for(self.policy, decision), "stream", decision.rule, reason)
        if self.policy.mode == "block":
            raise PolicyViolation(f"role {self.policy.role!r}: the stream cannot be judged: {reason}")
        self.exact = False

    def _lookalikes(self, event: dict[str, Any]) -> bool:
        found = responses_keys.find(event, "$")
        for key in ("item", "response"):
            found += responses_keys.find(event.get(key), key)
        return bool(found) and lookalike_keys.refuse(self.ctx, self.policy, found, "stream") > 0

    def _end(self) -> None:
        """No event goes out after the terminal one (nor through the fast path)."""
        self.ended = True
        self.exact = self.exact and self.audit

    def _block(self, message: str) -> None:
        self.queue.clear()
        self._end()
        self._emit_new({"type": "error", "code": "tool_not_allowed", "message": message, "param": None})
        self._emit_new(self._failed("tool_not_allowed", message))

    # -- building output -----------------------------------------------------------------------------
    def _offer(self, event: dict[str, Any], raw: bytes | None, entry: _Item | None) -> None:
        self.queue.append((event, raw, entry))
        if len(self.queue) > MAX_QUEUED:
            head = next(queued[2] for queued in self.queue if queued[2] is not None and queued[2].state == "held")
            return self._refuse(head, ToolDecision(False, "oversized", f"more than {MAX_QUEUED} events came while "
                                                   "the call was held for checking"))
        return self._drain()

    def _drain(self) -> None:
        """Send queued events from the head up to the first that belongs to a call still held."""
        sent = 0
        for event, raw, entry in self.queue:
            if entry is not None and entry.state == "held":
                break
            sent += 1
            self._emit(event, raw, entry)
        if sent:
            del self.queue[:sent]

    def _emit(self, event: dict[str, Any], raw: bytes | None, entry: _Item | None) -> None:
        kind = event["type"]
        changes: dict[str, Any] = {}
        if entry is not None:
            if entry.out < 0 and kind == "response.output_item.added":
                entry.out = len(self.shown)
                self.shown.append(event["item"])
            elif kind == "response.output_item.done" and isinstance(event.get("item"), dict) and entry.out >= 0:
                self.shown[entry.out] = event["item"]
            if event.get("output_index") != entry.out and "output_index" in event:
                changes["output_index"] = entry.out
        response = event.get("response")
        lifecycle = kind in LIFECYCLE or kind in TERMINAL
        if isinstance(response, dict) and (lifecycle or "output" in response):
            if response.get("output") != self.shown:
                response = {**response, "output": list(self.shown)}
                changes["response"] = response
            if lifecycle:
                self.base = response
        if event.get("sequence_number") != self.next_sequence_number:
            changes["sequence_number"] = self.next_sequence_number
        self.next_sequence_number += 1
        if changes:
            self.exact = False
            event = {**event, **changes}
        if raw is not None and not changes and raw.startswith(b'{"type":') and not may_carry_call(raw):
            self.out.append(raw)
        else:
            self.out.append(self._dumps(event))

    def _emit_new(self, event: dict[str, Any]) -> None:
        self.exact = False
        event["sequence_number"] = self.next_sequence_number
        self.next_sequence_number += 1
        self.out.append(self._dumps(event))

    def _notice(self) -> None:
        if not self.notices:
            return
        text, self.notices = "\n".join(self.notices), []
        item = notice_item(text)
        part = item["content"][0]
        index, item_id = len(self.shown), item["id"]
        self.shown.append(item)
        at = {"item_id": item_id, "output_index": index, "content_index": 0}
        for event in (
                {"type": "response.output_item.added", "output_index": index,
                 "item": {**item, "status": "in_progress", "content": []}},
                {"type": "response.content_part.added", **at, "part": {**part, "text": ""}},
                {"type": "response.output_text.delta", **at, "delta": text, "logprobs": []},
                {"type": "response.output_text.done", **at, "text": text, "logprobs": []},
                {"type": "response.content_part.done", **at, "part": part},
                {"type": "response.output_item.done", "output_index": index, "item": item}):
            self._emit_new(event)

    def _failed(self, code: str, message: str) -> dict[str, Any]:
        response = {**self.skeleton(), "status": "failed", "error": {"code": code, "message": message}}
        return {"type": "response.failed", "response": response, "sequence_number": self.next_sequence_number}

    @staticmethod
    def _dumps(event: dict[str, Any]) -> bytes:
        """Encoded with ``type`` first: later stages read an event's type from its first bytes."""
        if next(iter(event), None) != "type":
            event = {"type": event.get("type"), **event}
        return orjson.dumps(event)

    # -- audit_only: watch, never change -------------------------------------------------------------
    def _observe(self, payload: bytes) -> None:
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if not isinstance(event, dict):
            return
        self._start(event)
        self._lookalikes(event)
        seq = event.get("sequence_number")
        self.next_sequence_number = seq + 1 if _is_index(seq) else self.next_sequence_number + 1
        kind, item, index = event.get("type"), event.get("item"), event.get("output_index")
        if isinstance(event.get("response"), dict) and (kind in LIFECYCLE or kind in TERMINAL):
            self.base = event["response"]
            self.ended = self.ended or kind in TERMINAL
        if kind not in ("response.output_item.added", "response.output_item.done") or not isinstance(item, dict):
            return
        if kind == "response.output_item.added" or not _is_index(index) or index >= len(self.shown):
            self.shown.append(item)
        else:
            self.shown[index] = item
        if kind == "response.output_item.done" and responses_keys.is_client_call(item):
            name, arguments = responses_keys.call_facts(item)
            record_decision(self.ctx, self.policy, name, decide_call(self.policy, self.offered, name, arguments),
                            "stream")


_CUT_SHORT = "the upstream stream ended before a terminal event"


def _identity(item: dict[str, Any]) -> tuple[Any, ...]:
    return item.get("type"), item.get("id"), item.get("call_id"), responses_keys.call_facts(item)[0]


def _same_text(entry: _Item, streamed: str | None, final: Any) -> bool:
    """Whether the argument text a client built from the deltas (and the ``.done`` event) is the done item's."""
    if streamed and streamed != final:
        return False
    return entry.streamed_done is None or entry.streamed_done == final


def _is_index(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
