"""Secrets never travel back: an upstream that echoes the router's own key on a 401 has that text masked in
the agent's error, the usage rows, the audit trail and the log lines.

The fake upstream answers 401 quoting the Authorization header, the key and every request header it got; the
router is driven with the openai SDK and raw httpx, streamed and not, and everything it wrote is read back.
"""

from __future__ import annotations

import logging
from typing import Any

import openai
import pytest

from router.redact import PATTERNS_ONLY, Redactor
from tests.configs import with_test_identity
from tests.fakes.behaviours import EchoCredentials, Error, Scripted, Text
from tests.ledger_helpers import (  # noqa: F401 (fixtures)
    MESSAGES,
    db_fixture,
    module_db_fixture,
    query,
    usage_rows,
)

SHAPED_KEY = "sk-proj-Q7fLm2Zx9KpR4tWv8Yb3Nc6Hd1Js5Ge0"
PLAIN_KEY = "correct horse battery staple"
"""A key with no credential shape: only its configured value can tell it is a secret."""
HEADER_SECRET = "tenant-token-4412-zulu"
ADMIN = "admin-key-for-redaction"


def config(base_url: str) -> str:
    return f"""
providers:
  shaped: {{type: openai, base_url: {base_url}, api_key: {SHAPED_KEY}, timeout: 5}}
  plain:
    type: openai
    base_url: {base_url}
    api_key: "{PLAIN_KEY}"
    headers: {{x-tenant-auth: {HEADER_SECRET}}}
    timeout: 5
deployments:
  first: {{provider: shaped, model: up-shaped}}
  second: {{provider: plain, model: up-plain}}
models:
  both: [first, second]
  plain-only: [second]
{with_test_identity("")}
"""


SECRETS = (SHAPED_KEY, PLAIN_KEY, HEADER_SECRET, ADMIN)


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


@pytest.fixture
def router(upstream: Any, start_router: Any, db: str) -> Any:
    return start_router(config(upstream.openai_base_url), database_url=db, admin_key=ADMIN,
                        ledger_flush_interval=30)


