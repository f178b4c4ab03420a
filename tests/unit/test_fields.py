"""FieldColumns: which column each record key is stored in, and the `custom_fields` rows.

The rule (routera_archive/dataset/fields.py): a documented field spelled exactly keeps its name;
any other key, first seen, claims dlt's column for it unless another key has it or it is ours
(our meta columns, `_dlt*`, a documented field's column); otherwise it gets
`<column>_<first 8 hex of sha1(key)>`.
"""

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from dlt.common.normalizers.naming.snake_case import NamingConvention
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routera_archive.dataset.fields import (
    AUDIT_META_COLUMNS,
    DOCUMENTED_FIELDS,
    FieldColumn,
    FieldColumns,
    FieldColumnsByType,
)
from routera_archive.dataset.tables import build_audit_rows
from routera_archive.models import ArchiveOutcome, ArchiveRequest, Status, parse_archived_record
from routera_archive.objects import ObjectType

RUN_ID = "run-7"
ARCHIVED_AT = "2026-05-28T12:00:00.000Z"

# dlt's default naming, as the destination applies it.
naming = NamingConvention()


def column(key: str, convention: NamingConvention = naming) -> str:
    """dlt's column for `key`; a blank key (dlt refuses it) goes to `blank_field`."""
    return convention.normalize_identifier(key) if key.strip() else "blank_field"


def sha8(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:8]


def hashed(key: str) -> str:
    """The column of a key whose own column is taken (no length limit)."""
    return f"{column(key)}_{sha8(key)}"


def assign(columns: FieldColumns, *keys: str, contact_id: str = "c1") -> list[str]:
    return [columns.column_for(key, run_id=RUN_ID, contact_id=contact_id) for key in keys]


def reserved(name: str) -> bool:
    return name in AUDIT_META_COLUMNS or name in DOCUMENTED_FIELDS or name.startswith("_dlt")


# --- first come, first served ----------------------------------------------------------------


def test_the_first_key_claims_dlts_column() -> None:
    columns = FieldColumns()
    assert assign(columns, "Lead Score") == ["lead_score"]
    [field] = columns.take_new()
    assert field.field_key == "Lead Score"
    assert field.column_name == "lead_score"
    assert field.renamed is False


@pytest.mark.parametrize(
    "keys",
    [
        ("Lead Score", "lead_score", "leadScore", "LEAD-SCORE"),
        ("lead_score", "Lead Score", "LEAD-SCORE", "leadScore"),
        ("leadScore", "LEAD-SCORE", "lead_score", "Lead Score"),
    ],
)
def test_later_colliding_keys_get_the_hashed_suffix(keys: tuple[str, ...]) -> None:
    assert {column(k) for k in keys} == {"lead_score"}
    columns = FieldColumns()

    assigned = assign(columns, *keys)

    assert assigned[0] == "lead_score"
    assert assigned[1:] == [f"lead_score_{sha8(k)}" for k in keys[1:]]
    assert len(set(assigned)) == len(keys)
    assert [f.renamed for f in columns.take_new()] == [False, True, True, True]


def test_a_hashed_column_does_not_depend_on_what_the_key_meets() -> None:
    # Whichever key took `lead_score` (or whether one of ours clashes), `Lead Score` gets the
    # same hashed column.
    first, second = FieldColumns(), FieldColumns()
    assert assign(first, "lead_score", "Lead Score")[1] == hashed("Lead Score")
    assert assign(second, "run_id", "LEAD-SCORE", "Lead Score")[2] == hashed("Lead Score")


def test_a_key_spelled_like_a_taken_hashed_column_is_hashed_in_turn() -> None:
    taken = hashed("Lead Score")
    columns = FieldColumns()
    assert assign(columns, "lead_score", "Lead Score", taken) == [
        "lead_score",
        taken,
        f"{taken}_{sha8(taken)}",
    ]


def test_a_key_spelled_like_a_hashed_column_seen_first_keeps_it_for_itself() -> None:
    taken = hashed("Lead Score")
    columns = FieldColumns()
    assigned = assign(columns, "lead_score", taken, "Lead Score")
    assert assigned[:2] == ["lead_score", taken]
    assert len(set(assigned)) == 3, assigned


