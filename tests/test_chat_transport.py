"""The chat endpoint's own HTTP handling (it is served as plain ASGI, in front of FastAPI): body limits, chunked
uploads, clients that leave mid-upload or mid-stream, request ids, wrong methods. Raw sockets where a client
library would not misbehave on purpose."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.configs import TEST_KEY, openai_config
from tests.fakes.behaviours import SlowStream
from tests.harness import RouterProcess, wait_until, write_config
from tests.ledger_helpers import usage_rows

BODY = json.dumps({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}).encode()
LIMIT = 2048


@pytest.fixture
def router(upstream: Any, start_router: Any) -> Any:
    return start_router(openai_config(upstream.openai_base_url), max_body_bytes=LIMIT)


def _exchange(port: int, raw: bytes, close_after_send: bool = False) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        if close_after_send:
            return b""
        return b"".join(iter(lambda: sock.recv(65536), b""))


def _head(length: int | None = None, chunked: bool = False) -> bytes:
    lines = [b"POST /v1/chat/completions HTTP/1.1", b"host: x", b"content-type: application/json",
             b"authorization: Bearer " + TEST_KEY.encode(), b"connection: close"]
    if chunked:
        lines.append(b"transfer-encoding: chunked")
    elif length is not None:
        lines.append(b"content-length: %d" % length)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        piece = data[start:start + size]
        yield b"%x\r\n%s\r\n" % (len(piece), piece)
    yield b"0\r\n\r\n"


def _status_and_json(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Traceback" not in answer
    return int(head.split(b" ", 2)[1]), json.loads(body)


def test_a_declared_body_over_the_limit_is_refused_with_413(router: Any) -> None:
    status, body = _status_and_json(_exchange(router.port, _head(LIMIT + 1) + b"x" * (LIMIT + 1)))
    assert status == 413 and body["error"]["type"] == "invalid_request_error"


def test_a_chunked_upload_is_read_whole_and_refused_once_over_the_limit(router: Any) -> None:
    status, body = _status_and_json(_exchange(router.port, _head(chunked=True) + b"".join(_chunks(BODY, 7))))
    assert status == 200 and body["choices"][0]["message"]["role"] == "assistant"
    big = BODY[:-1] + b', "pad": "' + b"p" * LIMIT + b'"}'
    status, body = _status_and_json(_exchange(router.port, _head(chunked=True) + b"".join(_chunks(big, 512))))
    assert status == 413 and "limit" in body["error"]["message"]


def test_a_client_leaving_mid_upload_is_recorded_and_the_router_serves_on(router: Any) -> None:
    _exchange(router.port, _head(len(BODY)) + BODY[:10], close_after_send=True)
    assert router.client().chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
    router.stop()  # drains the ledger
    rows = usage_rows(router.settings.database_url, "request")
    assert sorted(row["status"] for row in rows) == ["ok", "refused"]  # refused: it never reached a provider
    (gone,) = [row for row in rows if row["status"] == "refused"]
    assert "disconnected before its request was read" in gone["error"] and gone["agent"] == "test-agent"


def test_request_ids_are_echoed_when_sane_and_replaced_when_not(router: Any) -> None:
    with router.http() as http:
        sane = http.post("/v1/chat/completions", content=BODY, headers={
            "authorization": f"Bearer {TEST_KEY}", "x-request-id": "trace-42.a:b"})
        unsafe = http.post("/v1/chat/completions", content=BODY, headers={
            "authorization": f"Bearer {TEST_KEY}", "x-request-id": "x" * 200})
        refused = http.post("/v1/chat/completions", content=BODY, headers={"x-request-id": "trace-43"})
    assert sane.status_code == 200 and sane.headers["x-request-id"] == "trace-42.a:b"
    assert unsafe.status_code == 200 and len(unsafe.headers["x-request-id"]) == 32
    assert refused.status_code == 401 and refused.headers["x-request-id"] == "trace-43"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_get_an_openai_style_405(router: Any, method: str) -> None:
    with router.http() as http:
        resp = http.request(method, "/v1/chat/completions", headers={"authorization": f"Bearer {TEST_KEY}"})
    assert resp.status_code == 405 and set(resp.json()["error"]) >= {"message", "type", "code"}


def test_a_client_leaving_mid_stream_is_one_info_line_not_an_error(upstream: Any, tmp_path: Any) -> None:
    """Normal traffic, as the operator sees it in the serving process's log: no ERROR, no traceback."""
    upstream.always("up-primary", SlowStream(delay=0.2, content=" ".join(f"w{i}" for i in range(40))))
    router = RouterProcess(write_config(openai_config(upstream.openai_base_url), str(tmp_path)))
    router.start()
    try:
        body = {"model": "fast", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client(timeout=10) as http, http.stream("POST", f"{router.url}/v1/chat/completions", json=body,
                                                           headers={"authorization": f"Bearer {TEST_KEY}"}) as resp:
            assert resp.status_code == 200 and next(resp.iter_raw()).startswith(b"data: ")
            request_id = resp.headers["x-request-id"]
        assert wait_until(lambda: "disconnected mid-stream" in router.output(), timeout=10), router.output()
        assert router.client().chat.completions.create(model="fast", messages=[{"role": "user", "content": "x"}])
    finally:
        router.stop()
    log = router.output()
    (line,) = [line for line in log.splitlines() if "disconnected" in line]
    assert " INFO " in line and request_id in line
    assert "Traceback" not in log and " ERROR " not in log, log
