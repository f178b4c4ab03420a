"""log_row and audit_row: flat records, typed `archived`, and our columns never overwritten.

Row keys are final column names (`routera_archive.dataset.fields`): a key whose column is taken
(by another key, one of our meta columns, `_dlt*` or a documented field's column while spelled
differently) lands in `<column>_<first 8 hex of sha1(key)>`, so no value is ever lost or
overwritten.
"""

import hashlib
import json
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from dlt.common.normalizers.naming.snake_case import NamingConvention
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routera_archive.dataset.fields import DOCUMENTED_FIELDS, FieldColumns
from routera_archive.dataset.rows import AS_TEXT_SUFFIX, AUDIT_META_COLUMNS, audit_row, log_row
from routera_archive.models import ArchiveOutcome, ArchiveRequest, Status, parse_archived_record
from routera_archive.objects import ObjectType
from routera_archive.redaction import REDACTED, REDACTOR
from routera_archive.values import storable_record

RUN_ID = "run-42"
ARCHIVED_AT = "2026-05-28T12:00:00.000Z"
REQUESTED_AT = datetime(2026, 5, 27, 9, 30, tzinfo=timezone(timedelta(hours=2)))
REQUEST = ArchiveRequest(
    request_id="req-1",
    contact_id="c1",
    requested_by="ana@example.com",
    reason="GDPR erasure",
    requested_at=REQUESTED_AT,
)

# dlt's default naming: what each row key becomes as a column.
naming = NamingConvention()


def same(a: Any, b: Any) -> bool:
    """Equal as JSON: `1`, `1.0` and `True` are different values here (a datetime never is)."""
    return json.dumps(a, default=repr) == json.dumps(b, default=repr)


def column(key: str) -> str:
    """dlt's column for `key`; a blank key (dlt refuses it) goes to `blank_field`."""
    return naming.normalize_identifier(key) if key.strip() else "blank_field"


def hashed(key: str) -> str:
    """The column of a key whose own column is taken: `<column>_<first 8 hex of sha1(key)>`."""
    return f"{column(key)}_{hashlib.sha1(key.encode('utf-8')).hexdigest()[:8]}"


def assert_final_names(row: dict[str, Any]) -> None:
    """dlt keeps every row key as it is: it will not rename, or merge, them again."""
    for key in row:
        assert naming.normalize_identifier(key) == key, key


def holders(row: dict[str, Any], value: Any) -> list[str]:
    """The row keys, other than our meta columns, whose value is `value` (equal as JSON)."""
    return [k for k, v in row.items() if k not in AUDIT_META_COLUMNS and same(v, value)]


def body_of(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "c1",
        "external_id": "ext-1",
        "first_name": "Ada",
        "created_at": "2026-05-01T10:00:00.000Z",
        "updated_at": ARCHIVED_AT,
        "archived": ARCHIVED_AT,
        "archived_by": "user-uuid",
    }
    body.update(fields)
    return body


def archived_outcome(body: dict[str, Any], **changes: Any) -> ArchiveOutcome:
    raw = json.dumps(body)
    _, record, as_text = parse_archived_record(raw, ObjectType.CONTACTS, "c1")
    values: dict[str, Any] = {
        "request": REQUEST,
        "status": Status.ARCHIVED,
        "http_status": 200,
        "attempts": 1,
        "record": record,
        "text_fields": as_text,
        "raw_response": raw,
        "record_source": "delete",
    }
    values.update(changes)
    return ArchiveOutcome(**values)


def assert_meta(row: dict[str, Any], outcome: ArchiveOutcome) -> None:
    assert row["request_id"] == "req-1"
    assert row["requested_by"] == "ana@example.com"
    assert row["reason"] == "GDPR erasure"
    assert row["requested_at"] == REQUESTED_AT
    assert row["run_id"] == RUN_ID
    assert row["recovered"] is outcome.recovered
    assert row["record_source"] == outcome.record_source
    assert row["raw_response"] == outcome.raw_response


# --- audit_row -------------------------------------------------------------------------------


def test_audit_row_is_the_record_flat_plus_our_columns() -> None:
    body = body_of(**{"Lead Score": 7, "tags": ["a", "b"], "address": {"city": "Oslo"}})
    outcome = archived_outcome(body)

    row = audit_row(outcome, RUN_ID)

    assert row is not None
    # No key clashes here: each one is in dlt's own column for it.
    assert row["lead_score"] == 7
    assert "Lead Score" not in row
    for key, value in body.items():
        if key != "archived":
            assert row[column(key)] == value, key
    assert row["archived"] == datetime(2026, 5, 28, 12, tzinfo=UTC)
    assert isinstance(row["archived"], datetime)
    assert row["archived"].tzinfo is not None
    assert_meta(row, outcome)
    assert set(row) == {column(k) for k in body} | set(AUDIT_META_COLUMNS)
    assert_final_names(row)
    # The outcome's record keeps the string as received (the journal and raw_response rely on it).
    assert outcome.record is not None
    assert outcome.record["archived"] == ARCHIVED_AT


