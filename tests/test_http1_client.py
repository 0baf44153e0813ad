"""The pooled HTTP/1.1 client against real servers on 127.0.0.1 that misbehave on purpose: bodies of every
framing, reuse and non-reuse, stale pooled connections, resets, garbage, stalls, early exits, the pool bound.
Every scenario runs on the standard event loop and on uvloop (what production runs)."""

from __future__ import annotations

import asyncio
import gzip
import random
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop

from providers.base import ChatCall
from providers.http1 import (
    ConnectFailed,
    ConnectionBroken,
    HTTP1Pool,
    InvalidResponse,
    RequestHead,
)
from providers.openai_compatible import OpenAICompatibleProvider
from router.config.schema import ProviderSpec
from router.errors import UpstreamConnectionError, UpstreamServerError

Handler = Callable[[asyncio.StreamWriter, bytes, int], Awaitable[bool]]
"""Answer one request (writer, request bytes, connection number); return False to stop serving the connection."""


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Awaitable[Any]], Any]:
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def runner(coro: Awaitable[Any]) -> Any:
        errors: list[dict[str, Any]] = []
        with asyncio.Runner(loop_factory=factory) as loop_runner:
            loop_runner.get_loop().set_exception_handler(lambda loop, context: errors.append(context))
            result = loop_runner.run(asyncio.wait_for(coro, 20))  # type: ignore[arg-type]
        assert not errors, f"errors in event loop callbacks: {errors}"  # e.g. a protocol callback that raised
        return result

    return runner


class RawUpstream:
    """An HTTP/1.1 server that writes whatever its handler says, counting connections and requests."""

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

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/v1/chat/completions"

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
                request = await _read_request(reader)
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


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        match = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
        return head + await reader.readexactly(int(match.group(1)) if match else 0)
    except (asyncio.IncompleteReadError, ConnectionError):
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


def pool_for(server: RawUpstream, **options: Any) -> tuple[HTTP1Pool, RequestHead]:
    pool = HTTP1Pool(server.url, **options)
    return pool, pool.prepare("POST", server.url, {"content-type": "application/json"})


async def wait_for(predicate: Callable[[], bool], seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return False


# -- bodies and reuse ------------------------------------------------------------------------------
def test_content_length_body_and_keep_alive_reuse(run):
    async def scenario() -> None:
        async with RawUpstream(replying(answer(b'{"ok":1}', b"Retry-After: 7", b"Content-Type: x/y"))) as server:
            pool, head = pool_for(server)
            first = await pool.complete(head, b'{"a":1}', {"x-request-id": "req-1"}, timeout=5)
            second = await pool.complete(head, b"{}", timeout=5)
            assert (first.status, first.body, second.body) == (200, b'{"ok":1}', b'{"ok":1}')
            assert first.headers["retry-after"] == "7" and first.headers["content-type"] == "x/y"
            assert server.accepted == 1 and len(server.requests) == 2
            sent = server.requests[0]
            assert sent.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
            for line in (b"host: 127.0.0.1:%d" % server.port, b"content-length: 7", b"x-request-id: req-1",
                         b"accept-encoding: identity", b"user-agent: agent-router"):
                assert line in sent.lower()
            assert sent.endswith(b'\r\n\r\n{"a":1}')
            await pool.close()

    run(scenario())


def test_chunked_body_whole_and_streamed(run):
    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunked(b"data: 1\n\n")[:-5])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(chunked(b"data: 2\n\n", b"data: 3\n\n"))
        return True

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            pool, head = pool_for(server)
            whole = await pool.complete(head, b"{}", timeout=5)
            assert whole.body == b"data: 1\n\ndata: 2\n\ndata: 3\n\n"
            stream = await pool.stream(head, b"{}", read_timeout=5)
            pieces = [piece async for piece in stream]
            assert b"".join(pieces) == whole.body and len(pieces) == 2
            await pool.complete(head, b"{}", timeout=5)
            assert server.accepted == 1  # both exchanges were read to the end: the connection was reused
            await pool.close()

    run(scenario())


def test_close_delimited_body_is_read_to_the_end_and_not_reused(run):
    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the ")
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b"end")
        return False

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            pool, head = pool_for(server)
            assert (await pool.complete(head, b"{}", timeout=5)).body == b"until the end"
            stream = await pool.stream(head, b"{}", read_timeout=5)
            assert await stream.read_all() == b"until the end"
            assert server.accepted == 2
            await pool.close()

    run(scenario())


