"""Tool names as the policy sees them: one canonical spelling, from a small safe alphabet.

A name is normalised with Unicode NFKC (full-width and compatibility forms fold to ASCII), case-folded
and trimmed of surrounding whitespace. The result must match :data:`SAFE_NAME`: 1 to 64 characters
from ``a-z 0-9 _ . : -``. Anything else (Cyrillic or Greek look-alikes, zero-width characters, inner
spaces, control characters) is refused outright, so a look-alike can never match an allow pattern nor
slip past a deny pattern.

Patterns in config (allow, deny, condition tools) are normalised the same way and may use ``*`` (any
run of characters) and ``?`` (one character) as wildcards; nothing else is pattern syntax.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

SAFE_NAME = re.compile(r"[a-z0-9_.:-]{1,64}")
_SAFE_PATTERN = re.compile(r"[a-z0-9_.:*?-]{1,64}")
MEMO_MAX_CHARS = 256
"""Longer names (surely unusual, possibly hostile) are not memoised, so memos stay small."""


def normalize(name: str) -> str:
    """NFKC, case-fold, NFKC again (case folding can leave non-normalised text), trim."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold()).strip()


def safe_name(name: object) -> str | None:
    """The canonical form of a tool name, or None when it is not a string in the safe alphabet."""
    if not isinstance(name, str):
        return None
    return _canonical(name) if len(name) <= MEMO_MAX_CHARS else _canonical.__wrapped__(name)


@lru_cache(maxsize=4096)
def _canonical(name: str) -> str | None:
    """Agents offer the same few names on every request: normalise each once (pure, bounded memo)."""
    canonical = normalize(name)
    return canonical if SAFE_NAME.fullmatch(canonical) else None


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Turn a config glob into an anchored regex over canonical names; ValueError when it is not valid."""
    canonical = normalize(pattern)
    if not _SAFE_PATTERN.fullmatch(canonical):
        raise ValueError(f"tool pattern {pattern!r} is not valid: use 1-64 characters from a-z 0-9 _ . : - "
                         "with * and ? as the only wildcards")
    parts = [".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in canonical]
    return re.compile("".join(parts), re.DOTALL)
