"""The audit chain is never silently re-sealed: a cut head is an alarm, an HMAC key makes re-chaining need the key,
and anchors published outside the database catch a rewrite or a truncation by someone who holds everything else.

Decisions come from real requests through the router; tampering is done the way an intruder with write access
to the database would, with SQL (recomputing hashes where that helps them), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from router.ledger.audit_chain import row_hash
from tests.backing_services import REDIS_URL, redis_prefix
from tests.harness import wait_until
from tests.ledger_helpers import (  # noqa: F401 (fixtures)
    db_fixture,
    ledger_config,
    module_db_fixture,
    query,
)
from tests.policy_helpers import ROLES
from tests.test_audit import AGENTS, make_decisions

ADMIN = "admin-secret"
KEY = "audit-key-for-tests-0123456789"
OTHER_KEY = "another-audit-key-9876543210"


def verify(db: str, *args: str, key: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """``agent-router audit verify`` as an operator runs it, with the audit key in the environment or not."""
    environment = {**os.environ, "AGENT_ROUTER_DATABASE_URL": db, **env}
    environment.pop("AGENT_ROUTER_AUDIT_KEY", None)
    if key is not None:
        environment["AGENT_ROUTER_AUDIT_KEY"] = key
    return subprocess.run([sys.executable, "-m", "router", "audit", "verify", *args], env=environment,
                          capture_output=True, text=True, timeout=60)


def events(db: str) -> list[dict[str, Any]]:
    return query(db, "SELECT * FROM audit_events ORDER BY seq")


def start(start_router: Any, upstream: Any, db: str, **settings: Any) -> Any:
    return start_router(ledger_config(upstream.openai_base_url, ROLES + AGENTS), database_url=db,
                        admin_key=ADMIN, **settings)


def rechain_plain(db: str, start_seq: int, action: str = "allowed") -> None:
    """An intruder's rewrite: row ``start_seq`` gets ``action``, and it and every later row get fresh plain
    sha256 hashes (key id cleared), the head moved to match."""
    rows = events(db)
    prev = rows[start_seq - 2]["hash"] if start_seq > 1 else "0" * 64
    for row in rows[start_seq - 1:]:
        if row["seq"] == start_seq:
            row["action"] = action
        digest = row_hash(prev, {**row, "ts": float(row["ts"])})
        query(db, "UPDATE audit_events SET action = ?, key_id = NULL, prev_hash = ?, hash = ? WHERE seq = ?",
              (row["action"], prev, digest, row["seq"]))
        prev = digest
    query(db, "UPDATE audit_head SET hash = ? WHERE id = 1", (prev,))


def truncate(db: str, keep: int, *, head: bool) -> None:
    """Delete every row after ``keep``; with ``head``, point the head at the new last row (else delete it)."""
    query(db, "DELETE FROM audit_events WHERE seq > ?", (keep,))
    if head:
        last = events(db)[-1]
        query(db, "UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (last["seq"], last["hash"]))
    else:
        query(db, "DELETE FROM audit_head")


def readyz(router: Any) -> dict[str, Any]:
    """The checks are shown to the admin key only."""
    with httpx.Client(base_url=router.url, timeout=10) as http:
        body: dict[str, Any] = http.get("/readyz", headers={"x-admin-key": router.settings.admin_key}).json()
        return body


# -- the head: a cut is an alarm, never re-sealed ----------------------------------------------------------------

def test_a_tail_deleted_with_its_head_fails_verify_and_the_next_write_does_not_seal_it(
        upstream: Any, start_router: Any, db: str, caplog: pytest.LogCaptureFixture) -> None:
    first = start(start_router, upstream, db, ledger_flush_interval=30)
    make_decisions(first, upstream)
    first.stop()
    total = len(events(db))
    truncate(db, total - 3, head=False)
    cut = verify(db)
    assert cut.returncode == 1, cut.stdout + cut.stderr
    assert f"the chain head is missing while the table ends at seq {total - 3}" in cut.stderr

    caplog.set_level(logging.ERROR, logger="agent_router.audit")
    router = start(start_router, upstream, db, ledger_flush_interval=0.05)
    ready = readyz(router)
    assert ready["status"] == "degraded" and ready["checks"]["audit"].startswith("degraded: tampered: the chain "
                                                                                 "head is missing"), ready
    assert any("TAMPERED" in record.getMessage() for record in caplog.records)
    make_decisions(router, upstream)
    assert wait_until(lambda: any(row["action"] == "chain_break" for row in events(db)))
    rows = events(db)
    cut_row = next(row for row in rows if row["action"] == "chain_break")
    assert cut_row["seq"] == total - 2 and cut_row["stage"] == "audit"  # chained on top of the last row left
    assert json.loads(cut_row["extra"])["last_seq"] == total - 3
    assert [row["seq"] for row in rows] == list(range(1, len(rows) + 1))  # nothing lost, no gap
    assert readyz(router)["checks"]["audit"].startswith("degraded: tampered: a chain break is recorded")
    still = verify(db)
    assert still.returncode == 1, still.stdout + still.stderr
    assert f"seq {total - 2}: a chain break recorded by the router" in still.stderr

    with router.http(headers={"authorization": f"Bearer {ADMIN}"}) as http:
        assert http.post("/admin/audit/acknowledge", json={"seq": 1, "note": "x"}).status_code == 404
        acked = http.post("/admin/audit/acknowledge", json={"seq": total - 2, "note": "tail lost in restore #12"})
        assert acked.status_code == 200, acked.text
        assert readyz(router)["checks"]["audit"] == "ok"
        assert http.get("/admin/audit/verify").json()["ok"] is True
    router.stop()
    after = verify(db)
    assert after.returncode == 0, after.stdout + after.stderr
    assert f"seq {total - 2}: chain break (the chain head is missing" in after.stdout  # visible for ever


def test_a_head_pointing_at_a_replaced_last_row_is_caught(upstream: Any, start_router: Any, db: str) -> None:
    router = start(start_router, upstream, db, ledger_flush_interval=30)
    make_decisions(router, upstream)
    router.stop()
    query(db, "UPDATE audit_head SET hash = ? WHERE id = 1", ("f" * 64,))
    result = verify(db)
    assert result.returncode == 1 and "the chain head's hash is not the hash of the last row" in result.stderr


# -- HMAC: re-chaining needs the key ----------------------------------------------------------------------------

def test_a_keyed_chain_verifies_with_its_key_only_and_never_stores_it(
        upstream: Any, start_router: Any, db: str, tmp_path: Path) -> None:
    router = start(start_router, upstream, db, ledger_flush_interval=30, audit_key=KEY)
    make_decisions(router, upstream)
    router.stop()
    rows = events(db)
    key_ids = {row["key_id"] for row in rows}
    assert len(key_ids) == 1 and None not in key_ids
    assert KEY not in json.dumps(rows, default=str)

    ok = verify(db, key=KEY)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"{len(rows)} events verified" in ok.stdout and f"HMAC-SHA256, key id {key_ids.pop()}" in ok.stdout
    without = verify(db)
    assert without.returncode == 3 and "NOT VERIFIED" in without.stderr and "intact" not in without.stdout
    wrong = verify(db, key=OTHER_KEY)
    assert wrong.returncode == 3 and "NOT VERIFIED" in wrong.stderr, wrong.stderr
    key_file = tmp_path / "audit.key"
    key_file.write_text(KEY + "\n")
    assert verify(db, "--key-file", str(key_file)).returncode == 0


def test_rewriting_a_keyed_chain_with_plain_sha256_fails_verify_with_the_key(
        upstream: Any, start_router: Any, db: str) -> None:
    router = start(start_router, upstream, db, ledger_flush_interval=30, audit_key=KEY)
    make_decisions(router, upstream)
    router.stop()
    assert verify(db, key=KEY).returncode == 0

    rechain_plain(db, 2)
    assert verify(db).returncode == 1  # structurally wrong even without the key: plain rows after a keyed one
    tail = verify(db, key=KEY)
    assert tail.returncode == 1 and "seq 2: a plain sha256 row after HMAC-keyed rows" in tail.stderr, tail.stderr

    rechain_plain(db, 1)  # the whole chain, as if it had never been keyed
    whole = verify(db, key=KEY)
    assert whole.returncode == 1 and "no row is HMAC-keyed although a key was given" in whole.stderr, whole.stderr


def test_a_keyed_row_rehashed_without_the_key_is_altered(upstream: Any, start_router: Any, db: str) -> None:
    router = start(start_router, upstream, db, ledger_flush_interval=30, audit_key=KEY)
    make_decisions(router, upstream)
    router.stop()
    row = events(db)[1]
    forged = row_hash(row["prev_hash"], {**row, "action": "allowed", "ts": float(row["ts"])})
    query(db, "UPDATE audit_events SET action = 'allowed', hash = ? WHERE seq = 2", (forged,))
    result = verify(db, key=KEY)
    assert result.returncode == 1 and "seq 2: altered (its contents no longer match its HMAC" in result.stderr


def test_old_plain_rows_still_verify_after_the_key_is_set(upstream: Any, start_router: Any, db: str) -> None:
    plain = start(start_router, upstream, db, ledger_flush_interval=30)
    make_decisions(plain, upstream)
    plain.stop()
    before = len(events(db))
    keyed = start(start_router, upstream, db, ledger_flush_interval=30, audit_key=KEY)
    make_decisions(keyed, upstream)
    keyed.stop()
    total = len(events(db))
    ok = verify(db, key=KEY)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"rows 1..{before} plain sha256" in ok.stdout and f"rows {before + 1}..{total} HMAC-SHA256" in ok.stdout
    assert verify(db).returncode == 3


# -- anchors: the head outside the database ----------------------------------------------------------------------

def test_an_anchor_file_catches_a_truncation_and_a_rewrite_that_fix_up_the_head(
        upstream: Any, start_router: Any, db: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    anchors = tmp_path / "audit-anchors.jsonl"
    caplog.set_level(logging.INFO, logger="agent_router.audit")
    router = start(start_router, upstream, db, ledger_flush_interval=0.05, audit_anchor_interval=0.05,
                   audit_anchor_file=str(anchors))
    make_decisions(router, upstream)

    def anchored_seq() -> int:
        lines = anchors.read_text().splitlines() if anchors.exists() else []
        return int(json.loads(lines[-1])["seq"]) if lines else -1

    assert wait_until(lambda: anchored_seq() == len(events(db)) > 0)
    router.stop()
    total = len(events(db))
    assert anchored_seq() == total
    assert any(f"audit anchor: seq={total} hash=" in record.getMessage() for record in caplog.records)
    ok = verify(db, "--anchor", str(anchors))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "anchors matched" in ok.stdout

    original = events(db)
    rechain_plain(db, 2)  # a consistent rewrite: nothing in the database shows it
    assert verify(db).returncode == 0
    rewritten = verify(db, "--anchor", str(anchors))
    assert rewritten.returncode == 1 and "the chain was rewritten up to here" in rewritten.stderr, rewritten.stderr

    for row in original:
        query(db, "UPDATE audit_events SET action = ?, key_id = ?, prev_hash = ?, hash = ? WHERE seq = ?",
              (row["action"], row["key_id"], row["prev_hash"], row["hash"], row["seq"]))
    query(db, "UPDATE audit_head SET hash = ? WHERE id = 1", (original[-1]["hash"],))
    assert verify(db, "--anchor", str(anchors)).returncode == 0
    truncate(db, 3, head=True)  # a consistent truncation below the last anchor
    assert verify(db).returncode == 0
    backwards = verify(db, "--anchor", str(anchors))
    assert backwards.returncode == 1, backwards.stdout + backwards.stderr
    assert f"the chain ends at seq 3, but seq {total} anchored at" in backwards.stderr

    again = start(start_router, upstream, db, ledger_flush_interval=30, audit_anchor_file=str(anchors))
    assert "the database went backwards" in readyz(again)["checks"]["audit"]
    assert verify(db, "--anchor", str(tmp_path / "missing.jsonl")).returncode == 3


def test_the_anchor_in_redis_catches_a_truncation(upstream: Any, start_router: Any, db: str) -> None:
    with redis_prefix() as prefix:
        router = start(start_router, upstream, db, ledger_flush_interval=0.05, audit_anchor_interval=0.05,
                       redis_url=REDIS_URL, redis_prefix=prefix, audit_key=KEY)
        make_decisions(router, upstream)
        client = redis.Redis.from_url(REDIS_URL)

        def anchored_seq() -> int:
            value = client.get(prefix + "audit:anchor")
            return int(json.loads(value)["seq"]) if value else -1

        assert wait_until(lambda: anchored_seq() == len(events(db)) > 0)
        router.stop()
        client.close()
        ok = verify(db, "--anchor", REDIS_URL, key=KEY, AGENT_ROUTER_REDIS_PREFIX=prefix)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        truncate(db, 2, head=True)
        assert verify(db, key=KEY).returncode == 0  # HMAC alone cannot see a tail cut with the head fixed up
        cut = verify(db, "--anchor", REDIS_URL, key=KEY, AGENT_ROUTER_REDIS_PREFIX=prefix)
        assert cut.returncode == 1 and "rows were deleted" in cut.stderr, cut.stderr


def test_the_head_is_anchored_at_start_and_at_shutdown(upstream: Any, start_router: Any, db: str,
                                                       tmp_path: Path) -> None:
    anchors = tmp_path / "audit-anchors.jsonl"
    router = start(start_router, upstream, db, ledger_flush_interval=30, audit_anchor_interval=3600,
                   audit_anchor_file=str(anchors))
    assert [json.loads(line)["seq"] for line in anchors.read_text().splitlines()] == [0]  # at start: empty chain
    make_decisions(router, upstream)
    router.stop()  # the ledger drains, then the final head is published
    last = json.loads(anchors.read_text().splitlines()[-1])
    rows = events(db)
    assert (last["seq"], last["hash"], last["key_id"]) == (len(rows), rows[-1]["hash"], None)


def test_a_router_without_the_chains_key_says_so(upstream: Any, start_router: Any, db: str) -> None:
    keyed = start(start_router, upstream, db, ledger_flush_interval=30, audit_key=KEY)
    make_decisions(keyed, upstream)
    keyed.stop()
    key_id = events(db)[-1]["key_id"]
    for settings, has in (({}, "no AGENT_ROUTER_AUDIT_KEY"), ({"audit_key": OTHER_KEY}, "key id ")):
        router = start(start_router, upstream, db, ledger_flush_interval=30, **settings)
        check = readyz(router)["checks"]["audit"]
        assert check.startswith(f"degraded: key: the chain's last row is sealed with key id {key_id} but this "
                                f"router has {has}"), check
        assert KEY not in check and OTHER_KEY not in check
        router.stop()
