"""Drive one contestant at a fixed concurrency for a fixed time: wrk with :file:`post.lua`, or the pure-Python
generator in :mod:`bench.pyload` when wrk is missing. Both report the same :class:`LoadResult`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.procs import pinned

LUA = Path(__file__).with_name("post.lua")


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_load(tool: str, url: str, body_file: Path, keys: list[str], concurrency: int, seconds: float,
             cpu: int | None, wire: str = "chat") -> LoadResult:
    """``wire`` is ``chat`` or ``responses`` (keys sent as Bearer) or ``messages`` (as ``x-api-key``, with
    ``anthropic-version``)."""
    if tool == "wrk":
        return _wrk(url, body_file, keys, concurrency, seconds, cpu, wire)
    return _python(url, body_file, keys, concurrency, seconds, cpu, wire)


def _wrk(url: str, body_file: Path, keys: list[str], concurrency: int, seconds: float, cpu: int | None,
         wire: str) -> LoadResult:
    duration = f"{max(1, round(seconds))}s"  # wrk takes whole seconds
    argv = ["wrk", "-t1", f"-c{concurrency}", f"-d{duration}", "--timeout", "10s", "-s", str(LUA), url, "--",
            str(body_file), ",".join(keys), wire]
    out = subprocess.run(pinned(cpu, argv), capture_output=True, text=True, timeout=seconds + 30)
    match = re.search(r"^BENCH_RESULT (.*)$", out.stdout, re.MULTILINE)
    if out.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-500:]} {out.stderr[-500:]}")
    fields = {key: int(value) for key, value in (item.split("=") for item in match.group(1).split())}
    errors = sum(fields[name] for name in ("connect", "read", "write", "status", "timeout"))
    return LoadResult(fields["requests"], fields["duration_us"] / 1e6, fields["p50_us"] / 1000,
                      fields["p99_us"] / 1000, errors)


def _python(url: str, body_file: Path, keys: list[str], concurrency: int, seconds: float,
            cpu: int | None, wire: str) -> LoadResult:
    argv = [sys.executable, "-m", "bench.pyload", "--url", url, "--body", str(body_file), "--keys", ",".join(keys),
            "--wire", wire, "-c", str(concurrency), "-d", str(seconds)]
    out = subprocess.run(pinned(cpu, argv), capture_output=True, text=True, timeout=seconds + 30,
                         cwd=Path(__file__).parent.parent)
    if out.returncode != 0:
        raise RuntimeError(f"python load generator failed ({out.returncode}): {out.stderr[-800:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return LoadResult(data["requests"], data["seconds"], data["p50_ms"], data["p99_ms"], data["errors"])
