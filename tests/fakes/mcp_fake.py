"""Starting the fake MCP server (:mod:`tests.fakes.mcp_server`) from a test, and reading what it received.

``FakeMcpServer.start_http`` runs it as a subprocess on a free loopback port; ``stdio_spec`` gives what a router
config needs to start it itself over stdio. Both record every request to a JSON-lines file the test reads back.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every request recorded in ``path`` so far (none when the server has not written the file yet)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def tool_records(path: str | Path, tool: str | None = None) -> list[dict[str, Any]]:
    """The recorded ``tools/call`` requests, of one tool when ``tool`` is given."""
    return [r for r in read_records(path) if r["method"] == "tools/call" and tool in (None, r["tool"])]


def server_args(transport: str, record: Path, name: str, port: int | None = None,
                json_response: bool = False) -> list[str]:
    args = ["-m", "tests.fakes.mcp_server", "--transport", transport, "--record", str(record), "--name", name]
    args += ["--json-response"] if json_response else []
    return args if port is None else [*args, "--port", str(port)]


def stdio_spec(tmp_path: Path, name: str = "shell") -> dict[str, Any]:
    """What a router config's ``mcp_servers.<name>`` needs to start the fake over stdio, plus ``record`` (the
    record file's path). Absolute paths only: the child may get an empty environment."""
    record = tmp_path / f"mcp-{name}-stdio.jsonl"
    return {"command": sys.executable, "args": server_args("stdio", record, name), "cwd": str(REPO_ROOT),
            "record": str(record)}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class FakeMcpServer:
    """One fake MCP server process serving Streamable HTTP at ``url``; a context manager that stops it."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, record: Path, name: str) -> None:
        self.process = process
        self.port = port
        self.record = record
        self.name = name
        self.url = f"http://127.0.0.1:{port}/mcp"
        self.log = record.with_suffix(".log")
        """The server's own stdout and stderr."""

    @classmethod
    def start_http(cls, tmp_path: Path, name: str = "github", json_response: bool = False) -> FakeMcpServer:
        """Starts the server and returns once it accepts connections; raises if it is not up in 15 s. A port
        taken between choosing and binding it costs one more try."""
        deadline = time.monotonic() + START_TIMEOUT
        for _ in range(3):
            server = cls._spawn(tmp_path, name, _free_port(), json_response)
            while not _answers(server.port):
                if server.process.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            else:
                return server
            server.kill()
            if time.monotonic() > deadline:
                break
        tail = server.log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"fake MCP server {name!r} did not start on 127.0.0.1:{server.port}: {tail}")

    @classmethod
    def _spawn(cls, tmp_path: Path, name: str, port: int, json_response: bool = False) -> FakeMcpServer:
        record = tmp_path / f"mcp-{name}-http.jsonl"
        with open(record.with_suffix(".log"), "ab") as log:
            process = subprocess.Popen([sys.executable, *server_args("http", record, name, port, json_response)],
                                       cwd=REPO_ROOT,
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        return cls(process, port, record, name)

    def calls(self) -> list[dict[str, Any]]:
        """Every request and notification the server has received, oldest first."""
        return read_records(self.record)

    def tool_calls(self, tool: str | None = None) -> list[dict[str, Any]]:
        return tool_records(self.record, tool)

    def kill(self) -> None:
        """SIGKILL, as a crash would look to the router."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in 5 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> FakeMcpServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
