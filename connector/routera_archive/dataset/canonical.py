"""The canonical form of a stored row: the text whose SHA-256 `verify` recomputes.

A row's hash is taken from the row as the destination holds it (read back after its load), so
it must not depend on how a driver hands a value back. Measured on DuckDB and PostgreSQL
(tests/pipeline/test_canonical_values.py), per declared (dlt) column type, NULLs and `_dlt_*`
columns left out:

- text: the string as is; bigint: the integer; bool: the boolean;
- double: the float, `-0.0` as `0.0` (PostgreSQL drops the sign as dlt's INSERT writes it,
  DuckDB keeps it from a parquet file);
- timestamp: UTC, ISO 8601 with six fraction digits and `Z`; a naive value is UTC (the reading
  session must be in UTC: `read_in_utc`);
- json: the value parsed (DuckDB gives text, PostgreSQL the decoded `jsonb`), keys sorted,
  every number as its normalised decimal (`jsonb` keeps no int/float distinction for exponents
  and no negative zero), strings `\\u`-escaped to ASCII;
- a row: its canonical values under their column names, as compact JSON with sorted keys.

Leaving NULLs out means a column added to a table later (NULL in its old rows) leaves their
hashes as they were. `CANONICAL_FORM` names this form; a change to it is a new name.
"""

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

CANONICAL_FORM = "routera-archive/row-v1"
"""The name of this canonical form, kept with every chain link (`dataset.chain`)."""

Canonical = None | bool | int | float | str


def canonical_timestamp(value: datetime | str) -> str:
    """UTC, six fraction digits, `Z`; naive is UTC; text parsed as dlt does (µs, truncated)."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _canonical_number(value: int | float | Decimal) -> str:
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    return "0" if number.is_zero() else str(number.normalize())


def canonical_json(value: Any) -> str:
    """A JSON value as canonical text: keys sorted, numbers by decimal value, ASCII."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int | float | Decimal):
        return _canonical_number(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(canonical_json(item) for item in value) + "]"
    if isinstance(value, dict):
        items = sorted((str(key), item) for key, item in value.items())
        return "{" + ",".join(f"{json.dumps(k)}:{canonical_json(v)}" for k, v in items) + "}"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def canonical_value(value: Any, data_type: str) -> Canonical:
    """One column's value in canonical form, by the column's declared (dlt) data type.

    A value of another type than its column's (someone wrote a number into a text column)
    is canonicalised by what it is, so it hashes differently from the text it replaced.
    """
    if value is None:
        return None
    if data_type == "json":
        return canonical_json(json.loads(value) if isinstance(value, str) else value)
    if data_type == "timestamp" and isinstance(value, datetime | str):
        return canonical_timestamp(value)
    if data_type == "double" and isinstance(value, float | int | Decimal):
        number = float(value)
        return 0.0 if number == 0 else number
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return 0.0 if value == 0 else value
    if isinstance(value, datetime):
        return canonical_timestamp(value)
    if isinstance(value, Decimal):
        return _canonical_number(value)
    return str(value)


def canonical_row(row: Mapping[str, Any], types: Mapping[str, str]) -> str:
    """A row's canonical text: its non-NULL columns but `_dlt_*`, by name, compact JSON. A
    column missing from `types` (not in the schema) is canonicalised by its value's type."""
    values = {
        name: canonical_value(value, types.get(name, "text"))
        for name, value in row.items()
        if not name.startswith("_dlt") and value is not None
    }
    return json.dumps(values, sort_keys=True, ensure_ascii=True, separators=(",", ":"))


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def row_sha256(row: Mapping[str, Any], types: Mapping[str, str]) -> str:
    return sha256_text(canonical_row(row, types))
