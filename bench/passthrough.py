"""A bare pass-through proxy on the router's own stack: the floor for one Python hop.

Starlette + uvicorn (uvloop, httptools) + one pooled keep-alive aiohttp session. It parses the body once with
orjson (to see ``stream``), forwards the raw bytes, and relays the answer's bytes as they arrive. No auth,
policy, routing or accounting. Run: ``python -m bench.passthrough --port 9001 --upstream http://127.0.0.1:9000/v1``.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def build_app(upstream: str) -> Starlette:
    url = upstream.rstrip("/") + "/chat/completions"
    headers = {"content-type": "application/json", "authorization": "Bearer sk-bench-upstream"}
    holder: dict[str, aiohttp.ClientSession] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        holder["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30))
        try:
            yield
        finally:
            await holder["session"].close()

    async def chat(request: Request) -> Response:
        body = await request.body()
        payload = orjson.loads(body)
        session = holder["session"]
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

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/readyz", ready)],
                     lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="OpenAI base URL of the upstream (…/v1)")
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(build_app(args.upstream), host=args.host, port=args.port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