def test_audit_row_of_a_recovered_record() -> None:
    outcome = archived_outcome(
        body_of(),
        status=Status.ALREADY_ARCHIVED,
        http_status=404,
        record_source="get",
        recovered=True,
    )
    row = audit_row(outcome, RUN_ID)
    assert row is not None
    assert row["recovered"] is True
    assert row["record_source"] == "get"
    assert_meta(row, outcome)


def test_audit_row_archived_with_an_offset_is_tz_aware() -> None:
    row = audit_row(archived_outcome(body_of(archived="2026-05-28T14:00:00+02:00")), RUN_ID)
    assert row is not None
    assert row["archived"] == datetime(2026, 5, 28, 12, tzinfo=UTC)
    assert row["archived"].utcoffset() == timedelta(hours=2)


@pytest.mark.parametrize(
    ("key", "ours"),
    [
        ("run_id", "run_id"),
        ("Run ID", "run_id"),
        ("raw_response", "raw_response"),
        ("RawResponse", "raw_response"),
        ("_dlt_id", None),
        ("_dlt_load_id", None),
        ("Recovered", "recovered"),
        ("request-ID", "request_id"),
        ("reason", "reason"),
        ("record_source", "record_source"),
    ],
)
def test_a_field_clashing_with_our_columns_is_renamed_not_overwritten(
    key: str, ours: str | None
) -> None:
    theirs = f"their value of {key}"
    outcome = archived_outcome(body_of(**{key: theirs}))

    row = audit_row(outcome, RUN_ID)

    assert row is not None
    [renamed] = holders(row, theirs)
    assert renamed != column(key)  # the bare column is ours: never theirs
    if ours is not None:
        assert renamed == hashed(key)
    assert key not in row or key == ours  # our column may share the name, never their value
    assert renamed not in AUDIT_META_COLUMNS
    assert_meta(row, outcome)
    assert_final_names(row)
    # No row key other than ours is one of our columns.
    theirs_columns = [k for k in row if k not in AUDIT_META_COLUMNS]
    assert not set(theirs_columns) & set(AUDIT_META_COLUMNS)
    assert len(row) == len(outcome.record or {}) + len(AUDIT_META_COLUMNS)


@pytest.mark.parametrize("key", ["_dlt_id", "_dlt_load_id", "_DLT_note"])
def test_a_field_clashing_with_dlts_columns_is_renamed_out_of_dlts_prefix(key: str) -> None:
    row = audit_row(archived_outcome(body_of(**{key: "theirs"})), RUN_ID)
    assert row is not None
    [renamed] = holders(row, "theirs")
    assert not renamed.startswith("_dlt"), renamed


# Where a `run_id` key of the record goes: our `run_id` keeps the run.
HASHED_RUN_ID = hashed("run_id")


def test_a_clashing_field_and_its_hashed_name_both_keep_their_values() -> None:
    outcome = archived_outcome(body_of(run_id="theirs", **{HASHED_RUN_ID: "also theirs"}))

    row = audit_row(outcome, RUN_ID)

    assert row is not None
    assert row["run_id"] == RUN_ID
    assert holders(row, "theirs") == [HASHED_RUN_ID]
    # The key spelled like the hashed column finds it taken: it is hashed in turn.
    assert holders(row, "also theirs") == [hashed(HASHED_RUN_ID)]
    assert_meta(row, outcome)
    assert_final_names(row)


