"""Reading ids to enqueue: plain lines or a CSV with `contact_id`; completing rows for the queue."""

from datetime import UTC, datetime, timedelta

from routera_archive.dataset.enqueue import invalid_rows, parse_ids, queue_rows
from routera_archive.objects import ObjectType


def ids(text: str) -> list[str]:
    return [row["contact_id"] for row in parse_ids(text).rows]


# --- parse_ids: plain lines ------------------------------------------------------------------


def test_plain_lines_are_stripped_and_blank_lines_counted() -> None:
    parsed = parse_ids("  c1  \n\n\tc2\t\n   \nc 3\n\n")
    assert parsed.rows == [{"contact_id": "c1"}, {"contact_id": "c2"}, {"contact_id": "c 3"}]
    assert parsed.skipped_blank == 3


def test_crlf_line_ends_leave_no_carriage_return() -> None:
    assert ids("c1\r\nc2\r\n\r\nc3") == ["c1", "c2", "c3"]
    assert parse_ids("c1\r\nc2\r\n\r\nc3").skipped_blank == 1


def test_plain_ids_are_kept_as_given_inside_the_line() -> None:
    # What is inside a line is for the run to judge (`invalid`), not for the parser to fix.
    assert ids("a/b\n..\nx\x00y\n名前\n") == ["a/b", "..", "x\x00y", "名前"]


def test_a_first_id_with_a_comma_is_not_a_csv_header() -> None:
    parsed = parse_ids("a,b\nc\nd,e\n")
    assert parsed.rows == [{"contact_id": "a,b"}, {"contact_id": "c"}, {"contact_id": "d,e"}]


def test_a_single_column_file_of_ids_is_not_csv() -> None:
    assert ids("id\nc1\n") == ["id", "c1"]


def test_empty_input_has_no_rows() -> None:
    assert parse_ids("").rows == []
    assert parse_ids("\n \n").rows == []


# --- parse_ids: CSV --------------------------------------------------------------------------


def test_csv_with_contact_id_and_extra_columns() -> None:
    text = (
        "segment,Contact_ID ,requested_by,reason,request_id\r\n"
        "vip, c1 ,alice,GDPR,req-1\r\n"
        'churn,c2,bob,"asked, twice",\r\n'
        "none,,carol,why,\r\n"
        "x,c3,,,\r\n"
    )
    parsed = parse_ids(text)
    assert parsed.rows == [
        {"contact_id": "c1", "requested_by": "alice", "reason": "GDPR", "request_id": "req-1"},
        {"contact_id": "c2", "requested_by": "bob", "reason": "asked, twice"},
        {"contact_id": "c3"},
    ]
    assert parsed.skipped_blank == 1


def test_csv_with_only_a_contact_id_header() -> None:
    parsed = parse_ids("contact_id\nc1\n\nc2\n")
    assert parsed.rows == [{"contact_id": "c1"}, {"contact_id": "c2"}]


def test_csv_ids_keep_commas_when_quoted() -> None:
    assert ids('contact_id,reason\n"a,b",r\n') == ["a,b"]


def test_csv_after_a_leading_blank_line() -> None:
    parsed = parse_ids("\ncontact_id,reason\nc1,GDPR\n")
    assert parsed.rows == [{"contact_id": "c1", "reason": "GDPR"}]


def test_csv_with_a_byte_order_mark() -> None:
    parsed = parse_ids("\ufeffcontact_id,reason\nc1,GDPR\n")
    assert parsed.rows == [{"contact_id": "c1", "reason": "GDPR"}]


# --- invalid_rows ----------------------------------------------------------------------------


def test_invalid_rows_names_each_bad_row_by_position() -> None:
    rows = [
        {"contact_id": "ok"},
        {"contact_id": ""},
        {"contact_id": None},
        {},
        {"contact_id": "a\x00b"},
        {"contact_id": ".."},
        {"contact_id": "x" * 300},
        {"contact_id": "a/b"},
        {"contact_id": "名前"},
    ]
    problems = invalid_rows(rows)
    assert [position for position, _ in problems] == [2, 3, 4, 5, 6, 7]
    reasons = dict(problems)
    assert "empty" in reasons[2]
    assert "NULL" in reasons[3]
    assert "NULL" in reasons[4]
    assert "U+0000" in reasons[5]
    assert "dot-segment" in reasons[6]
    assert "300" in reasons[7]
    assert len(reasons[7]) < 200  # the id itself is cut in the message


def test_invalid_rows_of_valid_rows_is_empty() -> None:
    assert invalid_rows(parse_ids("c1\nc2\n").rows) == []


# --- queue_rows ------------------------------------------------------------------------------


