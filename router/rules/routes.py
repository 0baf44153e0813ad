"""Compiled routes: turn a matched rule into the ordered deployments to try, with a note of why.

A chain is used as written. A split picks one arm by weight (randomly, or by a hash of agent+rule when
sticky) and keeps the other arms' deployments after it as fallbacks. A strategy orders its whole pool.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from router.deployment_stats import DeploymentStats
from router.rules import strategies
from router.rules.facts import RequestFacts

Random = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Resolved:
    deployments: tuple[str, ...]
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


class Route:
    set_params: dict[str, Any]
    cap_params: dict[str, Any]

    def resolve(self, facts: RequestFacts, rule: str, stats: DeploymentStats | None, rand: Random) -> Resolved:
        raise NotImplementedError

    @property
    def needs_tokens(self) -> bool:
        return False

    def references(self) -> tuple[str, ...]:
        """Every deployment this route can send to."""
        raise NotImplementedError


@dataclass(frozen=True)
class ChainRoute(Route):
    deployments: tuple[str, ...]
    model: str | None = None
    """Set when the chain is a public model's (``route: {model: fast}``)."""
    set_params: dict[str, Any] = field(default_factory=dict)
    cap_params: dict[str, Any] = field(default_factory=dict)

    def resolve(self, facts: RequestFacts, rule: str, stats: DeploymentStats | None, rand: Random) -> Resolved:
        source = f"the chain of model {self.model!r}" if self.model else f"chain {list(self.deployments)}"
        return Resolved(self.deployments, source, {"kind": "chain", "model": self.model})

    def references(self) -> tuple[str, ...]:
        return self.deployments


@dataclass(frozen=True, slots=True)
class Arm:
    name: str
    weight: float
    deployments: tuple[str, ...]


@functools.lru_cache(maxsize=8192)
def sticky_fraction(rule: str, key: str) -> float:
    """A stable number in [0, 1) for (rule, key): the same agent lands on the same arm on every replica.

    Cached: agents are few and the hash is on every request of a sticky split."""
    digest = hashlib.sha256(f"{rule}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True, slots=True)
class _ArmChoice:
    """What choosing one arm means, worked out once per compiled route: arms never change after compile."""

    upper_edge: float
    deployments: tuple[str, ...]
    """The arm's deployments, then the other arms' as fallbacks."""
    label: str


@dataclass(frozen=True)
class SplitRoute(Route):
    arms: tuple[Arm, ...]
    sticky: str | None = None
    set_params: dict[str, Any] = field(default_factory=dict)
    cap_params: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def _choices(self) -> tuple[_ArmChoice, ...]:
        total = sum(arm.weight for arm in self.arms)
        choices, edge = [], 0.0
        for arm in self.arms:
            edge += arm.weight / total
            ordered = list(arm.deployments)
            for other in self.arms:
                ordered.extend(name for name in other.deployments if name not in ordered)
            choices.append(_ArmChoice(edge, tuple(ordered), f"split arm {arm.name!r} ({arm.weight / total:.0%}, "))
        return tuple(choices)

    @functools.cached_property
    def _arms_detail(self) -> list[dict[str, Any]]:
        return [{"name": a.name, "weight": a.weight, "deployments": list(a.deployments)} for a in self.arms]

    def resolve(self, facts: RequestFacts, rule: str, stats: DeploymentStats | None, rand: Random) -> Resolved:
        key = facts.session if self.sticky is None else facts.agent if self.sticky == "agent" else facts.user
        point = sticky_fraction(rule, key) if key else rand()
        choices = self._choices
        index = len(choices) - 1
        for i, choice in enumerate(choices):
            if point < choice.upper_edge:
                index = i
                break
        chosen, arm = choices[index], self.arms[index]
        how = f"sticky by {self.sticky or 'session'} {key!r})" if key else "random)"
        return Resolved(chosen.deployments, chosen.label + how,
                        {"kind": "split", "arm": arm.name, "sticky": self.sticky, "sticky_key": key,
                         "arms": self._arms_detail})

    def references(self) -> tuple[str, ...]:
        return tuple(name for arm in self.arms for name in arm.deployments)


@dataclass(frozen=True)
class StrategyRoute(Route):
    strategy: str
    pool: tuple[strategies.PoolMember, ...]
    set_params: dict[str, Any] = field(default_factory=dict)
    cap_params: dict[str, Any] = field(default_factory=dict)

    def resolve(self, facts: RequestFacts, rule: str, stats: DeploymentStats | None, rand: Random) -> Resolved:
        names = [member.name for member in self.pool]
        if self.strategy == "cheapest":
            ordered, notes = strategies.cheapest(self.pool, facts.prompt_fits)
        elif self.strategy == "lowest_latency":
            ordered, notes = strategies.lowest_latency(names, stats)
        else:
            ordered, notes = strategies.least_busy(names, stats)
        return Resolved(tuple(ordered), f"strategy {self.strategy} over {len(names)} deployments",
                        {"kind": "strategy", "strategy": self.strategy, "ranking": notes})

    @property
    def needs_tokens(self) -> bool:
        return self.strategy == "cheapest"

    def references(self) -> tuple[str, ...]:
        return tuple(member.name for member in self.pool)


def default_random() -> float:
    return random.random()
