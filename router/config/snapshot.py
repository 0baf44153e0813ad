"""The frozen config snapshot a request runs against from start to finish.

A reload builds a whole new snapshot and swaps one reference; requests in flight keep the one they began
with. Compiled sections (rules, roles, agents) are added by their own modules at load time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from router.config.schema import ConfigFile, DeploymentSpec, ProviderSpec
from router.redact import PATTERNS_ONLY, Redactor


@dataclass(frozen=True)
class Snapshot:
    version: str
    files: tuple[str, ...]
    spec: ConfigFile
    models: dict[str, tuple[str, ...]]
    base_dir: str = "."
    rules: tuple[Any, ...] = ()
    roles: dict[str, Any] = field(default_factory=dict)
    agents: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    providers: dict[str, Any] = field(default_factory=dict)
    """Live provider adapters by name, bound by the app after loading (empty in a pure load)."""
    redactor: Redactor = PATTERNS_ONLY
    """Masks this config's secrets (and the process's) in upstream text: set by the app with the adapters."""

    @property
    def deployments(self) -> dict[str, DeploymentSpec]:
        return self.spec.deployments

    @property
    def provider_specs(self) -> dict[str, ProviderSpec]:
        return self.spec.providers
