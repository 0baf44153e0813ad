"""The router's own stdio transport to an upstream MCP server: the child gets exactly its configured environment.

The SDK's ``mcp.client.stdio.stdio_client`` merges the router's HOME, PATH, USER... into every child; our promise is
that a stdio server sees only what its config lists (``mcp_servers.<name>.env`` plus the role's credential). So
this transport starts the process itself, with the same stream types and framing as the SDK's (newline-delimited
JSON-RPC; the read side carries ``SessionMessage | Exception``), so ``ClientSession(read, write)`` runs on it.

What it promises:

- the child runs in its own session and process group, with ``env`` as its whole environment;
- a line longer than ``max_line_bytes`` or not JSON-RPC reaches the read stream as an :class:`InvalidServerLine`
  (the session goes on); memory stays bounded by ``max_line_bytes``;
- when the process dies the read stream ends, so a pending request fails instead of waiting;
- stderr is kept as a bounded tail (:meth:`StdioProcess.stderr_tail`, configured values masked) so an error can
  say why a server died;
- on exit: stdin closed, a grace period, SIGTERM to the group, then SIGKILL; no process is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress

import anyio
import mcp_types
from anyio.abc import Process
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage

from router.redact import Redactor

ReadStream = MemoryObjectReceiveStream[SessionMessage | Exception]
WriteStream = MemoryObjectSendStream[SessionMessage]

EXIT_GRACE_SECONDS = 2.0
"""After stdin closes, how long a server has to exit on its own (the MCP spec's shutdown sequence)."""
TERM_GRACE_SECONDS = 2.0
"""After SIGTERM, how long before SIGKILL."""
DRAIN_SECONDS = 0.5
"""After the process exits, how long its last stdout lines have to reach the read stream."""
STDERR_LINES = 50
STDERR_BYTES = 8 * 1024
_CHUNK = 64 * 1024


class InvalidServerLine(ValueError):
    """A stdout line that is not one JSON-RPC message (or is too long); delivered into the read stream."""


class StdioProcess:
    """The running server process as the gateway sees it: its pid, exit code and the tail of its stderr."""

    def __init__(self, process: Process, redact: Redactor) -> None:
        self._process = process
        self._redact = redact
        self._stderr: deque[bytes] = deque(maxlen=STDERR_LINES)
        self._partial = b""

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """None while it runs; negative for a signal (``-9`` when killed)."""
        return self._process.returncode

    def stderr_tail(self) -> str:
        """The last lines the server wrote to stderr (at most 50 lines, 8 KiB), with configured values masked."""
        lines = [*self._stderr, self._partial] if self._partial else list(self._stderr)
        text = b"\n".join(lines)[-STDERR_BYTES:].decode("utf-8", errors="replace")
        return self._redact(text)

    def describe(self) -> str:
        """One line for an error: how the process ended and what it last said."""
        code = self.returncode
        state = "running" if code is None else f"exited with code {code}"
        tail = self.stderr_tail().strip().splitlines()[-5:]
        return state + (f"; stderr: {' | '.join(tail)}" if tail else "")

    async def collect_stderr(self) -> None:
        """Keeps the tail of stderr until the pipe closes; older lines are dropped."""
        assert self._process.stderr is not None
        with suppress(anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            while True:
                chunk = await self._process.stderr.receive(_CHUNK)
                *lines, partial = (self._partial + chunk).split(b"\n")
                self._stderr.extend(line[-STDERR_BYTES:] for line in lines)
                self._partial = partial[-STDERR_BYTES:]


class StdioStreams(tuple[ReadStream, WriteStream]):
    """``(read, write)`` for ``ClientSession``, with the :class:`StdioProcess` behind them as ``.process``."""

    process: StdioProcess

    def __new__(cls, read: ReadStream, write: WriteStream, process: StdioProcess) -> StdioStreams:
        streams = super().__new__(cls, (read, write))
        streams.process = process
        return streams


def parse_line(line: bytes) -> SessionMessage | Exception:
    try:
        return SessionMessage(mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:
        return InvalidServerLine(f"not a JSON-RPC message ({len(line)} bytes): {type(exc).__name__}")


@asynccontextmanager
async def stdio_transport(command: str, args: Sequence[str], *, env: Mapping[str, str], cwd: str | None = None,
                          max_line_bytes: int = 16 * 1024 * 1024) -> AsyncIterator[StdioStreams]:
    """Starts ``command args`` with exactly ``env`` and yields its streams; raises OSError if it cannot start.

    ``command`` is looked up on ``env``'s PATH (or the system default path), never the router's."""
    process = await anyio.open_process([command, *args], env=dict(env), cwd=cwd, start_new_session=True,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    server = StdioProcess(process, Redactor(env.values()))
    to_session, read = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write, from_session = anyio.create_memory_object_stream[SessionMessage](0)
    stdout_done = anyio.Event()

    async def pump_stdout() -> None:
        try:
            async with to_session:
                await _read_lines(process, to_session, max_line_bytes)
        finally:
            stdout_done.set()

    async def end_on_exit() -> None:
        """The read stream ends when the process does, even if a grandchild still holds stdout open."""
        await process.wait()
        with anyio.move_on_after(DRAIN_SECONDS):
            await stdout_done.wait()
        await to_session.aclose()

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pump_stdout)
            tasks.start_soon(server.collect_stderr)
            tasks.start_soon(_pump_stdin, process, from_session, to_session)
            tasks.start_soon(end_on_exit)
            try:
                yield StdioStreams(read, write, server)
            finally:
                with anyio.CancelScope(shield=True):
                    await write.aclose()
                    await read.aclose()
                    await _stop(process)
                tasks.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await _stop(process)
            with anyio.move_on_after(TERM_GRACE_SECONDS):  # only an unkillable process could hold this up
                await process.aclose()


async def _read_lines(process: Process, to_session: MemoryObjectSendStream[SessionMessage | Exception],
                      max_line_bytes: int) -> None:
    """Splits stdout into lines; a line over ``max_line_bytes`` is reported and skipped up to its newline. Only
    each new chunk is scanned, so a long line costs linear time."""
    assert process.stdout is not None
    buffer = bytearray()
    skipping = False
    with suppress(anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
        while True:
            chunk = await process.stdout.receive(_CHUNK)
            start = 0
            while (end := chunk.find(b"\n", start)) != -1:
                if skipping:
                    skipping = False
                else:
                    buffer += chunk[start:end]
                    line = bytes(buffer)
                    buffer.clear()
                    if len(line) > max_line_bytes:
                        await to_session.send(_too_long(line))
                    elif line.strip():
                        await to_session.send(parse_line(line))
                start = end + 1
            if not skipping:
                buffer += chunk[start:]
                if len(buffer) > max_line_bytes:
                    await to_session.send(_too_long(buffer))
                    buffer.clear()
                    skipping = True


def _too_long(line: bytes | bytearray) -> InvalidServerLine:
    return InvalidServerLine(f"a line from the server is over the limit ({len(line)}+ bytes); dropped")


async def _pump_stdin(process: Process, from_session: MemoryObjectReceiveStream[SessionMessage],
                      to_session: MemoryObjectSendStream[SessionMessage | Exception]) -> None:
    assert process.stdin is not None
    try:
        async with from_session:
            async for message in from_session:
                data = message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                await process.stdin.send(data.encode("utf-8"))
    except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
        await to_session.aclose()  # the server stopped reading: end the session rather than let a request wait


async def _stop(process: Process) -> None:
    """Close stdin, give the server a grace period, then SIGTERM and SIGKILL its whole process group."""
    if process.stdin is not None:
        with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            await process.stdin.aclose()
    for sig, grace in ((None, EXIT_GRACE_SECONDS), (signal.SIGTERM, TERM_GRACE_SECONDS), (signal.SIGKILL, 2.0)):
        if sig is not None and process.returncode is None:
            _signal_group(process.pid, sig)
        with anyio.move_on_after(grace):
            await process.wait()
        if process.returncode is not None:
            break
    _signal_group(process.pid, signal.SIGKILL)  # what the server itself started, if anything is left


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