@pytest.mark.parametrize("reply", [answer(b"{}", b"connection: close"), answer(b"{}", version=b"HTTP/1.0"),
                                   answer(b"{}", b"connection: keep-alive", version=b"HTTP/1.0")])
def test_connection_close_and_http10_answers_are_not_reused(run, reply):
    async def scenario() -> None:
        async with RawUpstream(replying(reply)) as server:
            pool, head = pool_for(server)
            for _ in range(2):
                assert (await pool.complete(head, b"{}", timeout=5)).body == b"{}"
            assert server.accepted == 2
            await pool.close()

    run(scenario())


def test_gzip_answer_is_decoded(run):
    async def scenario() -> None:
        async with RawUpstream(replying(answer(gzip.compress(b'{"z":1}'), b"content-encoding: gzip"))) as server:
            pool, head = pool_for(server)
            assert (await pool.complete(head, b"{}", timeout=5)).body == b'{"z":1}'
            await pool.close()

    run(scenario())


def test_header_values_cannot_inject_lines(run):
    async def scenario() -> None:
        async with RawUpstream(replying(answer(b"{}"))) as server:
            pool, head = pool_for(server)
            await pool.complete(head, b"{}", {"x-request-id": "a\r\nx-evil: 1\n"}, timeout=5)
            assert b"\r\nx-evil" not in server.requests[0] and b"x-request-id: a  x-evil: 1" in server.requests[0]
            with pytest.raises(ValueError):
                pool.prepare("POST", server.url, {"bad name": "x"})
            await pool.close()

    run(scenario())


# -- faults ----------------------------------------------------------------------------------------
def test_stale_pooled_connection_is_retried_once_on_a_fresh_one(run):
    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        if number == 1 and b"second" in request:
            return False  # closed the kept-alive connection just as the request came in
        writer.write(answer(b"fine"))
        return True

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            pool, head = pool_for(server)
            await pool.complete(head, b"first", timeout=5)
            assert (await pool.complete(head, b"second", timeout=5)).body == b"fine"
            assert server.accepted == 2
            assert [r.rsplit(b"\r\n", 1)[1] for r in server.requests] == [b"first", b"second", b"second"]
            stream = await pool.stream(head, b"third", read_timeout=5)  # the fresh connection was pooled
            assert await stream.read_all() == b"fine" and server.accepted == 2
            await pool.close()

    run(scenario())


def test_a_connection_the_server_closed_while_idle_is_not_used(run):
    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        writer.write(answer(b"once"))
        return False  # no connection: close header, the server just hangs up afterwards

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            pool, head = pool_for(server)
            await pool.complete(head, b"{}", timeout=5)
            assert await wait_for(lambda: pool._open == 0 and not pool._idle)
            assert (await pool.complete(head, b"{}", timeout=5)).body == b"once"
            assert server.accepted == 2 and len(server.requests) == 2
            await pool.close()

    run(scenario())


def test_a_fresh_connection_closed_without_an_answer_is_not_retried(run):
    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        return False

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            pool, head = pool_for(server)
            with pytest.raises(ConnectionBroken):
                await pool.complete(head, b"{}", timeout=5)
            assert server.accepted == 1
            await pool.close()

    run(scenario())


def test_reset_mid_body_is_a_broken_connection(run):
    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()
        return False

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            pool, head = pool_for(server)
            with pytest.raises(ConnectionBroken):
                await pool.complete(head, b"{}", timeout=5)
            stream = await pool.stream(head, b"{}", read_timeout=5)
            assert await stream.read() == b"partial"
            with pytest.raises(ConnectionBroken):
                await stream.read()
            stream.close()
            assert server.accepted == 2
            await pool.close()

    run(scenario())


@pytest.mark.parametrize("garbage", [b"SSH-2.0-OpenSSH_9.6\r\n\r\n", b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
                                     b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n",
                                     b"\x00\xff" * 50])
def test_garbage_is_an_invalid_response(run, garbage):
    async def scenario() -> None:
        async with RawUpstream(replying(garbage)) as server:
            pool, head = pool_for(server)
            with pytest.raises(InvalidResponse):
                stream = await pool.stream(head, b"{}", read_timeout=5)
                await stream.read_all()
            with pytest.raises(InvalidResponse):
                await pool.complete(head, b"{}", timeout=5)
            await pool.close()

    run(scenario())


def test_endless_headers_are_an_invalid_response(run):
    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(2000):  # bounded: about 1 MB of headers
            writer.write(b"x-filler-%d: %s\r\n" % (i, b"y" * 500))
            await writer.drain()
        return False

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            pool, head = pool_for(server)
            with pytest.raises(InvalidResponse, match="head exceeds"):
                await pool.complete(head, b"{}", timeout=5)
            await pool.close()

    run(scenario())


