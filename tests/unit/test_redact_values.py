"""What a redaction does to one row's values (`dataset.redact`), and the chain link's hash
(`dataset.chain.ChainLink`): pure functions, no destination."""

import contextlib
import dataclasses
import json
from collections.abc import Iterator

import pytest

from routera_archive.dataset.chain import GENESIS, ChainLink, Digest, rows_sha256
from routera_archive.dataset.redact import (
    REDACTED,
    _personal_columns,
    personal_values,
    redact_body,
    redact_text,
    row_change,
)
from routera_archive.objects import ObjectType

KEYS = frozenset({"email", "first_name", "last_name", "phone"})


def test_a_body_keeps_every_key_and_every_other_value() -> None:
    body = json.dumps(
        {
            "id": "c1",
            "email": "ann.lee@example.com",
            "first_name": "Ann",
            "lead_score": 1.5e300,
            "is_customer": False,
            "nested": {"phone": 5550100, "note": "mail ann.lee@example.com"},
            "list": [{"last_name": "Lee"}, None],
            "empty": None,
        }
    )
    redacted = json.loads(redact_body(body, KEYS, ["ann.lee@example.com", "Ann", "Lee"]))
    assert redacted == {
        "id": "c1",
        "email": REDACTED,
        "first_name": REDACTED,
        "lead_score": 1.5e300,
        "is_customer": False,
        "nested": {"phone": REDACTED, "note": f"mail {REDACTED}"},
        "list": [{"last_name": REDACTED}, None],
        "empty": None,
    }


def test_a_body_with_nothing_to_redact_is_kept_byte_for_byte() -> None:
    body = '{"id": "c1",   "company": "Acme"}'
    assert redact_body(body, KEYS, []) == body


def test_a_body_that_is_not_json_has_each_known_value_replaced_as_text() -> None:
    body = '{"id": "c1", "email": "ann.lee@example.com", "first_na'  # cut short
    assert redact_body(body, KEYS, ["ann.lee@example.com", "Al"]) == (
        f'{{"id": "c1", "email": "{REDACTED}", "first_na'
    )


def test_longer_values_are_replaced_first() -> None:
    assert redact_text("ann@example.com and ann", ["ann", "ann@example.com"]) == (
        f"{REDACTED} and {REDACTED}"
    )


def test_a_row_change_nulls_personal_columns_and_redacts_what_quotes_them() -> None:
    row = {
        "id": "c1",
        "email": "ann.lee@example.com",
        "first_name": "Ann",
        "phone": None,
        "company": "Annex Ltd",  # holds the short first name: left alone
        "note": "asked by ann.lee@example.com",
        "request_id": "r1",
        "raw_response": json.dumps({"id": "c1", "email": "ann.lee@example.com"}),
        "record_sha256": "ab" * 32,
    }
    change = row_change(
        "contact_archives",
        row,
        personal_columns=frozenset({"email", "first_name", "phone"}),
        personal_keys=KEYS,
        text_columns=frozenset({"email", "first_name", "company", "note"}),
    )
    assert change == {
        "email": None,
        "first_name": None,
        "raw_response": json.dumps({"id": "c1", "email": REDACTED}, separators=(",", ":")),
        "note": f"asked by {REDACTED}",
    }
    redone = {**row, **change}
    again = row_change(
        "contact_archives",
        redone,
        personal_columns=frozenset({"email", "first_name", "phone"}),
        personal_keys=KEYS,
        text_columns=frozenset({"email", "first_name", "company", "note"}),
    )
    assert again == {}  # a redacted row is left as it is


LINK = ChainLink(
    chain_seq=2,
    run_id="r2",
    previous_chain_sha256=GENESIS,
    rows_sha256="1" * 64,
    run_sha256="2" * 64,
    digested_rows=3,
    adopted_run_ids=("r0", "r1"),
)


@pytest.mark.parametrize(
    "changed",
    [
        {"chain_seq": 3},
        {"run_id": "r3"},
        {"previous_chain_sha256": "f" * 64},
        {"rows_sha256": "3" * 64},
        {"run_sha256": "4" * 64},
        {"digested_rows": 4},
        {"adopted_run_ids": ("r0",)},
        {"canonical_form": "routera-archive/row-v2"},
    ],
)
def test_every_figure_of_a_link_is_in_its_hash(changed: dict[str, object]) -> None:
    assert dataclasses.replace(LINK, **changed).expected_sha256() != LINK.expected_sha256()  # type: ignore[arg-type]


