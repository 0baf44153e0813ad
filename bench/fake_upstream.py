"""A tiny fake upstream in pure Python (asyncio protocol, uvloop when present): the fallback for nginx.

``POST /<mode>/...`` answers that mode's canned answer (see :mod:`bench.modes`: a chat completion or stream, an
Anthropic message or stream, a Responses ``Response`` or event stream), any GET 200.
Run: ``python -m bench.fake_upstream --port 9000``.
"""

from __future__ import annotations

import argparse
import asyncio

from bench.modes import MODES


def _response(body: bytes, content_type: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type + b"\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\nConnection: keep-alive\r\n\r\n" + body)


ANSWERS = {f"/{mode.name}/".encode(): _response(mode.answer(), mode.answer_type.encode())
           for mode in MODES.values()}
"""Keyed by the mode's root, the first segment of the request target."""
READY = _response(b'{"status":"ready"}', b"application/json")


class _Connection(asyncio.Protocol):
    """Reads requests (head + content-length body) off one keep-alive connection and answers each."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
            target = head.split(b" ", 2)[1]
            root = target[:target.find(b"/", 1) + 1]
            answer = ANSWERS.get(root, READY) if head.startswith(b"POST") else READY
            assert self.transport is not None
            self.transport.write(answer)


async def serve(host: str, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Connection, host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
