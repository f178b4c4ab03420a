"""An API that echoes what it was sent never gets a secret stored, logged or printed, in any
encoding: the real CLI against a misbehaving API, on DuckDB and PostgreSQL.

Found by an outside test: a client secret with `+`, `/`, `=`, `&`, `%` appeared form-encoded on
stderr and in `archive_runs.error` when the token endpoint echoed the form in a 400; a token
renewal answered by a 500 that echoed the request landed in `archive_log.response_body`; a 403
that echoed the headers stored the bearer token.
"""

import base64
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from routera_archive_sandbox import SandboxServer
from tests.e2e.cli_support import (
    Result,
    RunCli,
    Target,
    cli_runner,
    searchable_bytes,
    stored_text,
)
from tests.misbehaving_api import MisbehavingApi

pytestmark = pytest.mark.e2e

CLIENT_ID = "echo-client-7"
CLIENT_SECRET = "s3cr+t/with=&%chars~Zq9"
ISSUED_TOKEN = "issued-token-Vb4+/Xy=="
STATIC_TOKEN = "static-token-Hn2/Rk+Q"
ARCHIVED = "2026-06-01T10:00:00Z"


def forms(secret: str, user: str = CLIENT_ID) -> list[str]:
    """How a secret may come back, written out here independently of the code under test."""
    percent = quote(secret, safe="")
    return [
        secret,
        quote_plus(secret),  # a form body: `+` as %2B, `/` as %2F
        percent,
        percent.lower(),  # percent-encoding's hex in either case
        base64.b64encode(f"{user}:{secret}".encode()).decode(),  # HTTP Basic
        base64.b64encode(secret.encode()).decode().rstrip("="),
    ]


def record(contact_id: str) -> dict[str, str]:
    return {"id": contact_id, "archived": ARCHIVED, "archived_by": CLIENT_ID}


@pytest.fixture
def api() -> Iterator[MisbehavingApi]:
    with MisbehavingApi.like_routera() as running:
        yield running


@pytest.fixture
def cli(tmp_path: Path, idle_sandbox: SandboxServer, api: MisbehavingApi, target: Target) -> RunCli:
    settings = {
        "SOURCES__ROUTERA__BASE_URL": api.url,
        "SOURCES__ROUTERA__CLIENT_ID": CLIENT_ID,
        "SOURCES__ROUTERA__CLIENT_SECRET": CLIENT_SECRET,
        "SOURCES__ROUTERA__MAX_ATTEMPTS": "2",
        "SOURCES__ROUTERA__BACKOFF_INITIAL": "0.01",
        "SOURCES__ROUTERA__BACKOFF_MAX": "0.05",
    }
    return cli_runner(idle_sandbox, tmp_path, settings, timeout=120, target=target)


def assert_nowhere(
    secrets: list[str], outputs: list[Result], target: Target, tmp_path: Path
) -> None:
    """No form of any secret in the dataset's tables, any file the CLI left, or any output."""
    stored = stored_text(target)
    assert "archive_runs" in target.tables()
    files = [path for path in tmp_path.rglob("*") if path.is_file() and path.suffix != ".duckdb"]
    texts = {"the dataset": stored} | {
        str(path): searchable_bytes(path).decode("utf-8", "replace") for path in files
    }
    texts |= {f"output {n}": output.output for n, output in enumerate(outputs)}
    for where, text in texts.items():
        for secret in secrets:
            for form in forms(secret):
                assert form not in text, f"{form!r} (a form of a secret) is in {where}"


def test_a_token_endpoint_echoing_the_form_in_a_400(
    cli: RunCli, api: MisbehavingApi, target: Target, tmp_path: Path
) -> None:
    api.answer(
        "POST",
        "/oauth2/token",
        400,
        '{"error": "invalid_request", "error_description": "cannot read {request_body}"}',
        "application/json",
        times=1,
    )
    api.answer("POST", "/oauth2/token", 400, "bad form: {request_body}")
    outputs = [cli("enqueue", "-", stdin="c1\n"), cli("run"), cli("run", "--debug")]

    assert [output.code for output in outputs] == [0, 2, 2], [o.output for o in outputs]
    assert "refused the client credentials" in outputs[1].stderr
    assert "<redacted>" in outputs[1].stderr  # the echo is shown, masked
    assert len(target.query("SELECT error FROM archive_runs")) == 2
    assert_nowhere([CLIENT_SECRET], outputs, target, tmp_path)


def test_a_renewal_answered_by_a_500_echoing_the_request(
    cli: RunCli, api: MisbehavingApi, target: Target, tmp_path: Path
) -> None:
    token = {"access_token": ISSUED_TOKEN, "token_type": "bearer", "expires_in": 3600}
    api.answer("POST", "/oauth2/token", 500, "upstream failed on: {request_body}")
    api.answer("POST", "/oauth2/token", 200, token, times=1)
    api.answer("DELETE", "/contacts/c1", 200, record("c1"))
    # The token is refused once: the client renews it, and the renewal meets the 500.
    api.answer("DELETE", "/contacts/c1", 401, {"message": "expired", "error": True}, times=1)
    outputs = [cli("enqueue", "-", stdin="c1\n"), cli("run", "--debug")]

    assert outputs[1].code == 1, outputs[1].output
    (body,) = target.query("SELECT response_body FROM archive_log WHERE contact_id = 'c1'")[0]
    assert body is not None and "upstream failed on:" in body, body
    assert_nowhere([CLIENT_SECRET, ISSUED_TOKEN], outputs, target, tmp_path)


def test_a_403_echoing_the_headers(
    cli: RunCli, api: MisbehavingApi, target: Target, tmp_path: Path
) -> None:
    api.answer("DELETE", "/contacts/*", 403, "forbidden; you sent:\n{request_headers}")
    static = {
        "SOURCES__ROUTERA__CLIENT_ID": None,
        "SOURCES__ROUTERA__CLIENT_SECRET": None,
        "SOURCES__ROUTERA__ACCESS_TOKEN": STATIC_TOKEN,
    }
    outputs = [cli("enqueue", "-", stdin="c1\nc2\n"), cli("run", "--debug", env=static)]

    assert outputs[1].code == 1, outputs[1].output
    bodies = [row[0] for row in target.query("SELECT response_body FROM archive_log")]
    assert len(bodies) == 2 and all("Authorization: Bearer <redacted>" in b for b in bodies)
    assert_nowhere([STATIC_TOKEN], outputs, target, tmp_path)
