"""How big a reliability trial is: a bounded short form for CI, the full form with ``RELIABILITY=full``.

Every trial takes its sizes from here, so one switch turns the CI suite into the long run the README's figures
come from; every loop stays bounded in both forms.
"""

from __future__ import annotations

import os

FULL = os.environ.get("RELIABILITY", "").lower() == "full"


def size(ci: int, full: int) -> int:
    """``full`` in the full form, ``ci`` otherwise."""
    return full if FULL else ci
