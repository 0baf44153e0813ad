"""Model facts (prices, context windows, capabilities) from the price map the litellm package ships.

The JSON file is read from litellm's installed package folder without importing litellm (an import costs
seconds and hundreds of MB) and without any network fetch. Loaded once, on first use. A deployment's own
config (prices, context_window, supports) always wins over what is found here.

Parsing the whole map costs 20-50 ms and about 7 MB that the process keeps, so a model the file does not even
mention (a self-hosted or private model name) is answered "unknown" from a search of the raw file instead;
a router whose models are all such names never parses it.
"""

from __future__ import annotations

import importlib.util
import logging
import mmap
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from router.config.schema import DeploymentSpec

log = logging.getLogger("agent_router.catalog")

PRICE_MAP_FILE = "model_prices_and_context_window_backup.json"
_ESCAPE = re.compile(rb"\\[u/]")
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
    cache_write_cost_per_token: float | None = None
    """Prompt-cache writes (Anthropic's cache creation, 1.25x input for the 5-minute cache); input price if unknown."""
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


def _price_map_path() -> Path | None:
    folder = litellm_package_dir()
    return folder / PRICE_MAP_FILE if folder else None


def _surely_absent(keys: list[str]) -> bool:
    """True when none of ``keys`` appears anywhere in the price map file as a JSON string, in any letter case:
    then none is one of its model names, and the file need not be parsed to know it.

    Only said of printable ASCII keys without quotes or backslashes, in a file without the escapes (``\\u``,
    ``\\/``) that could spell such a key differently; anything else is "maybe" (False), and the map is parsed."""
    if not all(key.isascii() and key.isprintable() and '"' not in key and "\\" not in key for key in keys):
        return False
    path = _price_map_path()
    if path is None:
        return False
    quoted = re.compile(b'"(?:' + b"|".join(re.escape(key.encode()) for key in keys) + b')"', re.IGNORECASE)
    try:
        with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as text:
            return quoted.search(text) is None and _ESCAPE.search(text) is None
    except (OSError, ValueError):  # unreadable or empty: parsing it will say so
        return False


def _load() -> dict[str, dict[str, Any]]:
    global _entries
    with _lock:
        if _entries is None:
            path = _price_map_path()
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


_absent: set[str] = set()
"""Keys a search of the file found nowhere in it (meaningful only while the map is not parsed)."""


def prefetch(models: Iterable[str]) -> None:
    """Settle for all ``models`` at once (a config's deployments) what the map knows of them: one search of the
    file when it mentions none of them, else the parse that their lookups would need anyway. Called at config
    load, so that no request pays for either."""
    if _entries is not None:
        return
    keys = sorted({key for model in models for key in _candidates(model)} - _absent)
    if not keys:
        return
    if _surely_absent(keys):
        _absent.update(keys)
    else:
        _load()


@lru_cache(maxsize=4096)
def lookup(model: str) -> tuple[str, dict[str, Any]] | None:
    candidates = _candidates(model)
    if _entries is None and (_absent.issuperset(candidates) or _surely_absent(candidates)):
        return None
    entries = _load()
    for key in candidates:
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
        cache_write_cost_per_token=price(prices.cache_write_per_million if prices else None,
                                         "cache_creation_input_token_cost"),
        supports_tools=capability(supports.tools, "supports_function_calling"),
        supports_parallel_tool_calls=capability(supports.parallel_tool_calls, "supports_parallel_function_calling"),
        supports_json_mode=capability(supports.json_mode, "supports_response_schema"),
        supports_vision=capability(supports.vision, "supports_vision"),
        source=source,
    )