def test_a_clashing_field_after_its_hashed_name_keeps_both_values() -> None:
    # Same as above with the hashed-looking field first in the body.
    body = {HASHED_RUN_ID: "also theirs", **body_of(), "run_id": "theirs"}
    row = audit_row(archived_outcome(body), RUN_ID)
    assert row is not None
    assert row["run_id"] == RUN_ID
    assert len(holders(row, "theirs")) == 1
    assert len(holders(row, "also theirs")) == 1
    assert len(row) == len(body) + len(AUDIT_META_COLUMNS)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param(
            {"Run ID": "theirs", "contact_run_id": "also theirs"}, id="spaced-then-prefixed"
        ),
        pytest.param(
            {"contact_run_id": "also theirs", "Run ID": "theirs"}, id="prefixed-then-spaced"
        ),
        pytest.param({"run_id": "theirs", "Run ID": "also theirs"}, id="two-spellings"),
        pytest.param(
            {"Run ID": "theirs", "Contact Run ID": "also theirs", "run_id": "third"},
            id="three-spellings",
        ),
        pytest.param(
            {"Run ID": "theirs", hashed("Run ID"): "also theirs"}, id="spaced-then-hashed"
        ),
        pytest.param(
            {hashed("Run ID"): "also theirs", "Run ID": "theirs"},
            id="hashed-then-spaced",
        ),
    ],
)
def test_a_renamed_field_never_lands_on_another_fields_column(fields: dict[str, Any]) -> None:
    # A renamed key must avoid every other key's column, as dlt would name it.
    outcome = archived_outcome(body_of(**fields))
    row = audit_row(outcome, RUN_ID)
    assert row is not None
    assert len(row) == len(outcome.record or {}) + len(AUDIT_META_COLUMNS)
    assert_final_names(row)
    columns = Counter(column(k) for k in row)
    assert max(columns.values()) == 1, columns
    kept = [v for k, v in row.items() if k not in AUDIT_META_COLUMNS]
    assert sorted(v for v in kept if v in fields.values()) == sorted(fields.values())
    assert_meta(row, outcome)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"Lead Score": 1, "lead_score": 2}, id="lead-score"),
        pytest.param({"Archived": "yes"}, id="archived"),
        pytest.param({"名前": "n", "電話": "t"}, id="non-ascii"),
        pytest.param({"": "empty", " ": "space", "blank_field": "named"}, id="blank"),
        pytest.param(
            # Both normalise to `lead_score`; sha1 of both starts with 71207c26.
            {"lead_score": 1, "lead [#&score": 2, "lead!=(>score": 3},
            id="same-hash-prefix",
        ),
    ],
)
def test_record_keys_never_share_a_column(fields: dict[str, Any]) -> None:
    outcome = archived_outcome(body_of(**fields))
    row = audit_row(outcome, RUN_ID)
    assert row is not None
    assert_final_names(row)
    columns = Counter(column(k) for k in row)
    assert max(columns.values()) == 1, columns
    for value in fields.values():
        assert len(holders(row, value)) == 1, value
    assert len(row) == len(outcome.record or {}) + len(AUDIT_META_COLUMNS)


def test_a_differently_spelled_archived_never_replaces_the_parsed_timestamp() -> None:
    row = audit_row(archived_outcome(body_of(Archived="yes", ARCHIVED="no")), RUN_ID)
    assert row is not None
    assert row["archived"] == datetime(2026, 5, 28, 12, tzinfo=UTC)
    assert row[hashed("Archived")] == "yes"
    assert row[hashed("ARCHIVED")] == "no"


@pytest.mark.parametrize("key", ["", " ", "\t\n"])
def test_a_blank_custom_field_name_does_not_break_the_row(key: str) -> None:
    row = audit_row(archived_outcome(body_of(**{key: "kept"})), RUN_ID)
    assert row is not None
    assert row["blank_field"] == "kept"
    assert key not in row
    assert_final_names(row)


def test_two_blank_custom_field_names_keep_both_values() -> None:
    row = audit_row(archived_outcome(body_of(**{"": "empty", " ": "space"})), RUN_ID)
    assert row is not None
    assert row["blank_field"] == "empty"
    assert row[hashed(" ")] == "space"


def test_no_record_means_no_audit_row() -> None:
    for status in (Status.FAILED, Status.NOT_FOUND, Status.INVALID, Status.DUPLICATE):
        outcome = ArchiveOutcome(request=REQUEST, status=status, raw_response="<html>")
        assert audit_row(outcome, RUN_ID) is None


# --- log_row ---------------------------------------------------------------------------------


def test_log_row_of_a_failed_outcome_keeps_the_body() -> None:
    outcome = ArchiveOutcome(
        request=REQUEST,
        status=Status.FAILED,
        http_status=200,
        attempts=2,
        error="DELETE answered 200 but the body is not JSON",
        raw_response="<html>oops</html>",
    )
    row = log_row(outcome, RUN_ID)
    assert row == {
        "outcome_id": outcome.outcome_id,
        "request_id": "req-1",
        "contact_id": "c1",
        "object_type": "contacts",
        "object_id": "c1",
        "status": "failed",
        "http_status": 200,
        "error": "DELETE answered 200 but the body is not JSON",
        "attempts": 2,
        "requested_by": "ana@example.com",
        "reason": "GDPR erasure",
        "requested_at": REQUESTED_AT,
        "processed_at": outcome.processed_at,
        "run_id": RUN_ID,
        "recovered": False,
        "record_source": None,
        "duplicate_of": None,
        "response_body": "<html>oops</html>",
    }
    assert type(row["status"]) is str


