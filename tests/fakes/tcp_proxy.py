"""A TCP proxy of the tests' own, in front of a real store (PostgreSQL, Redis) or upstream, to inject faults.

It runs an asyncio server on 127.0.0.1 in its own thread, so the router under test (in a thread or in its own
process) reaches the store through ``proxy.port``. Modes, switched at any time from the test's thread:

- ``pass``: bytes flow both ways;
- ``blackhole``: connections stay open (new ones are accepted) but nothing is forwarded either way, as when a
  network path silently drops packets;
- ``refuse``: new connections are closed at once; open ones are reset;
- :meth:`reset`: every open connection is reset (RST) now; the mode does not change.

Every connection it holds is closed when the proxy stops: a test cannot leave sockets behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from typing import Literal

Mode = Literal["pass", "blackhole", "refuse"]

_CHUNK = 64 * 1024


class TcpFaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode: Mode = "pass"
        self.port = 0
        self.accepted = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._resume: asyncio.Event | None = None

    # -- control, from any thread ------------------------------------------------------------------
    def start(self) -> TcpFaultProxy:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._resume = asyncio.Event()
            self._resume.set()
            self._server = loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="tcp-fault-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(5):
            raise RuntimeError("the TCP fault proxy did not start")
        return self

    def set_mode(self, mode: Mode) -> None:
        self._call(self._set_mode, mode)

    def reset(self) -> None:
        """Reset (RST) every open connection; new ones are served in the current mode."""
        self._call(self._reset_all)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop = None

    def __enter__(self) -> TcpFaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def open_connections(self) -> int:
        return len(self._links)

    def _call(self, fn: object, *args: object) -> None:
        assert self._loop is not None, "the proxy is not running"
        done = threading.Event()

        def run() -> None:
            try:
                fn(*args)  # type: ignore[operator]
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(5)

    # -- on the proxy's loop -----------------------------------------------------------------------
    def _set_mode(self, mode: Mode) -> None:
        self.mode = mode
        assert self._resume is not None
        if mode == "blackhole":
            self._resume.clear()
        else:
            self._resume.set()
        if mode == "refuse":
            self._reset_all()

    def _reset_all(self) -> None:
        for client, upstream in list(self._links):
            _abort(client)
            _abort(upstream)
        self._links.clear()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        # Ends without raising even when the proxy stops it (asyncio's stream server reads a cancelled handler's
        # exception and would print it).
        with contextlib.suppress(asyncio.CancelledError):
            await self._link(client_reader, client_writer)

    async def _link(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode == "refuse":
            _abort(client_writer)
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _abort(client_writer)
            return
        link = (client_writer, upstream_writer)
        self._links.add(link)
        try:
            await asyncio.gather(self._pipe(client_reader, upstream_writer),
                                 self._pipe(upstream_reader, client_writer))
        finally:
            self._links.discard(link)
            for writer in link:
                with contextlib.suppress(Exception):
                    writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._resume is not None
        with contextlib.suppress(OSError, ConnectionError):
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                await self._resume.wait()  # a blackhole holds the bytes (and the connection) until it ends
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        self._reset_all()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a reset by a middlebox looks to the other end."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