def test_an_upstream_echoing_our_keys_on_a_401_leaks_them_nowhere(router: Any, upstream: Any, db: str,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    upstream.always("up-shaped", EchoCredentials())
    upstream.always("up-plain", EchoCredentials())
    with pytest.raises(openai.APIStatusError) as caught:
        router.client().chat.completions.create(model="both", messages=MESSAGES)
    assert caught.value.status_code == 502
    body = caught.value.response.text
    assert "Incorrect API key provided" in body and "***" in body  # the message survives, the keys do not
    assert_clean(body)
    with router.http() as http:  # streamed: the failure comes before the first event, as a 502 body
        response = http.post("/v1/chat/completions", headers={"authorization": "Bearer test-key"},
                             json={"model": "both", "messages": MESSAGES, "stream": True})
    assert response.status_code == 502
    assert_clean(response.text)
    received = upstream.served("up-plain")[0].headers
    assert received["x-tenant-auth"] == HEADER_SECRET  # the secret really was sent, and echoed
    router.stop()
    rows = usage_rows(db)
    assert len(rows) == 6 and all(row["error"] for row in rows)  # 2 requests: a request row and 2 attempts each
    for row in rows:
        assert_clean(str(row))
    for event in query(db, "SELECT * FROM audit_events"):
        assert_clean(str(event))
    assert caplog.records
    for record in caplog.records:
        assert_clean(record.getMessage() + (record.exc_text or ""))


def test_an_error_event_mid_stream_is_masked_too(router: Any, upstream: Any) -> None:
    leak = {"error": {"message": f"upstream lost auth (Authorization: Bearer {SHAPED_KEY})"}}
    upstream.queue("up-shaped", Scripted(events=[{"id": "c", "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}, leak]))
    with router.http() as http:
        response = http.post("/v1/chat/completions", headers={"authorization": "Bearer test-key"},
                             json={"model": "both", "messages": MESSAGES, "stream": True})
    assert response.status_code == 200 and "upstream lost auth" in response.text
    assert_clean(response.text)


def test_ordinary_upstream_errors_keep_their_words(router: Any, upstream: Any) -> None:
    message = ("The model `meta-llama/Llama-3.1-70B-Instruct-Turbo` does not exist; request "
               "550e8400-e29b-41d4-a716-446655440000, digest "
               "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
    upstream.queue("up-plain", Error(404, {"error": {"message": message}}))
    upstream.queue("up-plain", Text())
    with pytest.raises(openai.APIStatusError) as caught:
        router.client().chat.completions.create(model="plain-only", messages=MESSAGES)
    assert message in caught.value.response.text


@pytest.mark.parametrize("text, kept", [
    ("Authorization: Bearer abc.def-ghi_jkl", "Authorization: Bearer ***"),
    ("x-api-key: sk-ant-api03-AAAAbbbbCCCCdddd1234", "x-api-key: ***"),
    ('{"api_key": "hunter2hunter2"}', '{"api_key": "***"}'),
    ("key sk-abcdefghijklmnop1234 was refused", "key *** was refused"),
    ("router key ar-Zx8Kq1Lm3Np5Rs7Tu9Vw2Xy4Za6Bc8De0Fg2Hi4Jk6", "router key ***"),
    ("token aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC2dE4f was sent", "token *** was sent"),
    ("aws AKIAIOSFODNN7EXAMPLE", "aws ***"),
    ("password=s3cret&user=bob", "password=***&user=bob"),
])
def test_credential_shapes_are_masked(text: str, kept: str) -> None:
    assert PATTERNS_ONLY(text) == kept


@pytest.mark.parametrize("text", [
    "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
    "rate limit reached for gpt-4o-mini-2024-07-18 in organization org-abc on tokens per min",
    "Invalid value for 'tool_choice': 'internationalization_framework' is not a tool",
    "request id 0123456789abcdef0123456789abcdef, chatcmpl-8xYzAbc",
    "the key must be given in the Authorization header",
])
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert PATTERNS_ONLY(text) == text


def test_configured_values_are_masked_wherever_they_appear() -> None:
    redact = Redactor(["correct horse", "abc"])  # too short to mask by value: "abc" is everywhere
    assert redact("got 'correct horse' from abc") == "got '***' from abc"
    assert redact.count == 1


def test_a_redis_password_in_an_exception_never_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    from router.redact import protect_logs, router_redactor
    from router.settings import Settings

    settings = Settings(redis_url="redis://:r3dis-Pass-phrase@127.0.0.1:1/0", admin_key=ADMIN)
    protect_logs(router_redactor(settings, []))
    caplog.set_level(logging.ERROR, logger="agent_router.limits")
    try:
        raise ConnectionError("AUTH r3dis-Pass-phrase refused")
    except ConnectionError:
        logging.getLogger("agent_router.limits").exception("counters down (admin %s)", ADMIN)
    (record,) = caplog.records
    assert "r3dis-Pass-phrase" not in caplog.text and ADMIN not in caplog.text
    assert "r3dis-Pass-phrase" not in (record.exc_text or "") and "***" in record.getMessage()
    protect_logs(PATTERNS_ONLY)


# -- store addresses ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, shown", [
    ("postgresql://app:pa55word@db:5432/ledger", "postgresql://***@db:5432/ledger"),
    ("postgresql://db/ledger?user=app&password=pa55word&sslmode=require",
     "postgresql://db/ledger?user=app&password=***&sslmode=require"),
    ("postgresql://db/ledger?sslpassword=keyPass1&password=pa55word",
     "postgresql://db/ledger?sslpassword=***&password=***"),
    ("postgresql://app:pa/55@word@db/ledger", "postgresql://***@db/ledger"),
    ("host=db user=app password=pa55word dbname=ledger", "host=db user=app password=*** dbname=ledger"),
    ("host=db password = 'pa55 w\\'ord' dbname=ledger", "host=db password = *** dbname=ledger"),
    ("redis://:pa55word@cache:6379/0", "redis://***@cache:6379/0"),
    ("rediss://default:pa55word@cache:6380/0", "rediss://***@cache:6380/0"),
    ("redis://cache:6379/0?password=pa55word", "redis://cache:6379/0?password=***"),
    ("unix://:pa55word@/run/redis.sock?db=1", "unix://***@/run/redis.sock?db=1"),
])
def test_every_credential_form_of_a_store_address_is_masked(url: str, shown: str) -> None:
    from router.store.credentials import url_secrets
    from router.store.database import redact_url

    assert redact_url(url) == shown
    secrets = url_secrets(url)
    assert secrets and all(secret not in shown for secret in secrets)
    assert Redactor(secrets)(f"could not connect with {url}").count("pa55") == 0


def test_readyz_shows_its_checks_to_the_admin_key_only(upstream: Any, start_router: Any, tmp_path: Any) -> None:
    secret_url = f"sqlite:///{tmp_path}/ledger.db?password=db-Secret-99"
    router = start_router(config(upstream.openai_base_url), admin_key=ADMIN, database_url=secret_url,
                          redis_url="redis://:r3dis-Pass-phrase@127.0.0.1:9/0", redis_prefix="ar-redact-test:")
    with router.http() as http:
        public = http.get("/readyz")
        wrong = http.get("/readyz", headers={"authorization": "Bearer not-the-admin-key"})
        bearer = http.get("/readyz", headers={"authorization": f"Bearer {ADMIN}"})
        header = http.get("/readyz", headers={"x-admin-key": ADMIN})
    assert public.status_code == wrong.status_code == bearer.status_code == 200
    assert public.json() == wrong.json() == {"status": "degraded"}  # Redis is unreachable: degraded, no details
    assert bearer.json()["checks"]["limits"].startswith("degraded") and header.json() == bearer.json()
    for response in (public, bearer):
        assert "r3dis-Pass-phrase" not in response.text and "db-Secret-99" not in response.text

