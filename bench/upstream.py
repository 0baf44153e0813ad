"""The fake upstream: nginx answering canned bodies (fast enough never to be the bottleneck), or the pure-Python
fallback in :mod:`bench.fake_upstream` when nginx is not installed.

Both serve every mode of :mod:`bench.modes` under its own root: ``POST /plain/v1/chat/completions`` (a
completion), ``/sse/v1/chat/completions`` (an SSE stream), ``/messages/v1/messages`` (an Anthropic message),
``/messages-sse/v1/messages`` (an Anthropic SSE stream), ``/responses/v1/responses`` (a Responses ``Response``) and
``/responses-sse/v1/responses`` (a Responses event stream). A contestant is pointed at ``/<mode>/v1`` as its OpenAI
base URL, or at ``/<mode>`` as its Anthropic one.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from bench.modes import MODES
from bench.procs import Server, free_port, pinned


def nginx_available() -> bool:
    return shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()


def _nginx_string(body: bytes) -> str:
    text = body.decode()
    if "$" in text:
        raise ValueError("nginx would read '$' as a variable")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


_PIECE = 3000
"""nginx refuses a config parameter over 4 KB, so a longer answer is set in pieces and returned joined."""


def _location(name: str, answer_type: str, body: bytes) -> str:
    pieces = [body[i:i + _PIECE] for i in range(0, len(body), _PIECE)]
    if len(pieces) == 1:
        return f"        location /{name}/ {{ default_type {answer_type}; return 200 {_nginx_string(body)}; }}"
    sets = " ".join(f"set $answer{i} {_nginx_string(piece)};" for i, piece in enumerate(pieces))
    joined = "".join(f"$answer{i}" for i in range(len(pieces)))
    return f"        location /{name}/ {{ default_type {answer_type}; {sets} return 200 \"{joined}\"; }}"


def _locations() -> str:
    return "\n".join(_location(mode.name, mode.answer_type, mode.answer()) for mode in MODES.values())


def nginx_config(port: int, workdir: Path) -> str:
    return f"""worker_processes 1;
daemon off;
master_process on;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_buffer_size 64k;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
{_locations()}
        location = /readyz {{ default_type application/json; return 200 '{{"status":"ready"}}'; }}
    }}
}}
"""


def start_upstream(kind: str, workdir: Path, cpu: int | None) -> Server:
    """``kind`` is ``nginx`` or ``python``; the server is pinned to ``cpu``."""
    port = free_port()
    if kind == "nginx":
        conf = workdir / "nginx.conf"
        conf.write_text(nginx_config(port, workdir))
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        argv = [binary, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "nginx-error.log")]
    else:
        argv = [sys.executable, "-m", "bench.fake_upstream", "--port", str(port)]
    server = Server(f"upstream ({kind})", pinned(cpu, argv), port, "/readyz",
                    log_path=workdir / f"upstream-{kind}.log")
    return server.start(timeout=20)
