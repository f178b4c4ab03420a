"""`all_archives`: every type's audit table as one, with the columns they share.

Each type has a table of its own (`ObjectType.table`), with its own fields; what an auditor
asks across types (who archived what, per day, per person, what was recovered) reads only the
columns every table has, so it is one `UNION ALL` with the type as a column. The report makes
it over the tables a dataset has; the shipped audit queries (`audit/sql/`) hold it, word for
word, over all four (a run makes every type's table at its first load: `empty_archives`).

It is SQL, not a view in the destination: a view on PostgreSQL makes `DROP TABLE` of the
tables it reads fail without CASCADE, which is how dlt drops a table (`dlt pipeline drop`,
`refresh`), and dlt would not know the view it broke on.
"""

from collections.abc import Mapping, Sequence
from typing import Final

from routera_archive.objects import ObjectType

SHARED_COLUMNS: Final = (
    "id",
    "external_id",
    "archived",
    "archived_by",
    "created_at",
    "updated_at",
    "request_id",
    "requested_by",
    "reason",
    "requested_at",
    "run_id",
    "recovered",
    "record_source",
)
"""Columns every type's audit table has (and the previous release's `contact_archives`)."""


def all_archives_sql(
    tables: Mapping[ObjectType, str], columns: Sequence[str] = SHARED_COLUMNS
) -> str:
    """One SELECT per type's table (`tables`: qualified names), `object_type` first, then
    `columns`, joined by UNION ALL; empty when there is no table."""
    listed = ", ".join(columns)
    return "\nUNION ALL\n".join(
        f"SELECT '{kind.value}' AS object_type, {listed} FROM {table}"
        for kind, table in tables.items()
    )
