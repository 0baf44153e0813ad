"""Request heads for :mod:`providers.http1`: the fixed part encoded once per provider, the rest per call.

Header names must be HTTP tokens (a bad configured name fails at startup, not per request); values lose any
CR, LF or NUL so that no value can start a header or a request of its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

FRAMING = frozenset({"content-length", "transfer-encoding"})
"""Headers the client writes itself: a caller's would break the message framing."""

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_ONE_WRITE_LIMIT = 64 * 1024  # larger bodies go out as a second buffer of the same write, not copied
_CHECKED_NAMES: set[str] = set()


class RequestHead:
    """The pre-encoded fixed part of a request: request line and static headers, without the blank line."""

    __slots__ = ("names", "prefix")

    def __init__(self, prefix: bytes, names: frozenset[str]) -> None:
        self.prefix = prefix
        self.names = names


def header_line(name: str, value: str) -> bytes:
    if name not in _CHECKED_NAMES:
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"invalid header name {name!r}")
        if len(_CHECKED_NAMES) < 1024:
            _CHECKED_NAMES.add(name)
    if "\r" in value or "\n" in value or "\0" in value:
        value = value.replace("\r", " ").replace("\n", " ").replace("\0", " ")
    return f"{name}: {value.strip()}\r\n".encode()


def encode(head: RequestHead, body: bytes, headers: Mapping[str, str] | None) -> bytes | list[bytes]:
    """Head and body for one ``transport.write``; a per-call header replaces a static one of the same name."""
    prefix = head.prefix
    extra = b""
    if headers:
        lines: list[bytes] = []
        replaced: set[str] = set()
        for name, value in headers.items():
            lowered = name.lower()
            if lowered in FRAMING:
                continue
            if lowered in head.names:
                replaced.add(lowered)
            lines.append(header_line(name, value))
        if replaced:
            prefix = _without(prefix, replaced)
        extra = b"".join(lines)
    start = b"%scontent-length: %d\r\n%s\r\n" % (prefix, len(body), extra)
    if len(body) > _ONE_WRITE_LIMIT:
        return [start, body]
    return start + body


def _without(prefix: bytes, names: set[str]) -> bytes:
    request_line, *lines = prefix.split(b"\r\n")
    kept = [line for line in lines if line and line.split(b":", 1)[0].decode().lower() not in names]
    return b"\r\n".join([request_line, *kept, b""])


def header_dict(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Response headers as a dict with lower-case names; the first of repeated headers wins."""
    headers: dict[str, str] = {}
    for name, value in raw:
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return headers
