"""The contestants: how to start each one, one process / one worker, pointed at the upstream's root for a mode
(``http://host:port/<mode>``: OpenAI-format providers take ``<root>/v1``, Anthropic-format ones ``<root>``)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Server, free_port, pinned

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
LITELLM_VENV = BENCH_DIR / ".venv-litellm"
LITELLM_VERSION = "1.100.5"
AGENT_KEYS = ["bench-key-coder-1", "bench-key-coder-2", "bench-key-coder-3"]
"""Keys of agents in bench/config.yaml (role coder); requests rotate over them (as Bearer or ``x-api-key``)."""

DIRECT, PASSTHROUGH, ROUTER, LITELLM = "upstream", "passthrough", "agent-router", "litellm"
OWN_PASSTHROUGH = "passthrough-own"
"""The pass-through rebuilt on the router's own hot-path parts (plain ASGI + the providers' aiohttp session): the
floor for a hop on exactly the router's stack, shown beside the reference floor (Starlette + aiohttp) the targets
use."""


@dataclass(frozen=True)
class Contestant:
    name: str
    keys: tuple[str, ...] = ()
    """Bearer keys the load generator sends."""


def start_contestant(name: str, upstream_root: str, workdir: Path, cpu: int | None) -> Server:
    """Start ``name`` against ``upstream_root`` (one mode's root on the fake upstream) and wait until it answers
    ``/readyz``."""
    upstream_url = upstream_root + "/v1"
    port = free_port()
    log = workdir / f"{name}.log"
    if name in (PASSTHROUGH, OWN_PASSTHROUGH):
        argv = [sys.executable, "-m", "bench.passthrough", "--port", str(port), "--upstream", upstream_root,
                "--stack", "own" if name == OWN_PASSTHROUGH else "starlette"]
        return Server(name, pinned(cpu, argv), port, "/readyz", env={"PYTHONPATH": str(ROOT)}, log_path=log).start()
    if name == ROUTER:
        rundir = workdir / f"router-{port}"
        rundir.mkdir()
        argv = [sys.executable, "-m", "router", "serve", "--config", str(BENCH_DIR / "config.yaml"),
                "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        env = {"BENCH_UPSTREAM_URL": upstream_url, "BENCH_ANTHROPIC_URL": upstream_root,
               "AGENT_ROUTER_DATABASE_URL": f"sqlite:///{rundir / 'ledger.db'}"}
        return Server(name, pinned(cpu, argv), port, "/readyz", env=env, log_path=log).start()
    if name == LITELLM:
        config = workdir / f"litellm-{port}.yaml"
        config.write_text(litellm_config(upstream_root))
        argv = [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1",
                "--port", str(port), "--num_workers", "1"]
        env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False", "LITELLM_LOG": "ERROR",
               "DISABLE_SCHEMA_UPDATE": "True", "NO_DOCS": "True"}
        return Server(name, pinned(cpu, argv), port, "/health/readiness", env=env, log_path=log).start(timeout=120)
    raise ValueError(f"unknown contestant {name}")


def litellm_config(upstream_root: str) -> str:
    """``coder`` and ``codex-coder`` (the Responses modes) on the OpenAI-format upstream; ``claude-coder`` (the
    Messages modes) on the Anthropic-format one, whose ``api_base`` is the root without ``/v1``, as for
    api.anthropic.com."""
    return f"""model_list:
  - model_name: coder
    litellm_params:
      model: openai/up-big
      api_base: {upstream_root}/v1
      api_key: sk-bench-upstream
  - model_name: codex-coder
    litellm_params:
      model: openai/up-codex
      api_base: {upstream_root}/v1
      api_key: sk-bench-upstream
  - model_name: claude-coder
    litellm_params:
      model: anthropic/up-claude
      api_base: {upstream_root}
      api_key: sk-bench-upstream
litellm_settings:
  telemetry: false
  drop_params: true
"""


def ensure_litellm() -> Path:
    """Install ``litellm[proxy]`` into its own venv (bench/.venv-litellm) once; return its ``litellm`` script."""
    script = LITELLM_VENV / "bin" / "litellm"
    marker = LITELLM_VENV / f".installed-{LITELLM_VERSION}"
    if script.exists() and marker.exists():
        return script
    print(f"installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV} (once; a few minutes)...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
    pip = [str(LITELLM_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, f"litellm[proxy]=={LITELLM_VERSION}"], check=True)
    marker.write_text("ok\n")
    return script
