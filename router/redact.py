"""Mask secrets in text that came from elsewhere (upstream error messages) before it leaves the router.

Some providers echo the key or the request headers they were sent on a 401; that text must reach neither the
agent's error body nor a usage row nor a log line. A :class:`Redactor` masks two kinds of secret:

- every configured secret value it was given (provider keys and credential headers, the admin and audit keys,
  database and Redis passwords: see :func:`router_redactor`), wherever it appears;
- anything shaped like a credential: ``Bearer <token>``, ``sk-...`` / ``sk-ant-...``, the router's own ``ar-...``
  keys, AWS and Google key ids, JWTs, the value after ``x-api-key:``, ``api_key=``, ``password=``..., and
  tokens of 32 or more characters with a run of 16 letters and digits that mix upper case, lower case and
  digits (random keys do; words, model names like ``Llama-3.1-70B-Instruct``, hex digests and UUIDs do not).

Each shape's regular expression runs only when a word it needs is in the text, so the usual text (no secret)
costs a few substring tests. Masks are ``***``; the name before a keyed value (``x-api-key: ***``) is kept so
the message still says what was there.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from router.store.credentials import url_secrets

if TYPE_CHECKING:
    from router.config.mcp_schema import McpServerSpec
    from router.config.schema import ProviderSpec
    from router.settings import Settings

MASK = "***"
MIN_SECRET_CHARS = 6
"""Configured values shorter than this are not masked by value: a 3-character password would mangle every
message that contains those letters (the shape patterns still apply)."""

_KEYED = re.compile(
    r"(?P<keep>\b(?:x-api-key|api-key|x-admin-key|api_key|apikey|access_token|auth_token|client_secret|secret_key|"
    r"sslpassword|password|passwd|authorization)[\"']?\s*[:=]\s*[\"']?)(?!(?:bearer|basic)\b)[^\s\"',;&})\]]{3,}",
    re.IGNORECASE)
_BEARER = re.compile(r"(?P<keep>\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{6,}", re.IGNORECASE)
_PREFIXED = re.compile(r"\bsk-(?:ant-)?[A-Za-z0-9_-]{16,}|\bar-[A-Za-z0-9_-]{30,}|\bAKIA[0-9A-Z]{16}\b|"
                       r"\bAIza[0-9A-Za-z_-]{35}|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
_LONG_CHARS = 32
_LONG = re.compile(rf"(?<![\w+/=-])[\w+/=-]{{{_LONG_CHARS},}}")
_RULES: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = (
    (("key", "pass", "secret", "access_token", "auth_token", "authorization"), _KEYED),
    (("bearer", "basic"), _BEARER),
    (("sk-", "ar-", "akia", "aiza", "eyj"), _PREFIXED),
)
"""Each shape with the lower-case words it cannot match without: a shape runs only when one of them is there,
so most text costs a few substring tests (C speed) and no regular expression at all."""
_MIXED = (re.compile(r"[A-Z]"), re.compile(r"[a-z]"), re.compile(r"[0-9]"))
_SEGMENT = re.compile(r"[A-Za-z0-9]{16}")
"""A random key has a long run of letters and digits between its separators; ``Llama-3.1-70B-Instruct`` has not."""


class Redactor:
    """Masks the secrets it was given and anything shaped like a credential. Immutable; cheap to call."""

    __slots__ = ("_values", "count")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._values = tuple(sorted({s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_CHARS},
                                    key=len, reverse=True))
        """Longest first, so a value that contains another is masked whole."""
        self.count = len(self._values)
        """How many configured values it masks."""

    def __call__(self, text: str) -> str:
        """``text`` with every secret masked; the same object when there is none (the usual case)."""
        if not text:
            return text
        masked = text
        for value in self._values:
            if value in masked:
                masked = masked.replace(value, MASK)
        low = masked.lower()
        for words, pattern in _RULES:
            if any(word in low for word in words):
                masked = pattern.sub(_mask_value, masked)
        if max(map(len, masked.split()), default=0) >= _LONG_CHARS:  # cheaper than scanning with the regex
            masked = _LONG.sub(_mask_long, masked)
        return text if masked == text else masked


    def values_only(self, text: str) -> str:
        """``text`` with the configured values masked, and no credential-shaped guesses: for data a tool
        returns, where an ``api_key=`` in a file's text is content, but the router's own token is not."""
        masked = text
        for value in self._values:
            if value in masked:
                masked = masked.replace(value, MASK)
        return masked


def _mask_value(match: re.Match[str]) -> str:
    keep = match.groupdict().get("keep")
    return MASK if keep is None else keep + MASK


def _mask_long(match: re.Match[str]) -> str:
    token = match.group()
    if not _SEGMENT.search(token) or not all(p.search(token) for p in _MIXED):
        return token  # a long word, model name, hex digest or UUID: not a random key
    return MASK


PATTERNS_ONLY = Redactor()
"""The credential shapes alone, for text met where no configured value is known (the providers' own errors)."""


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in a record's message and traceback before any handler sees it.

    One instance is shared by every router logger; :func:`protect_logs` swaps its redactor on each config load.
    """

    def __init__(self) -> None:
        super().__init__()
        self.redactor = PATTERNS_ONLY

    def filter(self, record: logging.LogRecord) -> bool:
        redact = self.redactor
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error path
            return True
        masked = redact(message)
        if masked is not message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


LOG_FILTER = RedactingFilter()
_LOGGER_ROOTS = ("agent_router", "providers", "mcp", "httpx2", "sse_starlette")


def protect_logs(redactor: Redactor) -> None:
    """Mask ``redactor``'s secrets in every log record of the router's loggers (and uvicorn's error logger).

    A logger's filter applies to the records logged on that logger only, so it is added to each existing logger
    under those names; loggers are created at import, before the app starts."""
    LOG_FILTER.redactor = redactor
    names = {name for name in list(logging.root.manager.loggerDict) if name.split(".", 1)[0] in _LOGGER_ROOTS}
    for logger in map(logging.getLogger, sorted(names | {*_LOGGER_ROOTS, "uvicorn.error"})):
        if LOG_FILTER not in logger.filters:
            logger.addFilter(LOG_FILTER)


_SECRET_NAME = re.compile(r"(?i)key|secret|token|password|auth|credential")


def provider_secrets(providers: Iterable[ProviderSpec]) -> list[str]:
    """Each provider's key, credential headers and secret-named litellm options; and a proxy's password."""
    found: list[str] = []
    for spec in providers:
        found += [spec.api_key] if spec.api_key else []
        found += [value for name, value in spec.headers.items() if _SECRET_NAME.search(name)]
        found += [str(value) for name, value in spec.options.items()
                  if _SECRET_NAME.search(name) and isinstance(value, str)]
        found += url_secrets(spec.proxy)
    return found


def mcp_secrets(servers: Iterable[McpServerSpec]) -> list[str]:
    """Every MCP credential value (a role's token is a secret whatever its header or variable is called), and the
    server-wide headers and variables with secret names."""
    found: list[str] = []
    for spec in servers:
        found += [value for name, value in {**spec.headers, **spec.env}.items() if _SECRET_NAME.search(name)]
        for credential in spec.credentials.values():
            found += [value for value in (*credential.headers.values(), *credential.env.values()) if value]
        found += url_secrets(spec.url)
    return [value.removeprefix("Bearer ").strip() or value for value in found if value]


def router_redactor(settings: Settings, providers: Iterable[ProviderSpec],
                    mcp_servers: Iterable[McpServerSpec] = ()) -> Redactor:
    """The redactor of one config snapshot: its providers' secrets and the process's own (admin key, audit key,
    database and Redis passwords). Agent keys are known by hash only; their ``ar-`` shape is masked."""
    found = provider_secrets(providers) + mcp_secrets(mcp_servers)
    found += [settings.admin_key] if settings.admin_key else []
    found += [settings.audit_key.get_secret_value()] if settings.audit_key is not None else []
    found += url_secrets(settings.database_url) + url_secrets(settings.redis_url)
    return Redactor(found)
