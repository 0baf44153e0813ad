"""Configuration: YAML files in, one frozen, fully validated :class:`Snapshot` out."""

from router.config.errors import ConfigError
from router.config.loader import load_snapshot
from router.config.snapshot import Snapshot

__all__ = ["ConfigError", "Snapshot", "load_snapshot"]
