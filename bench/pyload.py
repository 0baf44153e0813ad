"""A bounded pure-Python HTTP/1.1 load generator (keep-alive, fixed concurrency, fixed duration): the fallback
for wrk. Reads whole responses (content-length or chunked), so a streamed answer counts when it has ended.

Prints one JSON line: ``{"requests", "seconds", "p50_ms", "p99_ms", "errors"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from urllib.parse import urlsplit


def _credential(wire: str, key: str) -> str:
    """Chat and Responses clients send the key as Bearer; Messages clients as ``x-api-key``, always with
    ``anthropic-version``."""
    if wire == "messages":
        return "anthropic-version: 2023-06-01\r\n" + (f"x-api-key: {key}\r\n" if key else "")
    return f"Authorization: Bearer {key}\r\n" if key else ""


def _requests(url: str, body: bytes, keys: list[str], wire: str) -> list[bytes]:
    parts = urlsplit(url)
    head = (f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n")
    return [(head + _credential(wire, key) + "\r\n").encode() + body for key in (keys or [""])]


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    lowered = head.lower()
    if b"transfer-encoding: chunked" in lowered:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        start = lowered.find(b"content-length:")
        length = int(lowered[start + 15:lowered.find(b"\r\n", start)]) if start >= 0 else 0
        await reader.readexactly(length)
    return status


async def _worker(host: str, port: int, requests: list[bytes], offset: int, until: float,
                  latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    n = offset
    try:
        while time.perf_counter() < until:
            request = requests[n % len(requests)]
            n += 1
            began = time.perf_counter()
            writer.write(request)
            try:
                status = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                errors.append(1)
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            latencies.append(time.perf_counter() - began)
            if status != 200:
                errors.append(1)
    finally:
        writer.close()


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


async def run(url: str, body: bytes, keys: list[str], concurrency: int, seconds: float,
              wire: str = "chat") -> dict[str, float]:
    parts = urlsplit(url)
    requests = _requests(url, body, keys, wire)
    latencies: list[float] = []
    errors: list[int] = []
    began = time.perf_counter()
    until = began + seconds
    await asyncio.gather(*(_worker(parts.hostname or "127.0.0.1", parts.port or 80, requests, i, until, latencies,
                                   errors) for i in range(concurrency)))
    elapsed = time.perf_counter() - began
    return {"requests": len(latencies), "seconds": elapsed, "p50_ms": _percentile(latencies, 50) * 1000,
            "p99_ms": _percentile(latencies, 99) * 1000, "errors": len(errors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True)
    parser.add_argument("--keys", default="")
    parser.add_argument("--wire", choices=("chat", "messages", "responses"), default="chat",
                        help="chat and responses send the key as Bearer, messages as x-api-key")
    parser.add_argument("-c", type=int, default=1)
    parser.add_argument("-d", type=float, default=1.0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    keys = [key for key in args.keys.split(",") if key]
    result = asyncio.run(run(args.url, Path(args.body).read_bytes(), keys, args.c, args.d, args.wire))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
