"""An HTTP/1.1 server on 127.0.0.1 that writes whatever its handler says: crafted bytes, early closes, resets.
It counts connections and keeps every request it read, so a test can prove what reached the upstream and how
often. Runs on the test's own event loop (``async with``) or in a thread of its own (``start`` / ``stop``)
for tests that drive a real router."""

from __future__ import annotations

import asyncio
import re
import ssl
import threading
from collections.abc import Awaitable, Callable
from typing import Any

Handler = Callable[[asyncio.StreamWriter, bytes, int], Awaitable[bool]]
"""Answer one request (writer, request bytes, connection number); return False to stop serving the connection."""


class RawUpstream:
    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.accepted = 0
        self.closed = 0
        self.open_now = 0
        self.most_open = 0
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def __aenter__(self) -> RawUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):  # handlers still holding a connection open
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def start(self) -> RawUpstream:
        """Serve from a thread with its own event loop (for a router under test)."""
        ready = threading.Event()
        loop = self._loop = asyncio.new_event_loop()

        def run() -> None:
            loop.run_until_complete(self.__aenter__())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.__aexit__())
            loop.close()

        self._thread = threading.Thread(target=run, name="raw-upstream", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/v1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        number = self.accepted
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            for _ in range(100):  # requests per connection, bounded
                request = await read_request(reader)
                if request is None:
                    break
                self.requests.append(request)
                if not await self.handler(writer, request, number):
                    break
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):  # the test ended: end quietly (3.11 logs otherwise)
            pass
        finally:
            self._tasks.discard(task)
            self.open_now -= 1
            self.closed += 1
            writer.close()


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        match = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
        return head + await reader.readexactly(int(match.group(1)) if match else 0)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None


def answer(body: bytes, *extra: bytes, status: bytes = b"200 OK", version: bytes = b"HTTP/1.1") -> bytes:
    headers = b"".join(line + b"\r\n" for line in extra)
    return b"%s %s\r\ncontent-length: %d\r\n%s\r\n%s" % (version, status, len(body), headers, body)


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def replying(data: bytes) -> Handler:
    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        writer.write(data)
        return True

    return handler
