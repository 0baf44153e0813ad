"""The server's own bounds on connections (router/http_connection.py): slow heads and bodies, idle kept-alive
connections, oversized heads and the connection limit cannot hold the router's file descriptors, and a
normal client keeps being served meanwhile. Raw sockets, since no client library misbehaves on purpose.

Timeouts are short here; waits are generous hang guards, never assertions on elapsed time."""

from __future__ import annotations

import json
import select
import socket
import struct
import time
from typing import Any

import pytest

from tests.configs import TEST_KEY, openai_config
from tests.harness import RouterProcess, write_config

SHORT = {"header_timeout": 0.5, "body_timeout": 0.5, "keepalive_timeout": 0.5}
GUARD = 15.0
BODY = json.dumps({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}).encode()


def _post_head(length: int, keep_alive: bool = True, extra: bytes = b"") -> bytes:
    return (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"authorization: Bearer " + TEST_KEY.encode() + b"\r\ncontent-length: %d\r\n" % length + extra
            + (b"" if keep_alive else b"connection: close\r\n") + b"\r\n")


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=GUARD)


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the router sends until it closes the connection (bounded by the socket's timeout)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
        if len(data) > 1 << 20:
            raise AssertionError("the router keeps sending")
    return data


def _read_response(sock: socket.socket) -> bytes:
    """One response with a content-length, leaving the connection open."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536) or b"\r\n\r\n"
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.lower().split(b"\r\n")
                      if line.startswith(b"content-length:")))
    while len(body) < length:
        body += sock.recv(65536) or b"?" * length
    return data


def _status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split(b" ", 2)[1])


def _error_code(answer: bytes) -> str:
    return str(json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"])


def _served(router: Any) -> bool:
    with router.http() as http:
        return bool(http.get("/healthz").status_code == 200)


@pytest.fixture
def router(upstream: Any, start_router: Any) -> Any:
    return start_router(openai_config(upstream.openai_base_url), **SHORT)


def test_a_connection_that_sends_nothing_gets_408_and_is_closed(router: Any) -> None:
    with _connect(router.port) as sock:
        answer = _read_until_closed(sock)
    assert _status(answer) == 408 and _error_code(answer) == "request_timeout"
    assert _served(router)


def test_a_head_dripped_byte_by_byte_is_cut_at_the_header_timeout(router: Any) -> None:
    """Each byte arrives well within the timeout: the timeout bounds the whole head, not the gaps."""
    head = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-drip: " + b"a" * 2000
    with _connect(router.port) as sock:
        for byte in head:  # never completes the head; bounded by its length
            if select.select([sock], [], [], 0.02)[0]:
                break
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
        else:
            raise AssertionError("the dripped head was never cut")
        answer = _read_until_closed(sock)
    assert _status(answer) == 408
    assert _served(router)


def test_a_body_that_stops_arriving_gets_408_and_is_closed(router: Any) -> None:
    with _connect(router.port) as sock:
        sock.sendall(_post_head(len(BODY)) + BODY[:10])
        answer = _read_until_closed(sock)
    assert _status(answer) == 408 and b"body" in answer
    assert _served(router)


def test_a_slow_body_that_keeps_arriving_is_served(upstream: Any, start_router: Any) -> None:
    router = start_router(openai_config(upstream.openai_base_url), header_timeout=5, body_timeout=5)
    with _connect(router.port) as sock:
        sock.sendall(_post_head(len(BODY), keep_alive=False))
        for i in range(0, len(BODY), 16):
            sock.sendall(BODY[i:i + 16])
            time.sleep(0.02)
        answer = _read_until_closed(sock)
    assert _status(answer) == 200


def test_an_idle_kept_alive_connection_is_closed(router: Any) -> None:
    with _connect(router.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        answer = _read_until_closed(sock)
    assert _status(answer) == 200 and b"connection: close" not in answer.lower()


@pytest.mark.parametrize("pieces", [1, 40])
def test_an_oversized_head_gets_431(upstream: Any, start_router: Any, pieces: int) -> None:
    router = start_router(openai_config(upstream.openai_base_url), max_header_bytes=4096)
    head = _post_head(len(BODY), keep_alive=False, extra=b"x-filler: " + b"a" * 8000 + b"\r\n")
    with _connect(router.port) as sock:
        size = len(head) // pieces + 1
        try:
            for i in range(0, len(head), size):
                sock.sendall(head[i:i + size])
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _read_until_closed(sock)
    assert _status(answer) == 431 and _error_code(answer) == "request_header_fields_too_large"
    with _connect(router.port) as sock:  # a head under the limit, body included in the same packet
        sock.sendall(_post_head(len(BODY), keep_alive=False, extra=b"x-filler: " + b"a" * 3000 + b"\r\n") + BODY)
        assert _status(_read_until_closed(sock)) == 200


def test_the_connection_limit_closes_idle_connections_first(upstream: Any, start_router: Any) -> None:
    router = start_router(openai_config(upstream.openai_base_url), max_connections=4, keepalive_timeout=60)
    idle = [_connect(router.port) for _ in range(4)]
    try:
        for sock in idle:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            assert _status(_read_response(sock)) == 200
        with _connect(router.port) as sock:  # over the limit: the longest-idle connection makes room
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            assert _status(_read_until_closed(sock)) == 200
        assert idle[0].recv(65536) == b""
        idle[1].sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")  # the others were kept
        assert _status(_read_response(idle[1])) == 200
    finally:
        for sock in idle:
            sock.close()


def test_the_connection_limit_holds_against_slow_clients(upstream: Any, start_router: Any) -> None:
    router = start_router(openai_config(upstream.openai_base_url), max_connections=4, header_timeout=1.0)
    slow = [_connect(router.port) for _ in range(4)]
    try:
        for sock in slow:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        # None of them is idle: a fifth connection is refused (503) until their header timeout frees the room.
        statuses = []
        for _ in range(200):  # bounded; the slow ones are cut after about a second
            with _connect(router.port) as sock:
                try:
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                    statuses.append(_status(_read_until_closed(sock)))
                except ConnectionResetError:
                    statuses.append(0)  # refused before our request was read
            if statuses[-1] == 200:
                break
            time.sleep(0.05)
        assert statuses[0] in (503, 0) and statuses[-1] == 200, statuses
        assert all(_status(_read_until_closed(sock)) == 408 for sock in slow)
    finally:
        for sock in slow:
            sock.close()


def _pipelined_then(router: RouterProcess, how: str) -> bytes:
    with _connect(router.port) as sock:
        sock.sendall((_post_head(len(BODY)) + BODY) * 3)
        if how == "half-close":
            sock.shutdown(socket.SHUT_WR)
            return _read_until_closed(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
    return b""


@pytest.mark.parametrize("how", ["half-close", "reset"])
def test_a_client_leaving_with_pipelined_requests_is_a_normal_disconnect(upstream: Any, tmp_path: Any,
                                                                         how: str) -> None:
    router = RouterProcess(write_config(openai_config(upstream.openai_base_url), str(tmp_path)))
    router.start()
    try:
        answer = _pipelined_then(router, how)
        if how == "half-close":  # what was sent in full is still answered
            assert answer.count(b"HTTP/1.1 200 ") == 3
        assert router.client(TEST_KEY).chat.completions.create(model="fast",
                                                               messages=[{"role": "user", "content": "x"}])
    finally:
        router.stop()
    log = router.output()
    assert "Traceback" not in log and " ERROR " not in log and "ERROR:" not in log, log
