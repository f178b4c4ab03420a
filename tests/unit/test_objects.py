"""The object types: each one's path, words, table and default fields, and the one reading of a
queued `object_type` (absent means contacts; anything but an exact type is refused)."""

from datetime import UTC, datetime

import pytest

from routera_archive.names import ARCHIVES_TABLE
from routera_archive.objects import NotAnObjectType, ObjectType, parse_object_type
from routera_archive.run.result import RunReport

# The contacts' default properties before object types existed (models.DEFAULT_PROPERTIES):
# `RunReport.note_record` says "only default properties" by this set, so it must not move.
CONTACT_DEFAULTS_BEFORE = frozenset(
    {
        "id",
        "first_name",
        "last_name",
        "email",
        "contact_owner",
        "external_id",
        "archived",
        "created_at",
        "updated_at",
        "archived_by",
    }
)
# What every answer holds whatever its type (routera-api.md).
STAMPS = {"created_at", "updated_at", "archived_by"}


@pytest.mark.parametrize(
    ("kind", "path", "singular", "table", "id_field"),
    [
        (ObjectType.CONTACTS, "/contacts", "contact", "contact_archives", "contact_id"),
        (ObjectType.COMPANIES, "/companies", "company", "company_archives", "object_id"),
        (ObjectType.DEALS, "/deals", "deal", "deal_archives", "object_id"),
        (ObjectType.TICKETS, "/tickets", "ticket", "ticket_archives", "object_id"),
    ],
)
def test_each_type_has_its_own_path_words_and_table(
    kind: ObjectType, path: str, singular: str, table: str, id_field: str
) -> None:
    assert kind.value == path.removeprefix("/")
    assert kind.path == path
    assert kind.singular == singular
    assert kind.table == table
    assert kind.id_field == id_field


def test_the_four_types_in_the_reference_s_order() -> None:
    assert [kind.value for kind in ObjectType] == ["contacts", "companies", "deals", "tickets"]


def test_the_contacts_table_is_the_one_names_has_always_named() -> None:
    assert ARCHIVES_TABLE == ObjectType.CONTACTS.table == "contact_archives"


def test_the_contacts_default_properties_are_unchanged() -> None:
    assert ObjectType.CONTACTS.default_properties == CONTACT_DEFAULTS_BEFORE


@pytest.mark.parametrize(
    ("kind", "own"),
    [  # the reference's table of default response fields, per path segment
        (ObjectType.CONTACTS, "id first_name last_name email contact_owner external_id archived"),
        (
            ObjectType.COMPANIES,
            "id company_name description industry company_owner external_id archived",
        ),
        (ObjectType.DEALS, "id deal_name pipeline deal_stage deal_owner external_id archived"),
        (ObjectType.TICKETS, "id ticket_name pipeline ticket_owner external_id archived"),
    ],
)
def test_default_properties_are_the_reference_s_per_type(kind: ObjectType, own: str) -> None:
    assert kind.default_properties == frozenset(own.split()) | STAMPS


@pytest.mark.parametrize("kind", list(ObjectType))
def test_an_exact_type_is_read_as_itself(kind: ObjectType) -> None:
    assert parse_object_type(kind.value) is kind
    assert parse_object_type(str(kind.value)) is kind


def test_absent_means_contacts() -> None:
    assert parse_object_type(None) is ObjectType.CONTACTS


@pytest.mark.parametrize(
    ("raw", "meant"),
    [
        ("Contacts", "contacts"),
        ("COMPANIES", "companies"),
        (" deals", "deals"),
        ("tickets ", "tickets"),
        ("tickets\n", "tickets"),
        ("company", "companies"),
        ("Deal", "deals"),
        ("contact", "contacts"),
    ],
)
def test_a_near_miss_is_refused_and_names_the_exact_spelling(raw: str, meant: str) -> None:
    refused = parse_object_type(raw)
    assert isinstance(refused, NotAnObjectType)
    assert refused.reason == (
        f"object_type {raw!r} is not one of contacts, companies, deals, tickets "
        f"(spelled exactly: {meant!r}?)"
    )


@pytest.mark.parametrize("raw", ["", "   ", "accounts", "contacts,companies", "contacts\x00"])
def test_any_other_text_is_refused_without_a_guess(raw: str) -> None:
    refused = parse_object_type(raw)
    assert isinstance(refused, NotAnObjectType)
    assert refused.reason.startswith(f"object_type {raw!r} is not one of ")
    assert "spelled exactly" not in refused.reason


@pytest.mark.parametrize(
    ("raw", "type_name"), [(1, "int"), (True, "bool"), (b"contacts", "bytes"), (1.5, "float")]
)
def test_a_value_that_is_not_text_is_refused(raw: object, type_name: str) -> None:
    assert parse_object_type(raw) == NotAnObjectType(f"object_type has type {type_name}, not text")


def test_a_long_value_is_cut_in_the_reason() -> None:
    refused = parse_object_type("x" * 500)
    assert isinstance(refused, NotAnObjectType)
    assert len(refused.reason) < 120 and "…" in refused.reason


@pytest.mark.parametrize("kind", list(ObjectType))
def test_a_run_tells_custom_fields_by_the_record_s_own_type_s_defaults(kind: ObjectType) -> None:
    report = RunReport("run", "run", datetime.now(UTC), "https://api.test", "duckdb", "ds")
    defaults_only = dict.fromkeys(kind.default_properties, "x")
    report.note_record(defaults_only, kind)
    assert report.keys_beyond_defaults == set()
    # The same record read as another type's carries that type's "custom" fields.
    other = ObjectType.DEALS if kind is ObjectType.CONTACTS else ObjectType.CONTACTS
    report.note_record({**defaults_only, "tier": "gold"}, other)
    assert "tier" in report.keys_beyond_defaults
    assert report.keys_beyond_defaults == set(defaults_only) - other.default_properties | {"tier"}
    assert report.records_kept == 2