def test_queue_rows_completes_each_row() -> None:
    before = datetime.now(UTC)
    rows = list(
        queue_rows(
            [
                {"contact_id": "c1"},
                {"contact_id": "c2", "request_id": "given-1"},
                {"contact_id": "c3", "requested_by": "alice", "reason": "GDPR"},
                {"contact_id": "c4"},
            ],
            requested_by="cli-user",
            reason="cleanup",
        )
    )
    after = datetime.now(UTC)

    assert [r["contact_id"] for r in rows] == ["c1", "c2", "c3", "c4"]
    assert rows[1]["request_id"] == "given-1"
    fresh = [rows[0]["request_id"], rows[2]["request_id"], rows[3]["request_id"]]
    assert len(set(fresh)) == 3
    assert all(isinstance(r, str) and len(r) >= 16 and r != "given-1" for r in fresh)
    assert (rows[0]["requested_by"], rows[0]["reason"]) == ("cli-user", "cleanup")
    assert (rows[2]["requested_by"], rows[2]["reason"]) == ("alice", "GDPR")
    for row in rows:
        assert set(row) == {"request_id", "contact_id", "requested_by", "reason", "requested_at"}
        requested_at = row["requested_at"]
        assert requested_at.tzinfo is not None
        assert requested_at.utcoffset() == timedelta(0)
        assert before <= requested_at <= after


def test_queue_rows_request_ids_are_fresh_across_calls() -> None:
    rows = [{"contact_id": "c1"}]
    first = next(queue_rows(rows, requested_by=None, reason=None))
    second = next(queue_rows(rows, requested_by=None, reason=None))
    assert first["request_id"] != second["request_id"]
    assert first["requested_by"] is None
    assert first["reason"] is None


# --- object types (issue 14) -----------------------------------------------------------------


def test_a_csv_may_name_its_ids_object_id_and_carry_each_row_s_type() -> None:
    parsed = parse_ids("object_id,object_type,reason\nco1,companies,merge\nc1,,\nd1,deals,\n")
    assert parsed.rows == [
        {"contact_id": "co1", "object_type": "companies", "reason": "merge"},
        {"contact_id": "c1"},
        {"contact_id": "d1", "object_type": "deals"},
    ]


def test_a_contact_stays_in_contact_id_and_another_type_moves_to_object_id() -> None:
    rows = list(
        queue_rows(
            [{"contact_id": "x1"}, {"contact_id": "x2", "object_type": "contacts"}],
            requested_by=None,
            reason=None,
            object_type=ObjectType.COMPANIES,
        )
    )
    assert [(r.get("contact_id"), r.get("object_type"), r.get("object_id")) for r in rows] == [
        (None, "companies", "x1"),
        ("x2", None, None),
    ]
    contacts = list(queue_rows([{"contact_id": "c1"}], requested_by=None, reason=None))
    assert set(contacts[0]) == {
        "request_id",
        "contact_id",
        "requested_by",
        "reason",
        "requested_at",
    }


def test_a_row_whose_type_is_not_one_is_refused_with_the_spelling_it_resembles() -> None:
    problems = invalid_rows(
        [
            {"contact_id": "a", "object_type": "Companies"},
            {"contact_id": "b"},
            {"contact_id": ".."},
        ],
        ObjectType.DEALS,
    )
    assert [position for position, _ in problems] == [1, 3]
    assert "spelled exactly: 'companies'" in problems[0][1]


def test_a_csv_with_both_id_columns_reads_object_id_and_refuses_a_contact_id_that_differs() -> None:
    """Found by review: only contact_id was read, so a company was archived by a contact's
    id and rows named by object_id alone were dropped as blank."""
    parsed = parse_ids(
        "object_type,contact_id,object_id\ncompanies,c-1,co-1\ncompanies,,co-2\n,c-3,c-3\n"
    )
    assert [row["contact_id"] for row in parsed.rows] == ["co-1", "co-2", "c-3"]
    assert parsed.skipped_blank == 0
    problems = invalid_rows(parsed.rows)
    assert [position for position, _ in problems] == [1]
    assert "differ" in problems[0][1]


def test_a_contact_id_cell_on_a_row_of_another_type_is_refused() -> None:
    parsed = parse_ids("object_type,contact_id\ndeals,x-1\ncontacts,c-2\n")
    problems = invalid_rows(parsed.rows)
    assert [position for position, _ in problems] == [1]
    assert "object_id" in problems[0][1]
    # A file of one type's ids in a contact_id column, typed by --object-type, is that type's.
    plain = parse_ids("contact_id\nco-1\n")
    assert invalid_rows(plain.rows, ObjectType.COMPANIES) == []
