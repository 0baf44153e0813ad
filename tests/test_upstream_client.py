"""The OpenAI-compatible adapter's HTTP client against raw servers on 127.0.0.1 that misbehave on purpose:
stale bytes on a kept-alive connection, a POST read then dropped, gzip bombs, huge bodies, endless events,
length mismatches, garbage, the pool bound, proxies and TLS. Every scenario runs on the standard event loop and
on uvloop (what production runs)."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import ssl
import subprocess
import time
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop

from providers import openai_compatible, upstream_session
from providers.base import ChatCall, LastBatch
from providers.openai_compatible import OpenAICompatibleProvider
from providers.upstream_session import proxy_for
from router.config.schema import ProviderSpec
from router.errors import (
    ProviderError,
    UpstreamConnectionError,
    UpstreamConnectionLost,
    UpstreamRateLimited,
    UpstreamServerError,
    UpstreamTimeout,
)
from tests.fakes.raw_upstream import RawUpstream, answer, chunked, replying

COMPLETION = (b'{"id":"c1","object":"chat.completion",'
              b'"choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}]}')
EVENTS = b'data: {"choices":[]}\n\ndata: [DONE]\n\n'
SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
MiB = 1024 * 1024


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Awaitable[Any]], Any]:
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def runner(coro: Awaitable[Any]) -> Any:
        errors: list[dict[str, Any]] = []
        with asyncio.Runner(loop_factory=factory) as loop_runner:
            loop_runner.get_loop().set_exception_handler(lambda loop, context: errors.append(context))
            result = loop_runner.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]
        assert not errors, f"errors in event loop callbacks: {errors}"
        return result

    return runner


def provider(server: RawUpstream, **options: Any) -> OpenAICompatibleProvider:
    spec = ProviderSpec(type="openai", base_url=server.base_url, api_key="sk-test", **options)
    return OpenAICompatibleProvider("raw", spec)


async def complete_once(server: RawUpstream) -> Any:
    """One call on an adapter of its own, closed afterwards (an unclosed session is an event-loop error)."""
    adapter = provider(server)
    try:
        return await adapter.complete(call())
    finally:
        await adapter.close()


def call(body: dict[str, Any] | None = None, timeout: float = 5) -> ChatCall:
    return ChatCall(body=body or {"model": "m"}, timeout=timeout, request_id="req-1")


async def batches(adapter: OpenAICompatibleProvider, chat: ChatCall) -> list[list[bytes]]:
    return [batch async for batch in adapter.stream_batches(chat)]


async def wait_for(predicate: Callable[[], bool], seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return False


# -- keep-alive and what is sent ---------------------------------------------------------------------
def test_whole_answers_and_streams_reuse_one_connection_and_send_no_cookie(run):
    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        if b'"stream":true' in request:
            writer.write(SSE_HEAD + chunked(EVENTS))
        else:
            writer.write(answer(COMPLETION, b"set-cookie: session=upstream-planted"))
        return True

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            adapter = provider(server)
            for _ in range(2):
                assert (await adapter.complete(call())).raw == COMPLETION
                assert await batches(adapter, call({"stream": True})) == [[b'{"choices":[]}']]
            assert server.accepted == 1 and len(server.requests) == 4
            sent = server.requests[-1].lower()
            for line in (b"authorization: bearer sk-test", b"accept-encoding: identity", b"x-request-id: req-1",
                         b"user-agent: agent-router", b"content-type: application/json"):
                assert line in sent
            assert b"cookie" not in sent
            await adapter.close()

    run(scenario())


def test_done_in_a_read_of_its_own_ends_the_stream_well_and_the_connection_is_drained_for_reuse(run):
    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        writer.write(SSE_HEAD + chunked(b'data: {"choices":[]}\n\n')[:-5])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(chunked(b"data: [DONE]\n\n")[:-5])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")  # the message's end comes after [DONE]
        return True

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            adapter = provider(server)
            for _ in range(2):
                assert await batches(adapter, call({"stream": True})) == [[b'{"choices":[]}']]
                assert await wait_for(lambda: not openai_compatible._draining)
            assert server.accepted == 1
            await adapter.close()

    run(scenario())


def test_a_pool_bound_queues_the_extra_requests(run):
    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        await asyncio.sleep(0.05)
        writer.write(answer(COMPLETION))
        return True

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            adapter = provider(server, max_connections=2)
            answers = await asyncio.gather(*[adapter.complete(call()) for _ in range(6)])
            assert all(a.raw == COMPLETION for a in answers)
            assert server.most_open <= 2 and server.accepted == 2
            await adapter.close()

    run(scenario())


def test_idle_connections_are_closed_after_the_keepalive(run, monkeypatch):
    monkeypatch.setattr(upstream_session, "KEEPALIVE_SECONDS", 0.2)

    async def scenario() -> None:
        async with RawUpstream(replying(answer(COMPLETION))) as server:
            adapter = provider(server)
            await adapter.complete(call())
            assert await wait_for(lambda: server.closed == 1)
            await adapter.complete(call())
            assert server.accepted == 2
            await adapter.close()

    run(scenario())


def test_a_stream_left_early_and_a_cancelled_call_never_hand_their_connection_on(run):
    """Their connections are mid-answer: a later request must get a connection of its own (written on one of
    those, it would wait for an answer that never comes)."""

    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        if b'"stream"' in request:
            writer.write(SSE_HEAD + chunked(b'data: {"choices":[]}\n\n')[:-5])
            await writer.drain()
        if b'"stream"' in request or b'"hang"' in request:
            await asyncio.sleep(10)  # the rest never comes while the test runs
            return False
        writer.write(answer(COMPLETION))
        return True

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            adapter = provider(server)
            stream = adapter.stream_batches(call({"stream": True}))
            assert await anext(stream) == [b'{"choices":[]}']
            await stream.aclose()  # the client went away
            assert (await adapter.complete(call(timeout=2))).raw == COMPLETION
            task = asyncio.ensure_future(adapter.complete(call({"m": "hang"})))
            assert await wait_for(lambda: len(server.requests) == 3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert (await adapter.complete(call(timeout=2))).raw == COMPLETION
            assert server.accepted == 3  # the stream; the first plain call, reused by the hang; the last call
            await adapter.close()

    run(scenario())


# -- no reuse after an anomaly -------------------------------------------------------------------------
def test_bytes_after_a_complete_answer_are_never_read_as_the_next_answer(run):
    """The upstream sends a second, unasked-for answer once the first is complete: the connection must be
    dropped, and the next request must get its own answer (aiohttp alone would return the stale 503)."""

    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        if number == 1:
            writer.write(answer(COMPLETION))
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(answer(b'{"error":{"message":"stale"}}', status=b"503 Service Unavailable"))
            return True  # and keep the connection open: the client must drop it itself
        writer.write(answer(COMPLETION.replace(b"hi", b"fresh")))
        return True

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            adapter = provider(server)
            assert (await adapter.complete(call())).raw == COMPLETION
            assert await wait_for(lambda: server.closed == 1), "the stale answer closed the idle connection"
            second = await adapter.complete(call())
            assert b"fresh" in (second.raw or b"")
            assert server.accepted == 2
            await adapter.close()

    run(scenario())


@pytest.mark.parametrize("tail, fails", [(answer(b"{}", status=b"503 Service Unavailable"), False),
                                         (b"garbage\r\n\r\n", True)], ids=["second-answer", "garbage"])
def test_extra_bytes_in_the_same_write_close_the_connection(run, tail, fails):
    """A second answer right behind the first is dropped with its connection; garbage behind an answer
    spoils that answer (an upstream fault, fallback) and its connection too."""

    async def scenario() -> None:
        async with RawUpstream(replying(answer(COMPLETION) + tail)) as server:
            adapter = provider(server)
            for _ in range(2):
                if fails:
                    with pytest.raises(UpstreamServerError):
                        await adapter.complete(call())
                else:
                    assert (await adapter.complete(call())).raw == COMPLETION
            assert server.accepted == 2
            await adapter.close()

    run(scenario())


def test_a_longer_body_than_announced_closes_the_connection(run):
    async def scenario() -> None:
        async with RawUpstream(replying(answer(COMPLETION)[:-1] + b"}}")) as server:  # one byte more than said
            adapter = provider(server)
            for _ in range(2):
                with pytest.raises(UpstreamServerError):
                    await adapter.complete(call())
            assert server.accepted == 2
            await adapter.close()

    run(scenario())


def test_a_shorter_body_than_announced_is_a_lost_connection(run):
    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 500\r\n\r\n" + COMPLETION)
        return False

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            with pytest.raises(UpstreamConnectionLost):
                await complete_once(server)

    run(scenario())


@pytest.mark.parametrize("garbage", [b"SSH-2.0-OpenSSH_9.6\r\n\r\n", b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
                                     b"\x00\xff" * 50])
def test_garbage_is_an_upstream_fault_and_the_connection_is_dropped(run, garbage):
    async def scenario() -> None:
        async with RawUpstream(replying(garbage)) as server:
            adapter = provider(server)
            with pytest.raises(UpstreamServerError):
                await adapter.complete(call())
            with pytest.raises(UpstreamServerError):
                await batches(adapter, call({"stream": True}))
            assert server.accepted == 2
            await adapter.close()

    run(scenario())


# -- never sent twice ------------------------------------------------------------------------------------
def test_a_post_read_then_dropped_on_a_reused_connection_is_never_sent_again(run):
    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        if b'"second"' in request:
            return False  # read the request, then hang up without answering
        writer.write(answer(COMPLETION))
        return True

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            adapter = provider(server)
            await adapter.complete(call({"m": "first"}))
            with pytest.raises(UpstreamConnectionLost):
                await adapter.complete(call({"m": "second"}))
            assert sum(b'"second"' in r for r in server.requests) == 1
            with pytest.raises(UpstreamConnectionLost):
                await batches(adapter, call({"m": "second", "stream": True}))
            assert sum(b'"second"' in r for r in server.requests) == 2
            await adapter.close()

    run(scenario())


def test_connection_refused_is_a_connection_error_that_sent_nothing(run):
    async def scenario() -> None:
        async with RawUpstream(replying(b"")) as server:
            pass
        with pytest.raises(UpstreamConnectionError) as caught:
            await complete_once(server)
        assert not isinstance(caught.value, UpstreamConnectionLost)

    run(scenario())


# -- bounds ------------------------------------------------------------------------------------------------
def test_a_body_over_the_limit_is_refused(run):
    big = b"x" * (64 * MiB)

    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        if b'"chunked"' in request:
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for _ in range(64):
                writer.write(chunked(big[:MiB])[:-5])
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            return False
        # Only the head and a first KiB of the announced 64 MiB, then silence: an adapter that read the body
        # before refusing it would wait for the rest and fail with a timeout instead of the size limit.
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(big)
                     + big[:1024])
        await writer.drain()
        await asyncio.sleep(60)  # cancelled when the server closes
        return False

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            adapter = provider(server)
            with pytest.raises(ProviderError, match="limit") as announced:  # refused from its content-length
                await adapter.complete(call())
            with pytest.raises(ProviderError, match="limit") as counted:
                await adapter.complete(call({"m": "chunked"}))
            assert announced.value.status == counted.value.status == 502
            assert counted.value.code == "upstream_response_too_large"
            await adapter.close()

    run(scenario())


def test_an_error_answer_too_large_to_read_keeps_its_status(run):
    async def scenario() -> None:
        reply = answer(b"e" * (2 * MiB), b"retry-after: 3", status=b"429 Too Many Requests")
        async with RawUpstream(replying(reply)) as server:
            with pytest.raises(UpstreamRateLimited) as caught:
                await complete_once(server)
            assert caught.value.retry_after == 3

    run(scenario())


def test_gzip_is_decoded_within_bounds_and_a_bomb_is_refused(run):
    bomb = gzip.compress(b"\0" * (200 * MiB), compresslevel=9)
    assert len(bomb) < 250 * 1024

    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        if b'"bomb"' in request:
            writer.write(answer(bomb, b"content-encoding: gzip"))
        elif b'"brotli"' in request:
            writer.write(answer(b"\x1b\x00", b"content-encoding: br"))
        elif b'"deflate"' in request:
            writer.write(answer(zlib.compress(COMPLETION), b"content-encoding: deflate"))
        else:
            writer.write(answer(gzip.compress(COMPLETION), b"content-encoding: gzip"))
        return True

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            adapter = provider(server)
            assert (await adapter.complete(call())).raw == COMPLETION
            assert (await adapter.complete(call({"m": "deflate"}))).raw == COMPLETION
            with pytest.raises(ProviderError) as caught:
                await adapter.complete(call({"m": "bomb"}))
            assert caught.value.code == "upstream_response_too_large"
            with pytest.raises(UpstreamServerError, match="content-encoding"):
                await adapter.complete(call({"m": "brotli"}))
            await adapter.close()

    run(scenario())


def test_an_event_without_end_is_cut_off_in_linear_time(run):
    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        writer.write(SSE_HEAD + chunked(b'data: {"choices":[]}\n\n')[:-5])
        writer.write(chunked(b"data: " + b"y" * 1000)[:-5])
        piece = b"z" * 4096  # 20 MiB in small reads, never a blank line
        for _ in range(20 * 256):
            writer.write(chunked(piece)[:-5])
            await writer.drain()
        return False

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            adapter = provider(server, max_event_bytes=4 * MiB)
            got: list[list[bytes]] = []
            started = time.thread_time()
            with pytest.raises(ProviderError) as caught:
                async for batch in adapter.stream_batches(call({"stream": True})):
                    got.append(batch)
            assert time.thread_time() - started < 2.0
            assert got == [[b'{"choices":[]}']] and caught.value.code == "upstream_response_too_large"
            await adapter.close()

    run(scenario())


def test_a_stream_of_keepalives_only_times_out(run):
    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        writer.write(SSE_HEAD + chunked(b'data: {"choices":[]}\n\n')[:-5])
        for _ in range(30):  # bounded: 3 s of pings at most
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.write(chunked(b": ping\n\n")[:-5])
        return False

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            adapter = provider(server)
            # A timeout, not the end of the stream the server reaches after 3 s of pings: cut off on time.
            with pytest.raises(UpstreamTimeout):
                await batches(adapter, call({"stream": True}, timeout=0.3))
            await adapter.close()

    run(scenario())


# -- item 4: anything wrong before the first event is raised before it --------------------------------------
@pytest.mark.parametrize("reply", [
    answer(b"<html><body>Bad gateway</body></html>", b"content-type: text/html"),
    SSE_HEAD + chunked(b"data: {not json\n\ndata: [DONE]\n\n"),
    SSE_HEAD + chunked(b"data: 42\n\n"),
    answer(COMPLETION, b"content-type: application/json"),
    SSE_HEAD + chunked(b": nothing but a comment\n\n"),
], ids=["html", "invalid-json-event", "not-an-object", "json-body", "no-event"])
def test_a_stream_that_is_not_a_valid_event_stream_fails_before_its_first_batch(run, reply):
    async def scenario() -> None:
        async with RawUpstream(replying(reply)) as server:
            adapter = provider(server)
            with pytest.raises(UpstreamServerError):
                await anext(adapter.stream_batches(call({"stream": True})))
            await adapter.close()

    run(scenario())


def test_the_last_batch_is_marked_and_redirects_are_not_followed(run):
    async def handler(writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        if b'"redirect"' in request:
            writer.write(answer(b"", b"location: http://127.0.0.1:1/elsewhere", status=b"307 Temporary Redirect"))
        else:
            writer.write(SSE_HEAD + chunked(EVENTS))
        return True

    async def scenario() -> None:
        async with RawUpstream(handler) as server:
            adapter = provider(server)
            (only,) = await batches(adapter, call({"stream": True}))
            assert type(only) is LastBatch
            with pytest.raises(UpstreamServerError):
                await adapter.complete(call({"m": "redirect"}))
            assert len(server.requests) == 2
            await adapter.close()

    run(scenario())


# -- proxies and TLS ------------------------------------------------------------------------------------------
def test_a_configured_proxy_carries_the_request(run):
    async def scenario() -> None:
        async with RawUpstream(replying(answer(COMPLETION))) as proxy:
            spec = ProviderSpec(type="openai", base_url="http://upstream.invalid/v1", api_key="sk-test",
                                proxy=f"http://127.0.0.1:{proxy.port}")
            adapter = OpenAICompatibleProvider("proxied", spec)
            assert (await adapter.complete(call())).raw == COMPLETION
            assert proxy.requests[0].startswith(b"POST http://upstream.invalid/v1/chat/completions HTTP/1.1")
            await adapter.close()

    run(scenario())


def test_proxy_environment_is_honoured_with_no_proxy(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://corp-proxy:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example,localhost")
    spec = ProviderSpec(type="openai", base_url="https://api.example/v1")
    assert proxy_for(spec, "https://api.example/v1/chat/completions") == "http://corp-proxy:3128"
    assert proxy_for(spec, "https://vllm.internal.example:8443/v1/chat/completions") is None
    assert proxy_for(spec, "http://api.example/v1/chat/completions") is None  # no HTTP_PROXY set
    own = ProviderSpec(type="openai", base_url="https://api.example/v1", proxy="http://own:8080")
    assert proxy_for(own, "https://vllm.internal.example/v1") == "http://own:8080"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, both signed by the CA."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("pki")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60, cwd=folder)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.pem")
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                "-out", f"{name}.csr")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "1", "-extfile", "san.cnf", "-out", f"{name}.pem")
    return {name: folder / name for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def test_a_private_ca_and_a_client_certificate_reach_an_mtls_upstream(run, pki):
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki["ca.pem"]))
    server_tls.load_cert_chain(pki["server.pem"], pki["server.key"])
    server_tls.verify_mode = ssl.CERT_REQUIRED

    async def scenario() -> None:
        async with RawUpstream(replying(answer(COMPLETION)), tls=server_tls) as server:
            unknown_ca = provider(server)
            with pytest.raises(UpstreamConnectionError, match="cannot connect"):
                await unknown_ca.complete(call())  # the system CAs do not know this one
            await unknown_ca.close()
            without_cert = provider(server, ca_bundle=str(pki["ca.pem"]))
            with pytest.raises(ProviderError):
                await without_cert.complete(call())  # the upstream wants a client certificate
            await without_cert.close()
            mutual = provider(server, ca_bundle=str(pki["ca.pem"]), client_cert=str(pki["client.pem"]),
                              client_key=str(pki["client.key"]))
            for _ in range(2):
                assert (await mutual.complete(call())).raw == COMPLETION
            assert len(server.requests) == 2
            await mutual.close()

    run(scenario())
