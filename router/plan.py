"""A routing decision: which rule matched and the deployments to try, in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class RoutePlan:
    rule: str
    deployments: tuple[str, ...]
    set_params: dict[str, Any] = field(default_factory=dict)
    """Fields forced onto the request body (for example ``temperature``)."""
    cap_params: dict[str, Any] = field(default_factory=dict)
    """Numeric fields capped at a maximum (for example ``max_tokens``)."""
    reason: str = ""
