"""Every value the ledger writes, in a form both SQLite and PostgreSQL accept, so no record is refused for it.

A text value is stored as it came when it is plain: at most :data:`MAX_CHARS` characters, no NUL, no lone
surrogate (text that is not valid Unicode, e.g. a JSON ``"\\ud800"``), and not starting with :data:`MARK`.
Anything else is stored *escaped and visibly marked*::

    [escaped] <the first MAX_CHARS characters, escaped>[\\[cut N chars]]

where a backslash is doubled (``\\\\``), NUL is ``\\x00``, a lone surrogate is ``\\udXXX``, and ``\\[cut N chars]``
(present only when the value was longer) says how many characters were left out. No other character is
changed, so the escaped form reads like the original and :func:`unescaped` gives the original back (minus
what was cut). A caller's own text that begins with the marker is escaped as well, so a stored value starting
with ``[escaped] `` was always marked by the ledger, never forged.

:func:`strict` is the last resort for a row that the database still refuses (e.g. a number beyond 64 bits, or a
database whose encoding is not UTF-8): texts that are not short printable ASCII are marked the same way, with
every other character as ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN`` and at most :data:`STRICT_MAX_CHARS`
characters kept; integers are clamped to ±2**53 and non-finite floats stored as 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from operator import itemgetter
from typing import Any

MARK = "[escaped] "
MAX_CHARS = 4096
"""Characters of a value kept as they are; a longer value keeps this many (escaped) and says how many it cut."""
STRICT_MAX_CHARS = 256
STRICT_MAX_INT = 2**53
"""Integers beyond it are clamped: big enough for any real count, small enough that sums of many stay in 64 bits."""

_UNSAFE = re.compile(r"[\\\x00\ud800-\udfff]")
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x5b\x5d-\x7e]")
_ESCAPE_SEQUENCE = re.compile(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}|\\|\[cut \d+ chars\])")

TextValues = tuple[str | None, ...]


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _marked(text: str, limit: int, unsafe: re.Pattern[str]) -> str:
    cut = len(text) - limit
    body = unsafe.sub(_escape, text[:limit] if cut > 0 else text)
    return f"{MARK}{body}\\[cut {cut} chars]" if cut > 0 else MARK + body


def _is_plain(text: str) -> bool:
    """Storable as it is. ASCII text (the usual case) needs three C-level scans and no encoding."""
    if len(text) > MAX_CHARS or "\x00" in text or text.startswith(MARK):
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable(text: str) -> str:
    """``text`` itself when plain, else its escaped, marked form (see the module docstring)."""
    return text if _is_plain(text) else _marked(text, MAX_CHARS, _UNSAFE)


def storable_texts(values: TextValues) -> TextValues:
    """The same values, each made storable (a non-text value as its text); ``values`` itself when all are plain.

    One check over the values joined together stands for a check of each (a NUL, a surrogate, the marker or
    excess length in one shows in the whole), so plain values cost a join and a few C-level scans.
    """
    try:
        joined = "".join(filter(None, values))
    except TypeError:
        pass
    else:
        if len(joined) <= MAX_CHARS and MARK not in joined and _is_plain(joined):
            return values
    return tuple(None if value is None else storable(value if type(value) is str else str(value))
                 for value in values)


def strict_text(text: str) -> str:
    """Printable ASCII of at most :data:`STRICT_MAX_CHARS` characters, marked unless it already was that."""
    if len(text) <= STRICT_MAX_CHARS and not text.startswith(MARK) and not _NOT_PRINTABLE_ASCII.search(text):
        return text
    return _marked(text, STRICT_MAX_CHARS, _NOT_PRINTABLE_ASCII)


def strict(value: Any) -> Any:
    """Any stored value, in the strictest form: see the module docstring."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return max(-STRICT_MAX_INT, min(STRICT_MAX_INT, value))
    if isinstance(value, float):
        return value if math.isfinite(value) else 0.0
    return strict_text(value if isinstance(value, str) else str(value))


def row_sanitiser(text_positions: tuple[int, ...]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """A function making the text values of a row (at ``text_positions``) storable; plain rows come back as
    they are."""
    texts_of = itemgetter(*text_positions)

    def storable_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
        texts = texts_of(row)
        safe = storable_texts(texts)
        if safe is texts:
            return row
        values = list(row)
        for position, value in zip(text_positions, safe, strict=True):
            values[position] = value
        return tuple(values)

    return storable_row


def unescaped(stored: str) -> tuple[str, int]:
    """The original text of a stored value and how many characters were cut from it (0: none)."""
    if not stored.startswith(MARK):
        return stored, 0
    cut = 0

    def original(match: re.Match[str]) -> str:
        nonlocal cut
        sequence = match.group(1)
        if sequence == "\\":
            return "\\"
        if sequence.startswith("["):
            cut = int(sequence[5:-7])
            return ""
        return chr(int(sequence[1:], 16))

    return _ESCAPE_SEQUENCE.sub(original, stored[len(MARK):]), cut