def test_keys_whose_sha1_share_eight_hex_digits_still_get_columns_of_their_own() -> None:
    a, b = "lead [#&score", "lead!=(>score"
    assert column(a) == column(b) == "lead_score"
    assert sha8(a) == sha8(b)
    assigned = assign(FieldColumns(), "lead_score", a, b)
    assert len(set(assigned)) == 3, assigned


# --- stable ------------------------------------------------------------------------------------


def test_the_same_key_always_gets_the_same_column() -> None:
    columns = FieldColumns()
    keys = ("Lead Score", "lead_score", "名前", "電話", "", " ", "Run ID")
    once = assign(columns, *keys)
    columns.take_new()

    assert assign(columns, *reversed(keys)) == list(reversed(once))
    assert columns.take_new() == []  # nothing new the second time
    assert columns.known == dict(zip(keys, once, strict=True))


def test_a_new_field_columns_seeded_with_known_gives_the_same_columns() -> None:
    first = FieldColumns()
    keys = ("Lead Score", "lead_score", "名前", "電話", "", " ", "Run ID", "Email")
    assigned = assign(first, *keys)

    again = FieldColumns(first.known)

    # Any order: the assignments come from `known`, not from who arrives first.
    assert assign(again, *reversed(keys)) == list(reversed(assigned))
    assert again.take_new() == []


def test_known_keeps_earlier_assignments_when_a_more_canonical_key_arrives() -> None:
    # A previous run saw `Lead Score` first: it keeps `lead_score`, even now that the key
    # spelled exactly like the column arrives first.
    columns = FieldColumns({"Lead Score": "lead_score"})

    assert assign(columns, "lead_score", "Lead Score") == [hashed("lead_score"), "lead_score"]
    [field] = columns.take_new()
    assert (field.field_key, field.column_name, field.renamed) == (
        "lead_score",
        hashed("lead_score"),
        True,
    )


def test_known_columns_are_taken_whatever_their_names() -> None:
    columns = FieldColumns({"Nickname": "nick", "Lead Score": hashed("Lead Score")})
    # `nick` belongs to `Nickname`; `lead_score` itself was never claimed.
    assert assign(columns, "nick", "LEAD-SCORE") == [hashed("nick"), "lead_score"]


# --- reserved columns --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        *AUDIT_META_COLUMNS,
        "_dlt_id",
        "_dlt_load_id",
        "Archived",
        "ID",
        "Email",
        "Run ID",
        "RawResponse",
        "request-ID",
        "Created At",
    ],
)
@pytest.mark.parametrize("first", [True, False], ids=["first", "after-others"])
def test_a_reserved_column_is_never_given_to_a_key(key: str, first: bool) -> None:
    columns = FieldColumns()
    if not first:
        assign(columns, "Lead Score", "lead_score")
        columns.take_new()

    [assigned] = assign(columns, key)

    assert assigned != column(key)
    assert reserved(column(key))
    assert assigned not in AUDIT_META_COLUMNS
    assert assigned not in DOCUMENTED_FIELDS
    assert naming.normalize_identifier(assigned) == assigned
    if not key.startswith("_dlt"):
        assert assigned == hashed(key)
    [field] = columns.take_new()
    assert field.renamed is True


@pytest.mark.parametrize("key", ["_dlt_id", "_dlt_load_id", "_DLT_note", "_dlt"])
def test_a_key_never_gets_a_column_dlt_takes_for_its_own(key: str) -> None:
    [assigned] = assign(FieldColumns(), key)
    assert not assigned.startswith("_dlt"), assigned


@pytest.mark.parametrize("key", DOCUMENTED_FIELDS)
def test_documented_fields_spelled_exactly_keep_their_column(key: str) -> None:
    columns = FieldColumns()
    # Even after a differently spelled one (which may not take it).
    assert assign(columns, key.upper(), key) == [hashed(key.upper()), key]
    assert assign(columns, key) == [key]
    assert [f.field_key for f in columns.take_new()] == [key.upper()]


# --- awkward keys ------------------------------------------------------------------------------


def test_blank_and_whitespace_keys() -> None:
    columns = FieldColumns()
    assigned = assign(columns, "", " ", "\t\n", "blank_field")
    assert assigned == ["blank_field", hashed(" "), hashed("\t\n"), hashed("blank_field")]
    assert hashed(" ").startswith("blank_field_")
    assert len(set(assigned)) == 4
    assert [f.renamed for f in columns.take_new()] == [False, True, True, True]


