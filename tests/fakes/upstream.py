"""A scriptable fake provider: OpenAI chat completions and Responses, and Anthropic Messages, over real HTTP.

It runs an aiohttp server on 127.0.0.1 in its own thread. Tests queue behaviours per upstream model
name and read back exactly what the upstream received (``received``), which is how a test proves that,
say, a stripped tool never reached the provider.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.behaviours import (
    Behaviour,
    EchoCredentials,
    Error,
    Garbage,
    Hang,
    InvalidJSON,
    ResetMidStream,
    Scripted,
    SlowStream,
    Text,
    ToolCalls,
)
from tests.fakes.embeddings import embeddings_handler
from tests.fakes.responses_wire import responses_answer, responses_events


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def tool_names(self) -> list[str]:
        names = []
        for tool in self.body.get("tools") or []:
            names.append(tool.get("function", {}).get("name") if "function" in tool else tool.get("name"))
        return names


class FakeUpstream:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._queues: dict[str, deque[Behaviour]] = defaultdict(deque)
        self._always: dict[str, Behaviour] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- scripting -------------------------------------------------------------------------------
    def queue(self, model: str, *behaviours: Behaviour) -> None:
        """The next requests for ``model`` get these behaviours, one each, then the default."""
        with self._lock:
            self._queues[model].extend(behaviours)

    def always(self, model: str, behaviour: Behaviour | None) -> None:
        with self._lock:
            if behaviour is None:
                self._always.pop(model, None)
            else:
                self._always[model] = behaviour

    def reset(self) -> None:
        with self._lock:
            self._queues.clear()
            self._always.clear()
            self.received.clear()
            self.seal = None

    def served(self, model: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if model is None or r.body.get("model") == model]

    def _next(self, model: str) -> Behaviour:
        with self._lock:
            queue = self._queues.get(model)
            if queue:
                return queue.popleft()
            return self._always.get(model) or self._always.get("*") or Text()

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self) -> FakeUpstream:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_post("/v1/chat/completions", self._openai)
            app.router.add_post("/v1/messages", self._anthropic)
            app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
            app.router.add_post("/v1/responses", self._responses)
            app.router.add_post("/v1/embeddings", embeddings_handler(self))
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-upstream", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._runner is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(5)
            except Exception:  # a hung handler must not keep the test session alive
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    # -- OpenAI chat completions -----------------------------------------------------------------
    async def _record(self, request: web.Request) -> dict[str, Any]:
        body = orjson.loads(await request.read())
        with self._lock:
            self.received.append(Received(request.path, dict(request.headers), body))
        return body

    async def _common_failures(self, behaviour: Behaviour, request: web.Request) -> web.StreamResponse | None:
        if isinstance(behaviour, Error):
            payload = behaviour.body if behaviour.body is not None else {"error": {"message": "fake failure"}}
            text = payload if isinstance(payload, str) else orjson.dumps(payload).decode()
            return web.Response(status=behaviour.status, text=text, headers=behaviour.headers,
                                content_type="application/json")
        if isinstance(behaviour, EchoCredentials):
            sent = request.headers.get("authorization", "")
            key = sent.removeprefix("Bearer ") or request.headers.get("x-api-key", "")
            message = (f"Incorrect API key provided: {key}. Request headers: Authorization: {sent}; "
                       f"x-api-key: {key}; all: {dict(request.headers)}")
            return web.json_response({"error": {"message": message, "type": "invalid_request_error",
                                                "code": "invalid_api_key"}}, status=behaviour.status)
        if isinstance(behaviour, Hang):
            await asyncio.sleep(behaviour.seconds)
            return web.Response(status=504, text="{}")
        if isinstance(behaviour, Garbage):
            return web.Response(status=200, body=behaviour.body, headers={"content-type": behaviour.content_type})
        if isinstance(behaviour, InvalidJSON):
            return web.Response(status=200, text="{this is not json", content_type="application/json")
        return None

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        model = body.get("model", "")
        behaviour = self._next(model)
        failure = await self._common_failures(behaviour, request)
        if failure is not None:
            return failure
        if isinstance(behaviour, Scripted):
            return await self._scripted(request, behaviour, bool(body.get("stream")))
        if body.get("stream"):
            return await self._openai_stream(request, body, behaviour)
        return web.json_response(openai_completion(model, behaviour), dumps=lambda o: orjson.dumps(o).decode())

    async def _openai_stream(self, request: web.Request, body: dict[str, Any],
                             behaviour: Behaviour) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunks = openai_chunks(body.get("model", ""), behaviour, include_usage)
        delay = behaviour.delay if isinstance(behaviour, SlowStream) else 0.0
        for i, chunk in enumerate(chunks):
            if isinstance(behaviour, ResetMidStream) and i == behaviour.after_chunks:
                assert request.transport is not None
                request.transport.abort()
                return response
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            if delay:
                await asyncio.sleep(delay)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _scripted(self, request: web.Request, behaviour: Scripted, stream: bool) -> web.StreamResponse:
        if not stream:
            return web.Response(status=200, body=_raw(behaviour.answer), content_type="application/json")
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in behaviour.events:
            await response.write(b"data: " + _raw(event) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    # -- OpenAI Responses ------------------------------------------------------------------------
    seal: str | None = None
    """When set, Responses answers start with a reasoning item sealed with this ``encrypted_content``."""

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        model = body.get("model", "")
        behaviour = self._next(model)
        failure = await self._common_failures(behaviour, request)
        if failure is not None:
            return failure
        stream = bool(body.get("stream"))
        if isinstance(behaviour, Scripted):  # a Responses answer or events word for word (bytes as they are)
            if not stream:
                return web.Response(body=_raw(behaviour.answer), content_type="application/json")
            scripted = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await scripted.prepare(request)
            for event in behaviour.events:
                name = event.get("type", "message") if isinstance(event, dict) else "message"
                await scripted.write(f"event: {name}\ndata: ".encode() + _raw(event) + b"\n\n")
            await scripted.write_eof()
            return scripted
        if not stream:
            return web.Response(body=orjson.dumps(responses_answer(model, behaviour, body, self.seal)),
                                content_type="application/json")
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        delay = behaviour.delay if isinstance(behaviour, SlowStream) else 0.0
        for i, event in enumerate(responses_events(model, behaviour, body, self.seal)):
            if isinstance(behaviour, ResetMidStream) and i == behaviour.after_chunks:
                assert request.transport is not None
                request.transport.abort()
                return response
            await response.write(f"event: {event['type']}\ndata: ".encode() + orjson.dumps(event) + b"\n\n")
            if delay:
                await asyncio.sleep(delay)
        await response.write_eof()
        return response

    # -- Anthropic Messages ----------------------------------------------------------------------
    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        """Anthropic's count: one token per 4 bytes of the body, plus 1 (distinct from the router's estimate)."""
        body = await self._record(request)
        failure = await self._common_failures(self._next(body.get("model", "")), request)
        if failure is not None:
            return failure
        return web.json_response({"input_tokens": len(orjson.dumps(body)) // 4 + 1})

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        model = body.get("model", "")
        behaviour = self._next(model)
        failure = await self._common_failures(behaviour, request)
        if failure is not None:
            return failure
        if isinstance(behaviour, Scripted):  # an Anthropic answer or events word for word (bytes as they are)
            if not body.get("stream"):
                return web.Response(body=_raw(behaviour.answer), content_type="application/json")
            scripted = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await scripted.prepare(request)
            for event in behaviour.events:
                name = event.get("type", "message") if isinstance(event, dict) else "message"
                await scripted.write(f"event: {name}\ndata: ".encode() + _raw(event) + b"\n\n")
            await scripted.write_eof()
            return scripted
        if not body.get("stream"):
            return web.json_response(anthropic_message(model, behaviour))
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for i, (name, data) in enumerate(anthropic_events(model, behaviour)):
            if isinstance(behaviour, ResetMidStream) and i == behaviour.after_chunks:
                assert request.transport is not None
                request.transport.abort()
                return response
            await response.write(f"event: {name}\ndata: ".encode() + orjson.dumps(data) + b"\n\n")
        await response.write_eof()
        return response


def _raw(item: Any) -> bytes:
    return item if isinstance(item, bytes) else orjson.dumps(item)


# -- wire format builders (pure) ---------------------------------------------------------------------
def _usage(pair: tuple[int, int] | None) -> dict[str, int] | None:
    if pair is None:
        return None
    return {"prompt_tokens": pair[0], "completion_tokens": pair[1], "total_tokens": pair[0] + pair[1]}


def _text_of(behaviour: Behaviour) -> str:
    if isinstance(behaviour, Text | SlowStream):
        return behaviour.content
    if isinstance(behaviour, ResetMidStream):
        return "this stream will break before it ends properly"
    return ""


def openai_completion(model: str, behaviour: Behaviour) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": _text_of(behaviour) or None, "refusal": None}
    finish = behaviour.finish_reason if isinstance(behaviour, Text) else "stop"
    usage = getattr(behaviour, "usage", (11, 7))
    if isinstance(behaviour, ToolCalls):
        message["content"] = behaviour.content
        message["tool_calls"] = [
            {"id": f"call_{i}_{name}", "type": "function", "function": {"name": name, "arguments": args}}
            for i, (name, args) in enumerate(behaviour.calls)
        ]
        finish = "tool_calls"
    result = {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
              "model": model, "system_fingerprint": "fp_fake",
              "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}]}
    if usage is not None:
        result["usage"] = _usage(usage)
    return result


def openai_chunks(model: str, behaviour: Behaviour, include_usage: bool) -> list[dict[str, Any]]:
    base = {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model, "system_fingerprint": "fp_fake"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        out = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            out["usage"] = None
        return out

    chunks = [chunk({"role": "assistant", "content": ""})]
    finish = "stop"
    text = _text_of(behaviour)
    size = behaviour.chunk_size if isinstance(behaviour, Text) else 6
    if isinstance(behaviour, ToolCalls):
        text = behaviour.content or ""
    for start in range(0, len(text), size):
        chunks.append(chunk({"content": text[start : start + size]}))
    if isinstance(behaviour, ToolCalls):
        finish = "tool_calls"
        for index, (name, args) in enumerate(behaviour.calls):
            chunks.append(chunk({"tool_calls": [{"index": index, "id": f"call_{index}_{name}", "type": "function",
                                                 "function": {"name": name, "arguments": ""}}]}))
            for start in range(0, len(args), behaviour.fragment):
                piece = args[start : start + behaviour.fragment]
                chunks.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
    elif isinstance(behaviour, Text):
        finish = behaviour.finish_reason
    chunks.append(chunk({}, finish))
    usage = getattr(behaviour, "usage", (11, 7))
    if include_usage and usage is not None:
        chunks.append({**base, "choices": [], "usage": _usage(usage)})
    return chunks


def anthropic_message(model: str, behaviour: Behaviour) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    stop_reason = "end_turn"
    if isinstance(behaviour, ToolCalls):
        if behaviour.content:
            content.append({"type": "text", "text": behaviour.content})
        for i, (name, args) in enumerate(behaviour.calls):
            content.append({"type": "tool_use", "id": f"toolu_{i}_{name}", "name": name, "input": orjson.loads(args)})
        stop_reason = "tool_use"
    else:
        content.append({"type": "text", "text": _text_of(behaviour)})
    usage = getattr(behaviour, "usage", None) or (11, 7)
    return {"id": f"msg_{uuid.uuid4().hex[:12]}", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": None,
            "usage": {"input_tokens": usage[0], "output_tokens": usage[1]}}


def anthropic_events(model: str, behaviour: Behaviour) -> list[tuple[str, dict[str, Any]]]:
    usage = getattr(behaviour, "usage", None) or (11, 7)
    message = {"id": f"msg_{uuid.uuid4().hex[:12]}", "type": "message", "role": "assistant", "model": model,
               "content": [], "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": usage[0], "output_tokens": 1}}
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": message})]
    index = 0
    text = behaviour.content if isinstance(behaviour, ToolCalls) else _text_of(behaviour)
    if text:
        events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                               "content_block": {"type": "text", "text": ""}}))
        for start in range(0, len(text), 6):
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                                   "delta": {"type": "text_delta", "text": text[start : start + 6]}}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    stop_reason = "end_turn"
    if isinstance(behaviour, ToolCalls):
        stop_reason = "tool_use"
        for i, (name, args) in enumerate(behaviour.calls):
            events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": {
                "type": "tool_use", "id": f"toolu_{i}_{name}", "name": name, "input": {}}}))
            for start in range(0, len(args), behaviour.fragment):
                events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {
                    "type": "input_json_delta", "partial_json": args[start : start + behaviour.fragment]}}))
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
            index += 1
    events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop_reason,
                                                                         "stop_sequence": None},
                                      "usage": {"output_tokens": usage[1]}}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events