def test_informational_answers_are_skipped(run):
    async def scenario() -> None:
        async with RawUpstream(replying(b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"real"))) as server:
            pool, head = pool_for(server)
            for _ in range(2):
                response = await pool.complete(head, b"{}", timeout=5)
                assert (response.status, response.body) == (200, b"real")
            assert server.accepted == 1
            await pool.close()

    run(scenario())


def test_a_stalled_stream_times_out_per_read(run):
    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunked(b"data: 1\n\n")[:-5])
        for _ in range(3):  # trickles for a while, within the read timeout, then stalls
            await writer.drain()
            await asyncio.sleep(0.15)
            writer.write(chunked(b": ping\n\n")[:-5])
        await asyncio.sleep(10)
        return False

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            pool, head = pool_for(server)
            stream = await pool.stream(head, b"{}", read_timeout=0.3)
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                async for _ in stream:
                    pass
            assert 0.6 < time.monotonic() - started < 2.0
            stream.close()
            await pool.close()

    run(scenario())


def test_total_timeout_of_a_whole_answer(run):
    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nslow")
        await writer.drain()
        await asyncio.sleep(10)
        return False

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            pool, head = pool_for(server)
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await pool.complete(head, b"{}", timeout=0.3)
            assert time.monotonic() - started < 1.5
            assert await wait_for(lambda: pool._open == 0)  # the timed-out connection was closed
            await pool.close()

    run(scenario())


def test_connect_refused_is_a_connect_failure(run):
    async def scenario() -> None:
        async with RawUpstream(replying(b"")) as server:
            pass
        await asyncio.sleep(0.05)
        pool, head = pool_for(server)
        with pytest.raises(ConnectFailed):
            await pool.complete(head, b"{}", timeout=5)
        assert pool._open == 0

    run(scenario())


# -- leaving early, cancellation, the pool ---------------------------------------------------------
def test_a_stream_left_half_read_closes_its_connection(run):
    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunked(b"data: 1\n\n")[:-5])
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(chunked(b"data: 2\n\n"))
        return True

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            pool, head = pool_for(server)
            stream = await pool.stream(head, b"{}", read_timeout=5)
            assert await stream.read() == b"data: 1\n\n"
            stream.close()
            assert await wait_for(lambda: server.closed == 1)
            await pool.complete(head, b"{}", timeout=5)
            assert server.accepted == 2
            await pool.close()

    run(scenario())


def test_a_stream_finished_before_its_end_is_drained_then_reused(run):
    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunked(b"data: [DONE]\n\n")[:-5])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")
        return True

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            pool, head = pool_for(server)
            stream = await pool.stream(head, b"{}", read_timeout=5)
            assert await stream.read() == b"data: [DONE]\n\n"
            stream.finish()
            await asyncio.sleep(0.2)
            await pool.complete(head, b"{}", timeout=5)
            assert server.accepted == 1
            await pool.close()

    run(scenario())


