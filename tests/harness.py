"""Start the real router for a test: in a thread (fast) or as its own process (signals, CLI, fleets)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import uvicorn

from router.app import create_app
from router.http_connection import connection_limits, protocol_factory
from router.settings import Settings


def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; bounded, never hangs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(text: str, directory: str | None = None, name: str = "config.yaml") -> Path:
    folder = Path(directory or tempfile.mkdtemp(prefix="agent-router-test-"))
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


class RouterServer:
    """The router app served by uvicorn on a free loopback port, in a background thread."""

    def __init__(self, config_path: Path | str | None, *, wrap: Callable[[Any], Any] | None = None,
                 root_path: str = "", **settings: Any) -> None:
        """``wrap(app)`` -> the ASGI app uvicorn serves (an app that mounts the router, say); ``root_path`` is
        uvicorn's ``--root-path`` (a proxy in front strips that prefix)."""
        self.port = free_port()
        workdir = Path(tempfile.mkdtemp(prefix="agent-router-run-"))
        defaults: dict[str, Any] = {"database_url": f"sqlite:///{workdir / 'ledger.db'}", "watch_config": False}
        defaults.update(settings)
        self.settings = Settings(config=str(config_path) if config_path else None, host="127.0.0.1",
                                 port=self.port, **defaults)
        self.app = create_app(self.settings)
        served = wrap(self.app) if wrap is not None else self.app
        config = uvicorn.Config(served, host="127.0.0.1", port=self.port, log_level="warning", loop="asyncio",
                                http=protocol_factory(connection_limits(self.settings)), lifespan="on",
                                timeout_graceful_shutdown=5, root_path=root_path)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="router", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state(self) -> Any:
        return self.app.state.router

    def start(self) -> RouterServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("router did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    def client(self, api_key: str = "test-key", **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, timeout=30, **kwargs)

    def http(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def anthropic(self, api_key: str = "test-key", **kwargs: Any) -> anthropic.Anthropic:
        """The official anthropic client pointed at the router (``ANTHROPIC_BASE_URL`` is the root, not ``/v1``)."""
        return anthropic.Anthropic(base_url=self.url, api_key=api_key, max_retries=0, timeout=30, **kwargs)


class RouterProcess:
    """``agent-router serve`` as a child process, for signals, the CLI and several replicas."""

    def __init__(self, config_path: Path | str | None, env: dict[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="agent-router-proc-"))
        self.env = {**os.environ, "AGENT_ROUTER_DATABASE_URL": f"sqlite:///{self.workdir / 'ledger.db'}",
                    **(env or {})}
        self.args = [sys.executable, "-m", "router", "serve", "--port", str(self.port), "--host", "127.0.0.1"]
        if config_path:
            self.args += ["--config", str(config_path)]
        self.args += args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.workdir / "router.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> RouterProcess:
        self.proc = subprocess.Popen(self.args, env=self.env, cwd=self.workdir, stdout=self.log.open("wb"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"router exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"router did not become healthy:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 20) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def client(self, api_key: str = "test-key") -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, timeout=30)