def test_a_key_named_blank_field_first_leaves_blank_keys_hashed() -> None:
    assert assign(FieldColumns(), "blank_field", "") == ["blank_field", f"blank_field_{sha8('')}"]


def test_non_ascii_keys_that_dlt_maps_to_x() -> None:
    keys = ("名前", "電話", "Ñandú", "x")
    assert column("名前") == column("電話") == "x"
    columns = FieldColumns()

    assigned = assign(columns, *keys)

    assert assigned[0] == "x"
    assert assigned[1] == f"x_{sha8('電話')}"
    assert assigned[3] == f"x_{sha8('x')}"
    assert len(set(assigned)) == len(keys)
    for name in assigned:
        assert naming.normalize_identifier(name) == name


def test_200_character_keys() -> None:
    long_a, long_b = "a" * 199 + "b", "a" * 199 + "c"
    upper = "A" * 199 + "B"  # dlt's column equals long_a's
    columns = FieldColumns()

    assigned = assign(columns, long_a, long_b, upper)

    assert assigned == [long_a, long_b, f"{long_a}_{sha8(upper)}"]


@pytest.mark.parametrize("max_length", [63, 127])
def test_200_character_keys_fit_the_destinations_limit(max_length: int) -> None:
    limited = NamingConvention(max_length)
    long_a, long_b, upper = "a" * 199 + "b", "a" * 199 + "c", "A" * 199 + "B"
    columns = FieldColumns(max_length=max_length)

    assigned = assign(columns, long_a, long_b, upper, "Lead Score", "lead_score")

    assert len(set(assigned)) == len(assigned)
    for name in assigned:
        assert len(name) <= max_length
        assert limited.normalize_identifier(name) == name
    assert assigned[0] == column(long_a, limited)
    assert assigned[2] != assigned[0]
    assert assigned[3:] == ["lead_score", hashed("lead_score")]
    again = FieldColumns(columns.known, max_length=max_length)
    assert assign(again, long_a, long_b, upper) == assigned[:3]


def test_a_long_key_that_is_only_shortened_is_not_renamed() -> None:
    columns = FieldColumns(max_length=63)
    [assigned] = assign(columns, "a" * 200)
    assert assigned == column("a" * 200, NamingConvention(63))
    [field] = columns.take_new()
    assert field.renamed is False


# --- take_new ----------------------------------------------------------------------------------


def test_take_new_returns_each_new_assignment_once() -> None:
    columns = FieldColumns({"Known": "known"})
    before = datetime.now(UTC)
    assign(columns, "Lead Score", "lead_score", "Known", contact_id="c1")
    assign(columns, "Lead Score", "名前", "email", "ID", contact_id="c2")
    after = datetime.now(UTC)

    new = columns.take_new()

    assert [(f.field_key, f.column_name, f.first_seen_contact_id) for f in new] == [
        ("Lead Score", "lead_score", "c1"),
        ("lead_score", hashed("lead_score"), "c1"),
        ("名前", "x", "c2"),
        ("ID", hashed("ID"), "c2"),
    ]
    for field in new:
        assert isinstance(field, FieldColumn)
        assert field.first_seen_run_id == RUN_ID
        assert before <= field.first_seen_at <= after
        assert field.renamed is (field.column_name != column(field.field_key))
    assert [f.renamed for f in new] == [False, True, False, True]
    assert columns.take_new() == []
    assign(columns, "名前", "Nickname")
    assert [f.field_key for f in columns.take_new()] == ["Nickname"]


# --- property ----------------------------------------------------------------------------------

KEYS = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            *AUDIT_META_COLUMNS,
            *DOCUMENTED_FIELDS,
            "_dlt_id",
            "Run ID",
            "ID",
            "Email",
            "Lead Score",
            "lead_score",
            "leadScore",
            "",
            " ",
            "blank_field",
            "名前",
            "電話",
            "x",
            "a" * 200,
            "A" * 200,
        ]
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(KEYS, max_size=12), st.sampled_from([None, 63]))
def test_every_key_gets_a_column_of_its_own_by_the_rule(
    keys: list[str], max_length: int | None
) -> None:
    convention = NamingConvention(max_length) if max_length else naming
    columns = FieldColumns(max_length=max_length)

    assigned = dict(zip(keys, assign(columns, *keys), strict=True))

    claimed: set[str] = set()
    for key, name in assigned.items():  # first sightings, in order
        own = column(key, convention)
        if key in DOCUMENTED_FIELDS:
            assert name == key
        elif own not in claimed and not reserved(own):
            assert name == own, key
        else:
            assert name != own, key
            if max_length is None and not own.startswith("_dlt"):
                assert name == hashed(key), key
        assert convention.normalize_identifier(name) == name
        assert name not in AUDIT_META_COLUMNS
        claimed.add(name)
    assert len(set(assigned.values())) == len(assigned)
    # Stable: again, and from what a later run loads back.
    assert assign(columns, *keys) == [assigned[k] for k in keys]
    again = FieldColumns(columns.known, max_length=max_length)
    assert assign(again, *reversed(keys)) == [assigned[k] for k in reversed(keys)]
    assert again.take_new() == []