def test_log_row_of_an_archived_outcome_leaves_the_body_to_the_audit() -> None:
    outcome = archived_outcome(body_of(), status=Status.ALREADY_ARCHIVED, recovered=True)
    row = log_row(outcome, RUN_ID)
    assert row["response_body"] is None
    assert row["status"] == "already_archived"
    assert row["recovered"] is True
    assert row["record_source"] == "delete"
    assert row["run_id"] == RUN_ID


def test_log_row_of_a_duplicate_names_the_request_it_stands_for() -> None:
    outcome = ArchiveOutcome(request=REQUEST, status=Status.DUPLICATE, duplicate_of="req-0")
    row = log_row(outcome, RUN_ID)
    assert row["duplicate_of"] == "req-0"
    assert row["status"] == "duplicate"
    assert row["response_body"] is None


# --- property: every value survives ----------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.integers(min_value=2**63, max_value=2**70)  # no 64-bit column holds these
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),  # NUL and lone surrogates included
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
# Any keys, blank ones included, and spellings that clash with each other, with our meta
# columns, with dlt's and with the documented fields. `id` and `archived` are left to the base
# body (parse_archived_record checks them). Keys spelled like another key's hashed column are
# covered by the tests above.
CUSTOM_KEYS = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            *AUDIT_META_COLUMNS,
            *DOCUMENTED_FIELDS,
            "Run ID",
            "RawResponse",
            "_dlt_id",
            "_dlt_load_id",
            "Recovered",
            "contact_run_id",
            "Lead Score",
            "lead_score",
            "leadScore",
            "LEAD-SCORE",
            "",
            " ",
            "\t",
            "blank_field",
            "Archived",
            "ID",
            "Email",
            "名前",
            "電話",
            "x",
            "a" * 200,
            "A" * 200,
        ]
    ),
).filter(lambda k: k not in ("id", "archived", "archived_by"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(CUSTOM_KEYS, JSON_VALUES, max_size=8), st.booleans())
def test_audit_row_keeps_every_value_and_our_meta_columns(
    custom: dict[str, Any], recovered: bool
) -> None:
    body = {**body_of(), **custom}
    outcome = archived_outcome(
        body, recovered=recovered, record_source="get" if recovered else "delete"
    )
    # What every destination holds (values.storable_record): the same values, but text made
    # safe and what no column holds as it is (a uint64, NaN) as text, under its own key.
    held, as_text = storable_record(body)
    assert as_text == outcome.text_fields
    body = {
        (f"{key}{AS_TEXT_SUFFIX}" if key in as_text else key): value for key, value in held.items()
    }

    row = audit_row(outcome, RUN_ID)

    assert row is not None
    # Nothing was overwritten: one row key per record field plus our columns.
    assert len(row) == len(body) + len(AUDIT_META_COLUMNS)
    assert_meta(row, outcome)
    assert row["archived"] == datetime(2026, 5, 28, 12, tzinfo=UTC)
    # Every value is in the column `routera_archive.dataset.fields` names for its key; no two keys
    # share one.
    names = FieldColumns()
    columns = {key: names.column_for(key, run_id=RUN_ID, contact_id="c1") for key in body}
    assert len(set(columns.values())) == len(columns), columns
    for key, value in body.items():
        if key != "archived":
            assert same(row[columns[key]], value), (key, value)
    assert not set(columns.values()) & set(AUDIT_META_COLUMNS)
    # dlt keeps every name as it is, so it renames or merges none of them.
    assert_final_names(row)


def test_a_secret_the_api_echoes_into_a_field_is_masked_in_its_column_too() -> None:
    """raw_response was masked but the field's own column kept the secret (the canonical-values
    spike saw `Bearer <token>` in a `note` column): every text of the record, nested ones
    included, is masked as the body is."""
    secret = "s3cr3t-token-0123456789"
    REDACTOR.remember(secret)
    try:
        body = body_of(
            note=f"Authorization: Bearer {secret}",
            history=[{"by": f"client {secret}"}, 7],
            quoted=json.dumps(secret)[1:-1],
        )
        row = audit_row(archived_outcome(body), RUN_ID)
    finally:
        REDACTOR.forget_all()
    assert row is not None
    assert row["note"] == f"Authorization: Bearer {REDACTED}"
    assert row["history"] == [{"by": f"client {REDACTED}"}, 7]
    assert secret not in json.dumps(row, default=str)
    assert row["id"] == "c1" and row["first_name"] == "Ada"
