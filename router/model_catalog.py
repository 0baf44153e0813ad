"""Model facts (prices, context windows, capabilities) from the price map the litellm package ships.

The JSON file is read from litellm's installed package folder without importing litellm (an import costs
seconds and hundreds of MB) and without any network fetch. Loaded once, on first use. A deployment's own
config (prices, context_window, supports) always wins over what is found here.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from router.config.schema import DeploymentSpec

log = logging.getLogger("agent_router.catalog")

PRICE_MAP_FILE = "model_prices_and_context_window_backup.json"
_lock = threading.Lock()
_entries: dict[str, dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What is known of one deployment's model; ``None`` means unknown, never zero."""

    context_window: int | None = None
    max_output_tokens: int | None = None
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    cached_input_cost_per_token: float | None = None
    supports_tools: bool | None = None
    supports_parallel_tool_calls: bool | None = None
    supports_json_mode: bool | None = None
    supports_vision: bool | None = None
    source: str = "unknown"
    """'config', 'litellm:<key>' or 'unknown'."""


def litellm_package_dir() -> Path | None:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _load() -> dict[str, dict[str, Any]]:
    global _entries
    with _lock:
        if _entries is None:
            folder = litellm_package_dir()
            path = folder / PRICE_MAP_FILE if folder else None
            try:
                data = orjson.loads(path.read_bytes()) if path else {}
            except (OSError, orjson.JSONDecodeError) as exc:
                log.warning("litellm price map unreadable (%s); prices and windows will be unknown", exc)
                data = {}
            data.pop("sample_spec", None)
            _entries = {key.lower(): value for key, value in data.items() if isinstance(value, dict)}
        return _entries


def _candidates(model: str) -> list[str]:
    """Keys to try: the name as given, then without a provider prefix (``anthropic/claude-x`` -> ``claude-x``)."""
    name = model.lower()
    keys = [name]
    if "/" in name:
        keys.append(name.split("/", 1)[1])
        keys.append(name.rsplit("/", 1)[1])
    return keys


@lru_cache(maxsize=4096)
def lookup(model: str) -> tuple[str, dict[str, Any]] | None:
    entries = _load()
    for key in _candidates(model):
        entry = entries.get(key)
        if entry is not None:
            return key, entry
    return None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


_INFO_CACHE_SIZE = 1024
_infos: dict[int, tuple[DeploymentSpec, ModelInfo]] = {}


def model_info(deployment: DeploymentSpec) -> ModelInfo:
    """Merge the deployment's config over litellm's entry for its upstream model.

    Cached per deployment object (specs are frozen, and a reload builds new ones, so a changed price is
    never served from the cache); the entry keeps its spec alive so that its id cannot be reused.
    """
    cached = _infos.get(id(deployment))
    if cached is not None and cached[0] is deployment:
        return cached[1]
    info = _merge(deployment)
    if len(_infos) >= _INFO_CACHE_SIZE:
        _infos.clear()
    _infos[id(deployment)] = (deployment, info)
    return info


def _merge(deployment: DeploymentSpec) -> ModelInfo:
    found = lookup(deployment.model)
    entry = found[1] if found else {}
    prices = deployment.prices
    per_token = 1_000_000.0
    supports = deployment.supports

    def price(configured: float | None, key: str) -> float | None:
        return configured / per_token if configured is not None else _float(entry.get(key))

    def capability(configured: bool | None, key: str) -> bool | None:
        if configured is not None:
            return configured
        value = entry.get(key)
        return bool(value) if isinstance(value, bool) else None

    source = f"litellm:{found[0]}" if found else "unknown"
    if prices is not None or deployment.context_window is not None:
        source = "config" if not found else f"config+{source}"
    return ModelInfo(
        context_window=deployment.context_window or _int(entry.get("max_input_tokens") or entry.get("max_tokens")),
        max_output_tokens=deployment.max_output_tokens or _int(entry.get("max_output_tokens")),
        input_cost_per_token=price(prices.input_per_million if prices else None, "input_cost_per_token"),
        output_cost_per_token=price(prices.output_per_million if prices else None, "output_cost_per_token"),
        cached_input_cost_per_token=price(prices.cached_input_per_million if prices else None,
                                          "cache_read_input_token_cost"),
        supports_tools=capability(supports.tools, "supports_function_calling"),
        supports_parallel_tool_calls=capability(supports.parallel_tool_calls, "supports_parallel_function_calling"),
        supports_json_mode=capability(supports.json_mode, "supports_response_schema"),
        supports_vision=capability(supports.vision, "supports_vision"),
        source=source,
    )