def test_a_link_reads_back_as_it_was_sealed() -> None:
    sealed = LINK.sealed()
    row = {**dataclasses.asdict(sealed), "adopted_run_ids": json.dumps(["r1", "r0"])}
    assert ChainLink.from_row(row).expected_sha256() == sealed.chain_sha256
    assert dataclasses.replace(LINK, adopted_run_ids=("r1", "r0")).expected_sha256() == (
        sealed.chain_sha256
    )  # the adopted ids are hashed sorted


def test_rows_sha256_does_not_depend_on_the_order_read_and_sees_each_digest() -> None:
    digests = [Digest("t", '["a"]', "1" * 64), Digest("t", '["b"]', "2" * 64)]
    assert rows_sha256(digests) == rows_sha256(list(reversed(digests)))
    assert rows_sha256(digests[:1]) != rows_sha256(digests)
    assert rows_sha256([Digest("t", '["a"]', "3" * 64), digests[1]]) != rows_sha256(digests)


class _FieldsClient:
    """An sql_client whose `custom_fields` holds `rows` (field_key, column_name, object_type)."""

    def __init__(self, rows: list[tuple[str, str, str | None]]) -> None:
        self.rows = rows

    def make_qualified_table_name(self, name: str) -> str:
        return name

    @contextlib.contextmanager
    def execute_query(self, query: str, *args: object) -> Iterator[object]:
        rows = list(self.rows)

        class Cursor:
            description = [("field_key",), ("column_name",), ("object_type",)]

            def fetchmany(self, size: int) -> list[tuple[str, str, str | None]]:
                taken, rows[:] = rows[:size], rows[size:]
                return taken

        yield Cursor()


def test_personal_columns_include_renamed_fields_and_variant_columns() -> None:
    columns = {
        "id": "text",
        "email": "text",
        "email__v_json": "json",  # a value dlt could not make text
        "phone_number": "text",  # not `phone`
        "mobile_1": "text",  # `mobile`, renamed because `mobile` was taken
        "request_id": "text",
    }
    client = _FieldsClient([("mobile", "mobile_1", "contacts"), ("mobile", "m", "companies")])
    found = _personal_columns(client, ObjectType.CONTACTS, ("email", "phone", "mobile"), columns)
    assert found == {"email", "email__v_json", "mobile_1"}


def test_a_personal_field_holding_a_list_or_an_object_has_every_value_in_it_redacted() -> None:
    body = json.dumps(
        {
            "id": "c1",
            "phone": {"mobile": "+44 7700 900123", "work": "+44 20 7946 0999"},
            "email": ["listed.person@example.net", "other@example.net"],
            "note": "call +44 7700 900123 or write to OTHER@EXAMPLE.NET",
        }
    )
    row = {"id": "c1", "raw_response": body, "email": None, "phone": None}
    values = personal_values(row, frozenset({"email", "phone"}), KEYS)
    assert values == {
        "+44 7700 900123",
        "+44 20 7946 0999",
        "listed.person@example.net",
        "other@example.net",
    }
    redacted = json.loads(redact_body(body, KEYS, sorted(values)))
    assert redacted == {
        "id": "c1",
        "phone": {"mobile": REDACTED, "work": REDACTED},  # every key kept
        "email": [REDACTED, REDACTED],
        # an e-mail address is found in any case; a phone number as written
        "note": f"call {REDACTED} or write to {REDACTED}",
    }


def test_facts_about_the_archiving_and_names_in_free_text_are_left_as_they_are() -> None:
    """Only e-mail addresses and phone numbers are looked for outside their own fields: a
    last name is also a company's ("Johnson Controls"); and who archived a record, its
    external id and its owners are facts of the audit, never redacted unless named."""
    row = {
        "id": "c1",
        "last_name": "Johnson",
        "phone": "4155550123",
        "company": "Johnson Controls",
        "archived_by": "johnson-import-bot",
        "external_id": "crm-4155550123",
        "contact_owner": "rep@example.com",
        "raw_response": json.dumps(
            {
                "id": "c1",
                "last_name": "Johnson",
                "phone": "4155550123",
                "company": "Johnson Controls",
                "archived_by": "johnson-import-bot",
                "external_id": "crm-4155550123",
            }
        ),
    }
    change = row_change(
        "contact_archives",
        row,
        personal_columns=frozenset({"last_name", "phone"}),
        personal_keys=KEYS,
        text_columns=frozenset(
            {"last_name", "phone", "company", "archived_by", "external_id", "contact_owner"}
        ),
    )
    assert set(change) == {"last_name", "phone", "raw_response"}
    answer = json.loads(change["raw_response"])
    assert (answer["company"], answer["archived_by"], answer["external_id"]) == (
        "Johnson Controls",
        "johnson-import-bot",
        "crm-4155550123",
    )
    assert (answer["last_name"], answer["phone"]) == (REDACTED, REDACTED)
