"""Live per-deployment figures (latency moving average, requests in flight) for routing strategies.

Process-local on purpose: each replica routes by what it observes itself. The executor writes, the
rules read (as plain facts passed to :func:`router.rules.plan_route`).
"""

from __future__ import annotations

from dataclasses import dataclass

# Weight of the newest sample in the exponential moving average of latency.
LATENCY_ALPHA = 0.2


@dataclass(slots=True)
class DeploymentStat:
    latency_ms: float | None = None
    in_flight: int = 0
    successes: int = 0
    failures: int = 0


class DeploymentStats:
    def __init__(self) -> None:
        self._stats: dict[str, DeploymentStat] = {}

    def get(self, deployment: str) -> DeploymentStat:
        stat = self._stats.get(deployment)
        if stat is None:
            stat = self._stats[deployment] = DeploymentStat()
        return stat

    def started(self, deployment: str) -> None:
        self.get(deployment).in_flight += 1

    def finished(self, deployment: str, latency_ms: float, ok: bool) -> None:
        stat = self.get(deployment)
        stat.in_flight = max(0, stat.in_flight - 1)
        if ok:
            stat.successes += 1
            previous = stat.latency_ms
            stat.latency_ms = latency_ms if previous is None else previous + LATENCY_ALPHA * (latency_ms - previous)
        else:
            stat.failures += 1

    def latency_ms(self, deployment: str) -> float | None:
        stat = self._stats.get(deployment)
        return stat.latency_ms if stat else None

    def in_flight(self, deployment: str) -> int:
        stat = self._stats.get(deployment)
        return stat.in_flight if stat else 0