# --- build_audit_rows --------------------------------------------------------------------------


def outcome_for(contact_id: str, request_id: str | None = None, **fields: Any) -> ArchiveOutcome:
    body = {"id": contact_id, "archived": ARCHIVED_AT, "archived_by": "user", **fields}
    raw = json.dumps(body)
    _, record, _ = parse_archived_record(raw, ObjectType.CONTACTS, contact_id)
    return ArchiveOutcome(
        request=ArchiveRequest(request_id=request_id or f"req-{contact_id}", contact_id=contact_id),
        status=Status.ARCHIVED,
        http_status=200,
        attempts=1,
        record=record,
        raw_response=raw,
        record_source="delete",
    )


def test_build_audit_rows_emits_one_fields_row_per_new_key() -> None:
    outcomes = [
        outcome_for("c1", **{"Lead Score": 1, "名前": "n"}),
        outcome_for("c2", **{"lead_score": 2, "Lead Score": 3, "email": "a@b"}),
        ArchiveOutcome(
            request=ArchiveRequest(request_id="req-x", contact_id="cx"), status=Status.FAILED
        ),
    ]

    rows = build_audit_rows(outcomes, RUN_ID)

    assert [(f["field_key"], f["column_name"], f["renamed"]) for f in rows.fields] == [
        ("Lead Score", "lead_score", False),
        ("名前", "x", False),
        ("lead_score", hashed("lead_score"), True),
    ]
    assert [f["first_seen_contact_id"] for f in rows.fields] == ["c1", "c1", "c2"]
    assert {f["first_seen_run_id"] for f in rows.fields} == {RUN_ID}
    for field in rows.fields:
        assert isinstance(field["first_seen_at"], datetime)
    # Each fields row names the column its values are in.
    by_id = {row["id"]: row for row in rows.records}
    assert by_id["c1"]["lead_score"] == 1
    assert by_id["c2"]["lead_score"] == 3
    assert by_id["c2"][hashed("lead_score")] == 2
    assert len(rows.log) == 3


def test_build_audit_rows_emits_no_fields_row_for_keys_seen_before() -> None:
    columns = FieldColumnsByType({(ObjectType.CONTACTS, "Lead Score"): "lead_score"})
    first = build_audit_rows(
        [outcome_for("c1", **{"Lead Score": 1, "Nickname": "n"})], RUN_ID, columns
    )
    assert [f["field_key"] for f in first.fields] == ["Nickname"]

    second = build_audit_rows(
        [outcome_for("c2", **{"Nickname": "m", "Lead Score": 2, "lead_score": 3})], RUN_ID, columns
    )

    assert [f["field_key"] for f in second.fields] == ["lead_score"]
    assert second.records[0]["lead_score"] == 2
    assert second.records[0]["nickname"] == "m"
    again = FieldColumnsByType(columns.known)
    third = build_audit_rows([outcome_for("c3", Nickname="o")], RUN_ID, again)
    assert third.fields == []


def test_build_audit_rows_keeps_one_archives_row_per_contact() -> None:
    outcomes = [
        outcome_for("c1", "req-1", note="first"),
        outcome_for("c2", "req-2", note="other"),
        outcome_for("c1", "req-3", note="second"),
    ]

    rows = build_audit_rows(outcomes, RUN_ID)

    assert [(r["id"], r["note"], r["request_id"]) for r in rows.records] == [
        ("c1", "first", "req-1"),
        ("c2", "other", "req-2"),
    ]
    assert [r["request_id"] for r in rows.log] == ["req-1", "req-2", "req-3"]
    assert [f["field_key"] for f in rows.fields] == ["note"]
