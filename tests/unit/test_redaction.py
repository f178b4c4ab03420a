"""Secrets masked in every form an API may echo them in (routera_archive.redaction)."""

import base64
import json
import logging
import re
from collections.abc import Iterator
from urllib.parse import quote, quote_plus, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routera_archive.redaction import REDACTED, RedactingFilter, Redactor

SECRET = "s3cr+t/with=&%chars~Zq9"


@pytest.fixture
def redactor() -> Iterator[Redactor]:
    redactor = Redactor()
    redactor.remember(SECRET)
    yield redactor


@pytest.mark.parametrize(
    "echo",
    [
        SECRET,
        urlencode({"grant_type": "client_credentials", "client_secret": SECRET}),
        quote(SECRET, safe=""),
        re.sub("%[0-9A-F]{2}", lambda hexes: hexes.group().lower(), quote(SECRET, safe="")),
        json.dumps({"sent": SECRET}),
        json.dumps({"sent": SECRET}).replace("/", "\\/"),
        "Authorization: Basic " + base64.b64encode(f"client:{SECRET}".encode()).decode(),
        base64.urlsafe_b64encode(f"a{SECRET}bc".encode()).decode(),
        "&lt;" + SECRET.replace("&", "&amp;") + "&gt;",
    ],
)
def test_every_echoed_form_is_masked(redactor: Redactor, echo: str) -> None:
    masked = redactor.scrub(echo)
    assert REDACTED in masked
    for form in (SECRET, quote_plus(SECRET), quote(SECRET, safe="")):
        assert form not in masked


@settings(max_examples=200)
@given(
    secret=st.text(st.characters(codec="utf-8"), min_size=8, max_size=40),
    before=st.binary(max_size=10),
    after=st.binary(max_size=10),
)
def test_base64_of_any_text_holding_a_secret_is_masked(
    secret: str, before: bytes, after: bytes
) -> None:
    redactor = Redactor()
    redactor.remember(secret)
    encoded = base64.b64encode(before + secret.encode() + after).decode()
    masked = redactor.scrub(encoded)
    assert REDACTED in masked
    # The fragment masked is the one made of the secret's bits alone: what is left around it
    # comes from the text before and after.
    assert len(masked.replace(REDACTED, "")) <= len(encoded) - (len(secret.encode()) * 4 // 3 - 3)


def test_text_without_a_secret_is_left_alone(redactor: Redactor) -> None:
    text = '{"id": "c1", "archived": "2026-06-01T10:00:00Z", "note": "s3cr"}'
    assert redactor.scrub(text) == text
    assert Redactor().scrub(SECRET) == SECRET  # nothing remembered, nothing masked


def test_log_lines_are_masked_in_their_arguments_and_their_traceback(redactor: Redactor) -> None:
    import routera_archive.redaction as redaction

    redaction.remember(SECRET)
    try:
        raise ValueError(f"the API said {quote_plus(SECRET)}")
    except ValueError as exc:
        error = exc
    record = logging.LogRecord(
        "t", logging.ERROR, __file__, 1, "sent %s", (SECRET,), (type(error), error, None)
    )
    assert RedactingFilter().filter(record)
    line = logging.Formatter().format(record)
    assert SECRET not in line and quote_plus(SECRET) not in line
    assert line.startswith(f"sent {REDACTED}") and f"the API said {REDACTED}" in line
