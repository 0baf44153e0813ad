"""litellm's price map is parsed only when a configured model may be in it: a search of the raw file answers
"unknown" for the others, and must never miss a model the map does know."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from router.model_catalog import _price_map_path, _surely_absent

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def price_map_keys() -> list[str]:
    path = _price_map_path()
    if path is None:
        pytest.skip("litellm is not installed")
    return [key.lower() for key in orjson.loads(path.read_bytes()) if key != "sample_spec"]


def test_the_raw_search_finds_every_model_of_the_map(price_map_keys: list[str]) -> None:
    path = _price_map_path()
    assert path is not None
    spelled = set(re.findall(rb'"((?:[^"\\]|\\.)*)"', path.read_bytes().lower()))  # its JSON strings
    assert all(key.encode() in spelled for key in price_map_keys)  # every name is in the text as it is looked up
    for key in price_map_keys[::97]:
        assert not _surely_absent([key]), key
    assert not _surely_absent(["GPT-4O"])  # any letter case, as lookups are
    assert _surely_absent(["my-private-model", "up-big"])
    assert not _surely_absent(['odd"name']) and not _surely_absent(["ünïcode"])  # not claimed: parsed instead


def test_an_unmentioned_model_does_not_parse_the_map() -> None:
    script = """
import router.model_catalog as catalog
catalog.prefetch(["my-private-model", "corp/up-big"])  # as a config load does
assert catalog._entries is None, "parsed for models it does not mention"
assert catalog.lookup("my-private-model") is None and catalog.lookup("corp/up-big") is None
assert catalog.lookup("other-private-model") is None and catalog._entries is None
catalog.prefetch(["up-small", "openai/gpt-4o"])  # gpt-4o is in it: parsed now rather than by a request
assert catalog._entries is not None
found = catalog.lookup("openai/gpt-4o")
assert found is not None and found[0] == "gpt-4o"
print("ok")
"""
    if _price_map_path() is None:
        pytest.skip("litellm is not installed")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
