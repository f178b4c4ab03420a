"""Which column each record key is stored in, so no two keys ever share one.

dlt normalises names (`Lead Score`, `leadScore` and `lead_score` all become `lead_score`) and
would merge such keys into one column, last value winning. Routera's internal names are
generated from labels and editable, so such keys can exist side by side. The rule:

1. A documented field (`id`, `email`, `archived`, ...) spelled exactly as documented keeps its
   column.
2. Every other key, the first time it is seen, claims the column dlt would give it, if no other
   key has claimed that column and it is not one of ours (`run_id`, `raw_response`, `_dlt_*`,
   a documented field's column).
3. Otherwise it gets `<column>_<first 8 hex digits of sha1(key)>`: the same key always gets the
   same name, whatever it meets.

Names are final: they are what dlt's snake_case convention makes of them, shortened (with dlt's
own hash) to the destination's identifier limit, so dlt never renames, or merges, them again.

Assignments are remembered in the `custom_fields` table, loaded with the rows that use them, so
the next run (on any machine) keeps them. Each object type has its own audit table, so its own
assignments (`FieldColumnsByType`): a company's documented `company_name` keeps its column
whatever contacts carry, and `custom_fields` says which type a key belongs to (a row written
before types existed belongs to contacts).
"""

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from dlt.common.normalizers.naming.snake_case import NamingConvention

from routera_archive.objects import ObjectType

# Fields Routera documents for contacts (each type's: `ObjectType.default_properties`).
DOCUMENTED_FIELDS: tuple[str, ...] = (
    "id",
    "external_id",
    "first_name",
    "last_name",
    "email",
    "contact_owner",
    "created_at",
    "updated_at",
    "archived",
    "archived_by",
)
# Columns the connector itself writes into `contact_archives`.
AUDIT_META_COLUMNS: tuple[str, ...] = (
    "request_id",
    "requested_by",
    "reason",
    "requested_at",
    "run_id",
    "recovered",
    "record_source",
    "raw_response",
    "snapshot_response",
    "record_sha256",
    "snapshot_sha256",
)
BLANK_FIELD_COLUMN = "blank_field"

_naming = NamingConvention()


def column_of(key: str, naming: NamingConvention = _naming) -> str:
    """The column dlt would store `key` in; a blank key (dlt refuses it) gets a fixed name."""
    return naming.normalize_identifier(key) if key.strip() else BLANK_FIELD_COLUMN


def is_ours(column: str, documented: frozenset[str] | tuple[str, ...] = DOCUMENTED_FIELDS) -> bool:
    """True for a column no record key may claim: ours, dlt's, or a documented field's."""
    return column in AUDIT_META_COLUMNS or column in documented or column.startswith("_dlt")


def _suffixed(
    column: str,
    key: str,
    naming: NamingConvention,
    taken: set[str],
    documented: frozenset[str] | tuple[str, ...] = DOCUMENTED_FIELDS,
) -> str:
    """`<column>_<hash of key>`, with more hash digits in the (unlikely) case that one is taken.

    A `_dlt` prefix is dropped first: dlt treats such columns as its own (they escape schema
    contracts), so no key may land in one.
    """
    if column.startswith("_dlt"):
        column = f"field{column}"
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()
    for digits in range(8, len(digest) + 1, 4):
        candidate = naming.normalize_identifier(f"{column}_{digest[:digits]}")
        if candidate not in taken and not is_ours(candidate, documented):
            return candidate
    raise ValueError(f"no free column for field {key!r}")  # needs a 160-bit collision


@dataclass(frozen=True)
class FieldColumn:
    """One assignment: a key as Routera sent it, and the column that holds it."""

    field_key: str
    column_name: str
    first_seen_at: datetime
    first_seen_run_id: str
    first_seen_contact_id: str
    # What dlt alone would have named it (for this destination's identifier length).
    natural_column: str
    # The type whose audit table holds the column.
    object_type: ObjectType = ObjectType.CONTACTS

    @property
    def renamed(self) -> bool:
        """True when the column is not simply dlt's name for the key (a collision was avoided)."""
        return self.column_name != self.natural_column


class FieldColumns:
    """The key → column assignments of one type's audit table, growing as new keys arrive."""

    def __init__(
        self,
        known: dict[str, str] | None = None,
        *,
        max_length: int | None = None,
        object_type: ObjectType = ObjectType.CONTACTS,
    ) -> None:
        """`max_length`: the destination's column name limit (PostgreSQL: 63), if any."""
        self.object_type = object_type
        self._documented = object_type.default_properties
        self._naming = NamingConvention(max_length) if max_length else _naming
        self._by_key: dict[str, str] = dict(known or {})
        self._claimed: set[str] = set(self._by_key.values())
        self._new: list[FieldColumn] = []

    @property
    def known(self) -> dict[str, str]:
        return dict(self._by_key)

    def column_for(self, key: str, *, run_id: str, contact_id: str) -> str:
        if key in self._documented:
            return key
        if (column := self._by_key.get(key)) is not None:
            return column
        natural = column_of(key, self._naming)
        column = natural
        if column in self._claimed or is_ours(column, self._documented):
            column = _suffixed(column, key, self._naming, self._claimed, self._documented)
        self._by_key[key] = column
        self._claimed.add(column)
        self._new.append(
            FieldColumn(
                key, column, datetime.now(UTC), run_id, contact_id, natural, self.object_type
            )
        )
        return column

    def take_new(self) -> list[FieldColumn]:
        """Assignments made since the last call (each is loaded once, with its rows)."""
        new, self._new = self._new, []
        return new


class FieldColumnsByType:
    """A dataset's assignments, one `FieldColumns` per type's audit table."""

    def __init__(
        self,
        known: dict[tuple[ObjectType, str], str] | None = None,
        *,
        max_length: int | None = None,
    ) -> None:
        """`known`: (type, key) -> column, as `custom_fields` holds them."""
        by_type: dict[ObjectType, dict[str, str]] = {kind: {} for kind in ObjectType}
        for (kind, key), column in (known or {}).items():
            by_type[kind][key] = column
        self._columns = {
            kind: FieldColumns(by_type[kind], max_length=max_length, object_type=kind)
            for kind in ObjectType
        }

    def of(self, object_type: ObjectType) -> FieldColumns:
        return self._columns[object_type]

    @property
    def known(self) -> dict[tuple[ObjectType, str], str]:
        return {
            (kind, key): column
            for kind, columns in self._columns.items()
            for key, column in columns.known.items()
        }

    def take_new(self) -> list[FieldColumn]:
        """Assignments made since the last call, of every type (`FieldColumn.object_type`)."""
        return [field for columns in self._columns.values() for field in columns.take_new()]