def test_a_cancelled_call_closes_its_connection(run):
    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        await asyncio.sleep(10)
        return False

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            pool, head = pool_for(server)
            task = asyncio.ensure_future(pool.complete(head, b"{}", timeout=30))
            assert await wait_for(lambda: len(server.requests) == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await wait_for(lambda: pool._open == 0)
            assert not pool._idle
            await pool.close()

    run(scenario())


def test_pool_bound_queues_the_extra_request(run):
    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        await asyncio.sleep(0.1)
        writer.write(answer(b"ok"))
        return True

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            pool, head = pool_for(server, max_connections=2)
            answers = await asyncio.gather(*[pool.complete(head, b"{}", timeout=5) for _ in range(3)],
                                           pool.stream(head, b"{}", read_timeout=5))
            assert [a.status for a in answers] == [200] * 4
            assert await answers[-1].read_all() == b"ok"
            assert server.accepted == 2 and server.most_open == 2
            await pool.close()

    run(scenario())


def test_idle_connections_are_closed_and_close_closes_all(run):
    async def scenario() -> None:
        async with RawUpstream(replying(answer(b"{}"))) as server:
            pool, head = pool_for(server, idle_timeout=0.2)
            await pool.complete(head, b"{}", timeout=5)
            assert await wait_for(lambda: server.closed == 1)
            await pool.complete(head, b"{}", timeout=5)
            await pool.close()
            assert await wait_for(lambda: server.closed == 2)
            assert server.accepted == 2

    run(scenario())


def test_a_slow_consumer_pauses_reading(run):
    big = b"x" * (4 * 1024 * 1024)

    async def scenario() -> None:
        async with RawUpstream(replying(answer(big))) as server:
            pool, head = pool_for(server)
            stream = await pool.stream(head, b"{}", read_timeout=5)
            await asyncio.sleep(0.3)
            assert stream._conn is not None and stream._conn.buffered < 2 * 1024 * 1024
            assert len(await stream.read_all()) == len(big)
            await pool.close()

    run(scenario())


def test_random_faults_never_leak_connections_or_odd_errors(run):
    """A bounded mix of answers and faults through a small pool: every call ends with a body or one of the
    client's errors, and the pool's count of open connections stays exact."""
    rng = random.Random(6)

    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        body = request.rsplit(b"\r\n", 1)[1]
        fault = rng.choice(["ok", "ok", "ok", "close", "reset", "garbage", "http10", "slow", "chunked"])
        if fault == "reset":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n" + body[:3])
            await writer.drain()
            writer.transport.abort()
            return False
        if fault == "garbage":
            writer.write(b"\x16\x03\x01 nonsense\r\n\r\n")
            return False
        if fault == "slow":
            await asyncio.sleep(0.01)
        if fault == "chunked":
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunked(body[:2], body[2:]))
            return True
        writer.write(answer(body, version=b"HTTP/1.0" if fault == "http10" else b"HTTP/1.1"))
        return fault != "close"

    async def call(pool: HTTP1Pool, head: RequestHead, i: int) -> str:
        body = b"req-%d" % i
        try:
            if i % 2:
                stream = await pool.stream(head, body, read_timeout=5)
                got = await stream.read_all()
            else:
                got = (await pool.complete(head, body, timeout=5)).body
        except (ConnectionBroken, InvalidResponse):
            return "error"
        assert got == body
        return "ok"

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            pool, head = pool_for(server, max_connections=4)
            outcomes: list[str] = []
            for start in range(0, 200, 20):  # 10 rounds of 20 concurrent calls
                outcomes += await asyncio.gather(*[call(pool, head, i) for i in range(start, start + 20)])
            assert outcomes.count("ok") > 100 and "error" in outcomes
            assert server.most_open <= 4
            assert await wait_for(lambda: pool._open == len(pool._all) == server.open_now)
            await pool.close()
            assert await wait_for(lambda: pool._open == 0 and server.open_now == 0)

    run(scenario())


# -- through the provider ------------------------------------------------------------------------------
def _provider(server: RawUpstream) -> OpenAICompatibleProvider:
    spec = ProviderSpec(type="openai", base_url=f"http://127.0.0.1:{server.port}/v1", api_key="sk-test")
    return OpenAICompatibleProvider("raw", spec)


def test_provider_reuses_the_connection_after_done_and_maps_faults(run):
    events = b'data: {"choices":[]}\n\ndata: [DONE]\n\n'

    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        if b'"garbage"' in request:
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            return False
        if b'"reset"' in request:
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunked(events[:20])[:-5])
            await writer.drain()
            writer.transport.abort()
            return False
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                     + chunked(events)[:-5])
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b"0\r\n\r\n")
        return True

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            provider = _provider(server)
            for _ in range(2):
                batches = [b async for b in provider.stream_batches(ChatCall(body={"stream": True}, timeout=5))]
                assert batches == [[b'{"choices":[]}']]
                await asyncio.sleep(0.1)
            assert server.accepted == 1
            assert b"authorization: Bearer sk-test" in server.requests[0]
            with pytest.raises(UpstreamServerError):
                await provider.complete(ChatCall(body={"m": "garbage"}, timeout=5))
            with pytest.raises(UpstreamConnectionError):
                async for _ in provider.stream_batches(ChatCall(body={"m": "reset"}, timeout=5)):
                    pass
            await provider.close()

    run(scenario())


# -- TLS -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_https_verifies_the_certificate_and_keeps_alive(run, certificate):
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)

    async def scenario() -> None:
        async with RawUpstream(replying(answer(b"secret")), tls=server_tls) as server:
            untrusting, head = pool_for(server)
            with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusting.complete(head, b"{}", timeout=5)
            trusting = HTTP1Pool(server.url, tls=ssl.create_default_context(cafile=str(cert)))
            head = trusting.prepare("POST", server.url, {})
            for _ in range(2):
                assert (await trusting.complete(head, b"{}", timeout=5)).body == b"secret"
            assert server.accepted == 1 and len(server.requests) == 2  # one kept-alive TLS connection
            await trusting.close()

    run(scenario())
