"""The MCP benchmark's fake upstream: a tiny server on the official SDK, Streamable HTTP on loopback.

One tool, ``echo``, returns the argument object it was given, so a call costs the protocol and little else.
It counts the calls it served (``GET /calls``), so a run can tell calls that reached it from calls answered on
the way (a refusal by the router never arrives here). ``GET /readyz`` answers once the server listens.
Run: ``python -m bench.mcp_upstream --port 9100`` (the endpoint is ``/mcp``).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SERVER_NAME = "bench"
TOOL = "echo"


def build_app(json_response: bool = False, host: str = "127.0.0.1") -> tuple[Starlette, dict[str, int]]:
    """The server's ASGI app and its live call counter (``{"calls": n}``)."""
    served = {"calls": 0}
    server: MCPServer = MCPServer(SERVER_NAME, log_level="WARNING")

    @server.tool(name=TOOL, description="Return the argument object unchanged.")
    def echo(payload: dict[str, Any]) -> dict[str, Any]:
        served["calls"] += 1
        return payload

    async def calls(_: Request) -> Response:
        return JSONResponse(served)

    async def ready(_: Request) -> Response:
        return JSONResponse({"status": "ready"})

    app = server.streamable_http_app(json_response=json_response, host=host)
    app.router.routes += [Route("/calls", calls, methods=["GET"]), Route("/readyz", ready, methods=["GET"])]
    return app, served


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--json-response", action="store_true",
                        help="answer each POST with one JSON body instead of an SSE stream (the SDK's default)")
    args = parser.parse_args()
    app, _ = build_app(args.json_response, args.host)
    logging.getLogger("mcp").setLevel(logging.WARNING)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
