"""The API's answers validated in one place: archived records, timestamps, statuses."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routera_archive.models import (
    TERMINAL_STATUSES,
    ContractError,
    Status,
    parse_api_timestamp,
    parse_archived_record,
    read_active_flag,
)
from routera_archive.objects import ObjectType

ARCHIVED_AT = "2026-05-28T12:00:00.000Z"


def body_of(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "c1",
        "external_id": None,
        "first_name": "Ada",
        "created_at": "2026-05-01T10:00:00.000Z",
        "updated_at": ARCHIVED_AT,
        "archived": ARCHIVED_AT,
        "archived_by": "user-uuid",
    }
    body.update(fields)
    return body


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in body_of().items() if k != key}


# --- parse_archived_record ------------------------------------------------------------------


def test_a_valid_archived_record_parses_with_every_field_in_order() -> None:
    body = {"zz_custom": [1, {"a": None}], **body_of(), "Lead Score": 3.5, "名前": "名"}
    text = json.dumps(body, ensure_ascii=False, indent=3)

    contact, decoded, _ = parse_archived_record(text, ObjectType.CONTACTS, "c1")

    assert decoded == body
    assert list(decoded) == list(body)
    assert contact.id == "c1"
    assert contact.archived == datetime(2026, 5, 28, 12, tzinfo=UTC)
    assert contact.archived.tzinfo is not None
    assert contact.archived_by == "user-uuid"


def test_archived_by_may_be_absent_or_null() -> None:
    contact, _, _ = parse_archived_record(
        json.dumps(without("archived_by")), ObjectType.CONTACTS, "c1"
    )
    assert contact.archived_by is None
    contact, _, _ = parse_archived_record(
        json.dumps(body_of(archived_by=None)), ObjectType.CONTACTS, "c1"
    )
    assert contact.archived_by is None


def test_a_numeric_id_is_compared_as_text() -> None:
    contact, decoded, _ = parse_archived_record(
        json.dumps(body_of(id=123)), ObjectType.CONTACTS, "123"
    )
    assert contact.id == "123"
    assert decoded["id"] == 123  # the decoded body is not rewritten
    with pytest.raises(ContractError):
        parse_archived_record(json.dumps(body_of(id=123)), ObjectType.CONTACTS, "0123")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("<html>502</html>", "not JSON", id="html"),
        pytest.param("", "not JSON", id="empty"),
        pytest.param(json.dumps([body_of()]), "JSON list", id="array"),
        pytest.param("null", "not an object", id="null"),
        pytest.param('"c1"', "not an object", id="string"),
        pytest.param(json.dumps(without("id")), "no `id`", id="no-id"),
        pytest.param(json.dumps(without("archived")), "no `archived`", id="no-archived"),
        pytest.param(json.dumps(body_of(archived=True)), "`archived`", id="archived-true"),
        pytest.param(json.dumps(body_of(archived=False)), "`archived`", id="archived-false"),
        pytest.param(json.dumps(body_of(archived=None)), "`archived`", id="archived-null"),
        pytest.param(json.dumps(body_of(archived=1780000000)), "`archived`", id="archived-int"),
        pytest.param(json.dumps(body_of(archived="")), "`archived`", id="archived-empty"),
        pytest.param(json.dumps(body_of(archived="yesterday")), "`archived`", id="archived-text"),
        pytest.param(json.dumps(body_of(id="c2")), "'c2'", id="other-id"),
        pytest.param(json.dumps(body_of(id=None)), "`id`", id="id-null"),
        pytest.param(json.dumps(body_of(id=True)), "`id`", id="id-bool"),
        pytest.param(json.dumps(body_of(id={"v": "c1"})), "`id`", id="id-object"),
    ],
)
def test_contract_breaks_raise_contract_error(text: str, fragment: str) -> None:
    with pytest.raises(ContractError) as caught:
        parse_archived_record(text, ObjectType.CONTACTS, "c1")
    assert fragment in str(caught.value)
    assert isinstance(caught.value, ValueError)


# Text every destination holds as it is (no NUL, no lone surrogate), so
# the record must come back exactly; the values that must not are tested in test_fields.py.
PLAIN_TEXT = st.characters(codec="utf-8", exclude_characters="\x00")
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(PLAIN_TEXT, max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(PLAIN_TEXT, max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.text(PLAIN_TEXT, max_size=20).filter(
            lambda k: k not in ("id", "archived", "archived_by")
        ),
        JSON_VALUES,
        max_size=8,
    )
)
def test_any_custom_fields_survive_parsing(custom: dict[str, Any]) -> None:
    body = {**custom, **body_of()}
    text = json.dumps(body)
    contact, decoded, as_text = parse_archived_record(text, ObjectType.CONTACTS, "c1")
    assert json.dumps(decoded) == text  # every value, type and key order as received
    assert as_text == []
    assert contact.id == "c1"


# --- parse_api_timestamp ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-05-28T12:00:00.000Z", datetime(2026, 5, 28, 12, tzinfo=UTC)),
        ("2026-05-28T12:00:00Z", datetime(2026, 5, 28, 12, tzinfo=UTC)),
        ("2026-05-28T14:30:00+02:30", datetime(2026, 5, 28, 12, tzinfo=UTC)),
        ("2026-05-28T07:00:00-05:00", datetime(2026, 5, 28, 12, tzinfo=UTC)),
        ("2026-05-28T12:00:00.123456+00:00", datetime(2026, 5, 28, 12, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_iso_timestamps_parse_to_aware_datetimes(value: str, expected: datetime) -> None:
    parsed = parse_api_timestamp(value)
    assert parsed == expected
    assert parsed.tzinfo is not None


def test_an_offset_is_kept() -> None:
    assert parse_api_timestamp("2026-05-28T14:30:00+02:30").utcoffset() == timedelta(
        hours=2, minutes=30
    )


def test_a_naive_timestamp_is_taken_as_utc() -> None:
    parsed = parse_api_timestamp("2026-05-28T12:00:00")
    assert parsed.tzinfo is not None
    assert parsed.utcoffset() == timedelta(0)
    assert parsed == datetime(2026, 5, 28, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        0,
        1780000000,
        1.5,
        None,
        [],
        {},
        "",
        "true",
        "yesterday",
        "2026-13-01T00:00:00Z",
    ],
)
def test_non_timestamps_are_refused(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_api_timestamp(value)


# --- Status ----------------------------------------------------------------------------------


def test_every_status_but_failed_is_terminal() -> None:
    assert not Status.FAILED.is_terminal
    for status in Status:
        if status is not Status.FAILED:
            assert status.is_terminal, status
    assert set(TERMINAL_STATUSES) == {
        "archived",
        "already_archived",
        "not_found",
        "invalid",
        "duplicate",
    }


def test_status_values_are_the_documented_strings() -> None:
    assert Status("already_archived") is Status.ALREADY_ARCHIVED
    assert Status.NOT_FOUND == "not_found"
    with pytest.raises(ValueError):
        Status("archived ")


# --- read_active_flag ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (json.dumps(body_of(archived=False)), True),
        (json.dumps(body_of()), None),
        (json.dumps(body_of(archived=0)), None),
        (json.dumps(body_of(archived=None)), None),
        (json.dumps(body_of(archived="false")), None),
        (json.dumps(without("archived")), None),
        ('[{"archived": false}]', None),
        ("not json", None),
        ("", None),
    ],
)
def test_read_active_flag(body: str, expected: bool | None) -> None:
    assert read_active_flag(body) is expected


def test_an_id_answered_in_its_canonical_case_is_the_one_asked_for() -> None:
    """Asked for `C1-UPPER`, Routera answers with the id as it keeps it: the same contact, not
    a contract break (that left the request failed for ever)."""
    _, record, _ = parse_archived_record(
        json.dumps(body_of(id="c1-upper")), ObjectType.CONTACTS, "C1-UPPER"
    )
    assert record["id"] == "c1-upper"
