"""Credentials inside store addresses: mask them for logs and messages, and list them for the redactor.

Every form the drivers accept: user info in a URL (``postgresql://user:pass@host``, ``redis://:pass@host``,
``rediss://user:pass@host``, ``unix://:pass@/path``), a ``password=`` or ``sslpassword=`` URL parameter, and
libpq keyword/value strings (``host=db password=secret``, ``password='it''s quoted'``).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

_USERINFO = re.compile(r"(?<=://)[^?#]*@")
"""Up to the last ``@`` before the query: a password with a raw ``/`` or ``@`` in it is still masked whole."""
_PASSWORD = re.compile(r"(?i)(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&#]*)")


def redact_url(url: str) -> str:
    """A store address fit for logs and messages: user info and every password parameter replaced by ``***``."""
    return _PASSWORD.sub(r"\1***", _USERINFO.sub("***@", url))


def url_secrets(url: str | None) -> list[str]:
    """The passwords an address holds (as written and percent-decoded), for :class:`router.redact.Redactor`."""
    if not url:
        return []
    found: list[str] = []
    userinfo = _USERINFO.search(url)
    if userinfo is not None:
        password = userinfo.group()[:-1].partition(":")[2]  # a user alone is no secret
        found += [password] if password else []
    for match in _PASSWORD.finditer(url):
        value = match.group(2)
        found.append(value[1:-1].replace("\\'", "'").replace("\\\\", "\\") if value[:1] == "'" else value)
    return [form for value in found if value for form in {value, unquote(value)}]
