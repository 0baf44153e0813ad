"""Bare pass-through proxies: the floor for one Python hop, in two builds.

``--stack starlette`` (the issue's reference floor): Starlette + uvicorn (uvloop, httptools) + one pooled
keep-alive aiohttp session. ``--stack own``: the router's own hot-path parts, a plain ASGI callable on the same
uvicorn and the providers' tuned aiohttp session (:mod:`providers.upstream_session`). Both relay
``POST /v1/chat/completions``, ``POST /v1/responses`` and ``POST /v1/messages`` to the same path under the upstream's
root, with the upstream credential in the wire's own header (``authorization`` for both OpenAI wires, ``x-api-key``
for Messages; ``anthropic-*`` headers are forwarded as sent). Both parse the body once with orjson (to see
``stream``), forward the raw bytes, and relay the answer's bytes as they arrive. No auth, policy, routing or accounting.
Run: ``python -m bench.passthrough --port 9001 --upstream http://127.0.0.1:9000/plain [--stack own]``.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

CHAT_PATH, MESSAGES_PATH, RESPONSES_PATH = "/v1/chat/completions", "/v1/messages", "/v1/responses"
UPSTREAM_KEY = "sk-bench-upstream"
CHAT_HEADERS = {"content-type": "application/json", "authorization": f"Bearer {UPSTREAM_KEY}"}
MESSAGES_HEADERS = {"content-type": "application/json", "x-api-key": UPSTREAM_KEY}


def anthropic_headers(client_headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The client's ``anthropic-*`` headers, forwarded verbatim on the Messages path (as a faithful hop must)."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in client_headers
            if name.startswith(b"anthropic-")}


def build_app(upstream: str) -> Starlette:
    root = upstream.rstrip("/")
    holder: dict[str, aiohttp.ClientSession] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        holder["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30))
        try:
            yield
        finally:
            await holder["session"].close()

    async def relay_request(request: Request) -> Response:
        body = await request.body()
        payload = orjson.loads(body)
        session = holder["session"]
        path = request.url.path
        url = root + path + (f"?{request.url.query}" if request.url.query else "")
        headers = (CHAT_HEADERS if path != MESSAGES_PATH
                   else {**MESSAGES_HEADERS, **anthropic_headers(request.headers.raw)})
        if not payload.get("stream"):
            async with session.post(url, data=body, headers=headers) as resp:
                return Response(await resp.read(), status_code=resp.status, media_type="application/json")
        resp = await session.post(url, data=body, headers=headers)

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for piece in resp.content.iter_any():
                    yield piece
            finally:
                resp.release()

        return StreamingResponse(relay(), status_code=resp.status, media_type="text/event-stream")

    async def ready(request: Request) -> Response:
        return JSONResponse({"status": "ready"})

    return Starlette(routes=[*(Route(path, relay_request, methods=["POST"])
                               for path in (CHAT_PATH, RESPONSES_PATH, MESSAGES_PATH)), Route("/readyz", ready)],
                     lifespan=lifespan)


def build_own_app(upstream: str) -> Any:
    """The same pass-through on the router's own parts: plain ASGI and the providers' aiohttp session
    (:class:`providers.upstream_session.UpstreamSession`, with its body bound)."""
    from providers.bounded_body import read_body
    from providers.upstream_session import UpstreamSession
    from router.config.schema import ProviderSpec

    root = upstream.rstrip("/")
    spec = ProviderSpec(type="openai", base_url=root + "/v1", max_connections=256)
    sessions = {CHAT_PATH: UpstreamSession(spec, root + CHAT_PATH, CHAT_HEADERS),
                RESPONSES_PATH: UpstreamSession(spec, root + RESPONSES_PATH, CHAT_HEADERS),
                MESSAGES_PATH: UpstreamSession(spec, root + MESSAGES_PATH, MESSAGES_HEADERS)}
    json_type = [(b"content-type", b"application/json")]
    timeout = aiohttp.ClientTimeout(total=30)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            for session in sessions.values():
                await session.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] not in sessions:
            ready = scope["path"] == "/readyz"
            await send({"type": "http.response.start", "status": 200 if ready else 404, "headers": json_type})
            await send({"type": "http.response.body", "body": b'{"status":"ready"}' if ready else b"{}"})
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        path = scope["path"]
        client = sessions[path].get()
        query = scope.get("query_string", b"")
        url = root + path + (f"?{query.decode('latin-1')}" if query else "")
        headers = anthropic_headers(scope["headers"]) if path == MESSAGES_PATH else None
        if not orjson.loads(body).get("stream"):
            async with client.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False) as resp:
                answer = await read_body(resp, spec.max_response_bytes, "upstream")
            await send({"type": "http.response.start", "status": resp.status,
                        "headers": [*json_type, (b"content-length", str(len(answer)).encode())]})
            await send({"type": "http.response.body", "body": answer})
            return
        async with client.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False) as resp:
            await send({"type": "http.response.start", "status": resp.status,
                        "headers": [(b"content-type", b"text/event-stream")]})
            async for piece in resp.content.iter_any():
                await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the upstream's root: /v1/... paths are relayed under it")
    parser.add_argument("--stack", choices=("starlette", "own"), default="starlette")
    args = parser.parse_args()
    import uvicorn

    app = build_own_app(args.upstream) if args.stack == "own" else build_app(args.upstream)
    uvicorn.run(app, host=args.host, port=args.port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
