"""Read an upstream's answer body with a ceiling, and decode a gzip/deflate it was never asked for, bounded.

The router asks for ``accept-encoding: identity``; an upstream (or a proxy on the way) may compress anyway.
Decoding is then capped twice: never more than ``limit`` bytes in all, and never more than ``MAX_RATIO``
times what arrived so far (plus a small allowance), so a few hundred KiB on the wire cannot become hundreds of
MiB in memory. Encodings we cannot decode within bounds (brotli, zstd, anything else) are refused.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import aiohttp

from router.errors import UpstreamServerError

MAX_RATIO = 100
"""Decoded bytes per received byte beyond which a body is a bomb (JSON text compresses about 5 to 20 times)."""
RATIO_ALLOWANCE = 64 * 1024
"""Decoded bytes always allowed, whatever the ratio: tiny bodies compress well."""


class BodyTooLarge(UpstreamServerError):
    """An answer or an event beyond the provider's configured bounds."""

    code = "upstream_response_too_large"


class BoundedDecoder:
    """gzip or zlib-wrapped deflate, fed piece by piece, raising :class:`BodyTooLarge` past the bounds."""

    __slots__ = ("_decoder", "_limit", "_produced", "_received", "_where")

    def __init__(self, limit: int, where: str) -> None:
        self._decoder = zlib.decompressobj(32 + zlib.MAX_WBITS)  # gzip or zlib header, detected
        self._limit = limit
        self._received = 0
        self._produced = 0
        self._where = where

    def feed(self, data: bytes) -> bytes:
        self._received += len(data)
        allowed = min(self._limit, self._received * MAX_RATIO + RATIO_ALLOWANCE) - self._produced
        try:
            out = self._decoder.decompress(data, max(allowed, 1))
        except zlib.error:
            raise UpstreamServerError(f"{self._where} sent a compressed body that does not decode") from None
        self._produced += len(out)
        if self._decoder.unconsumed_tail:
            raise BodyTooLarge(f"{self._where} sent a compressed body that decodes beyond "
                               f"{'its size limit' if self._produced >= self._limit else 'a sane ratio'}")
        return out

    def flush(self) -> bytes:
        try:
            return self._decoder.flush()
        except zlib.error:
            raise UpstreamServerError(f"{self._where} sent a truncated compressed body") from None


def decoder_for(headers: Mapping[str, str], limit: int, where: str) -> BoundedDecoder | None:
    """The decoder the answer's ``content-encoding`` needs, None for identity; refuse anything else."""
    encoding = headers.get("content-encoding", "").strip().lower()
    if not encoding or encoding == "identity":
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        return BoundedDecoder(limit, where)
    raise UpstreamServerError(f"{where} answered with content-encoding {encoding[:40]!r}, which the router "
                              f"did not ask for and does not decode")


async def read_body(resp: aiohttp.ClientResponse, limit: int, where: str) -> bytes:
    """The whole body, decoded, at most ``limit`` bytes; a declared length over the limit fails before reading."""
    declared = resp.content_length
    decoder = decoder_for(resp.headers, limit, where)
    if declared is not None and declared > limit:
        raise BodyTooLarge(f"{where} announced a body of {declared} bytes, more than the limit of {limit}")
    if declared is not None and decoder is None:
        return await resp.content.readexactly(declared) if declared else b""
    pieces: list[bytes] = []
    size = 0
    while piece := await resp.content.readany():
        if decoder is not None:
            piece = decoder.feed(piece)
        size += len(piece)
        if size > limit:
            raise BodyTooLarge(f"{where} sent a body larger than the limit of {limit} bytes")
        pieces.append(piece)
    if decoder is not None:
        rest = decoder.flush()
        size += len(rest)
        if size > limit:
            raise BodyTooLarge(f"{where} sent a body larger than the limit of {limit} bytes")
        pieces.append(rest)
    return b"".join(pieces)
