"""The HTTP client of OpenAI-compatible providers: one tuned aiohttp session per provider and event loop.

A gateway should not carry its own HTTP client, so this is aiohttp (maintained, already a dependency), set up
for a relay that must not trust its upstream:

- no cookie jar: an upstream cannot plant state that later callers would send back;
- ``auto_decompress=False`` and ``accept-encoding: identity``: :mod:`providers.bounded_body` decodes an
  unasked-for gzip/deflate itself, bounded in size and ratio;
- proxies: the provider's ``proxy``, else ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY`` read once when the
  provider is built (not aiohttp's ``trust_env``, which also reads ``~/.netrc``, in a thread, per request);
- TLS: one ``SSLContext`` per provider, from ``ca_bundle`` and ``client_cert`` / ``client_key`` when set;
- redirects are never followed (a POST and its credentials go nowhere but the configured URL);
- a POST is never sent twice: aiohttp re-sends a request on a dead kept-alive connection only for idempotent
  methods (``IDEMPOTENT_METHODS`` in ``aiohttp/client.py``, checked for 3.14);
- a connection on which bytes arrive that no request asked for is closed, never reused: aiohttp itself would
  read them as the next request's answer (:class:`AskedOnlyProtocol`); one that saw a parse error, a body left
  unread or ``connection: close`` is closed by aiohttp.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import urllib.request
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp
from aiohttp.client_proto import ResponseHandler

from router.config.schema import ProviderSpec

KEEPALIVE_SECONDS = 15.0
"""Idle connections are closed after this; shorter than most servers' own keep-alive, so the upstream rarely
closes one just as it is reused (a POST on such a connection fails: it is never re-sent)."""


class AskedOnlyProtocol(ResponseHandler):
    """aiohttp's connection protocol, closing the connection when bytes arrive while no answer is awaited
    (between the end of one answer and the next request): they are stale or forged, never the next answer."""

    _awaiting = False

    def set_response_params(self, **kwargs: Any) -> None:  # aiohttp calls this before it sends each request
        self._awaiting = True
        super().set_response_params(**kwargs)

    def data_received(self, data: bytes) -> None:
        if data and not self._awaiting and not self.upgraded:
            self._should_close = True
            if self.transport is not None:
                self.transport.abort()
            return
        super().data_received(data)

    def feed_data(self, data: Any, size: int = 0) -> None:  # one parsed (message, payload) per answer
        message, payload = data
        if not 100 <= message.code < 200:  # informational answers precede the real one
            payload.on_eof(self._answered)
        super().feed_data(data, size)

    def _answered(self) -> None:
        self._awaiting = False


def tls_context(spec: ProviderSpec) -> ssl.SSLContext | None:
    """The verifying context for ``spec`` (its own CAs and client certificate), or None for the default."""
    if not (spec.ca_bundle or spec.client_cert):
        return None
    try:
        context = ssl.create_default_context(cafile=spec.ca_bundle)
        if spec.client_cert:
            context.load_cert_chain(spec.client_cert, spec.client_key)
    except (OSError, ssl.SSLError) as exc:  # the message names the file, never its content
        raise ValueError(f"cannot load the provider's TLS files: {type(exc).__name__}: {exc.strerror or exc}") \
            from None
    return context


def proxy_for(spec: ProviderSpec, url: str) -> str | None:
    """The provider's own proxy, else the environment's for this URL's scheme unless NO_PROXY exempts it."""
    if spec.proxy:
        return spec.proxy
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme.lower())
    if not proxy or urllib.request.proxy_bypass(parts.netloc.rsplit("@", 1)[-1]):
        return None
    return proxy


class UpstreamSession:
    """Lazily opens the aiohttp session on the running event loop (a new loop gets a new session)."""

    def __init__(self, spec: ProviderSpec, url: str, headers: dict[str, str]) -> None:
        self._spec = spec
        self._tls = tls_context(spec)
        self._proxy = proxy_for(spec, url)
        self._headers = {"user-agent": "agent-router", "accept-encoding": "identity", **headers}
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def proxied(self) -> bool:
        return self._proxy is not None

    def get(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._session
        if session is None or self._loop is not loop or session.closed:
            session = self._session = self._open(loop)
            self._loop = loop
        return session

    def _open(self, loop: asyncio.AbstractEventLoop) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._spec.max_connections, limit_per_host=0,
                                         keepalive_timeout=KEEPALIVE_SECONDS, ssl=self._tls or True,
                                         ttl_dns_cache=300, loop=loop)
        guarded = functools.partial(AskedOnlyProtocol, loop=loop)  # see AskedOnlyProtocol
        connector._factory = cast("functools.partial[ResponseHandler]", guarded)
        return aiohttp.ClientSession(connector=connector, headers=self._headers, proxy=self._proxy,
                                     cookie_jar=aiohttp.DummyCookieJar(loop=loop), auto_decompress=False,
                                     skip_auto_headers=("User-Agent",), trust_env=False)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            try:
                if self._loop is asyncio.get_running_loop():
                    await session.close()
            except RuntimeError:  # no running loop: nothing left to close cleanly
                pass
