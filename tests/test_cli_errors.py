"""The CLI as a new user meets it: one-line errors for bad settings, read-only commands that never invent an
empty database, ``--version``, help with defaults, and what ``serve`` says it serves."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.harness import RouterProcess, free_port, wait_until
from tests.test_keys_cli import USER, clean_env

READ_ONLY = [["usage", "report"], ["audit", "verify"], ["audit", "list"], ["keys", "list"],
             ["keys", "revoke", "key_abc"]]


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "router", *args], cwd=cwd, env=clean_env(**env),
                          capture_output=True, text=True, timeout=60)


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and not result.stdout
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("agent-router: ")
    return line


@pytest.mark.parametrize("command", READ_ONLY, ids=" ".join)
def test_read_only_commands_refuse_a_database_that_does_not_exist(tmp_path: Path, command: list[str]) -> None:
    line = one_line_error(cli(*command, cwd=tmp_path), 1)
    assert f"SQLite file {tmp_path / 'agent-router.db'} does not exist" in line
    assert list(tmp_path.iterdir()) == [], "nothing may be created"
    elsewhere = tmp_path / "sub" / "records.db"
    line = one_line_error(cli(*command, f"--database-url=sqlite:///{elsewhere}", cwd=tmp_path), 1)
    assert str(elsewhere) in line and not elsewhere.parent.exists()


def test_an_unreachable_postgresql_is_one_line_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/nothing"
    for command in [*READ_ONLY[:4], ["serve", "--port", str(free_port())]]:
        line = one_line_error(cli(*command, cwd=tmp_path, AGENT_ROUTER_DATABASE_URL=url), 1)
        assert "PostgreSQL at postgresql://***@127.0.0.1" in line and "hunter2" not in line


def test_read_only_commands_say_which_database_they_read(tmp_path: Path) -> None:
    database = tmp_path / "records.db"
    assert cli("keys", "create", "--agent", "demo", "--role", "default", f"--database-url=sqlite:///{database}",
               cwd=tmp_path).returncode == 0
    for command in READ_ONLY[:4]:
        result = cli(*command, f"--database-url=sqlite:///{database}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert f"reading SQLite file {database}" in result.stderr and "reading" not in result.stdout
    verified = cli("audit", "verify", cwd=tmp_path, AGENT_ROUTER_DATABASE_URL=f"sqlite:///{database}")
    assert verified.stdout.startswith("audit chain intact")


@pytest.mark.parametrize(("args", "env", "needle"), [
    (["usage", "report", "--database-url", "mysql://root:s3cret@db/x"], {}, "invalid --database-url 'mysql://***@db/x'"),
    (["audit", "verify"], {"AGENT_ROUTER_DATABASE_URL": "mysql://root:s3cret@db/x"},
     "invalid AGENT_ROUTER_DATABASE_URL 'mysql://***@db/x'"),
    (["serve"], {"AGENT_ROUTER_PORT": "abc"}, "invalid AGENT_ROUTER_PORT 'abc'"),
    (["serve", "--port", "70000"], {}, "invalid --port '70000'"),
    (["serve", "--log-level", "verbose"], {}, "invalid --log-level 'verbose': use one of critical, error"),
    (["keys", "list"], {"AGENT_ROUTER_LOG_LEVEL": "loud"}, "invalid AGENT_ROUTER_LOG_LEVEL 'loud'"),
    (["keys", "create", "--agent", "a", "--role", "default", "--database-url", "mongodb://x"], {},
     "unsupported database URL scheme 'mongodb'"),
], ids=["cli-url", "env-url", "env-port", "cli-port", "cli-log-level", "env-log-level", "create-url"])
def test_bad_settings_are_one_line_errors_naming_the_setting(tmp_path: Path, args: list[str], env: dict[str, str],
                                                              needle: str) -> None:
    line = one_line_error(cli(*args, cwd=tmp_path, **env), 2)
    assert needle in line and "s3cret" not in line
    assert list(tmp_path.iterdir()) == []


def test_version_and_serve_help_with_defaults(tmp_path: Path) -> None:
    version = cli("--version", cwd=tmp_path)
    assert version.returncode == 0 and re.fullmatch(r"agent-router \d+\.\d+\.\d+\S*\n", version.stdout)
    help_text = " ".join(cli("serve", "--help", cwd=tmp_path).stdout.split())
    for needle in ("--host HOST", "else 127.0.0.1", "--port PORT", "else 8080", "--log-level", "else info",
                   "$AGENT_ROUTER_CONFIG", "--workers"):
        assert needle in help_text, needle


def test_serve_says_what_it_serves_and_how_to_get_a_first_key(tmp_path: Path) -> None:
    router = RouterProcess(None)
    router.env = clean_env()  # the built-in default config and ./agent-router.db
    router.start()
    try:
        assert wait_until(lambda: "create a first one with" in router.output(), timeout=5), router.output()
        log = router.output()
        assert f"serving http://127.0.0.1:{router.port}" in log and "config:   built-in default" in log
        assert f"database: SQLite file {router.workdir / 'agent-router.db'}" in log and "models:   mock" in log
        command = log.split("create a first one with:\n", 1)[1].splitlines()[0].strip()
        assert command.startswith("agent-router keys create ")
        created = cli(*shlex.split(command)[1:], cwd=tmp_path)  # from another directory: it still works
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip()
        assert wait_until(lambda: httpx.post(f"{router.url}/v1/chat/completions", json={"model": "mock",
                          "messages": USER}, headers={"x-api-key": key}).status_code == 200, timeout=5)
    finally:
        router.stop()
    assert router.output().count("serving http://") == 1
