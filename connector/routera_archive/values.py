"""Values as every destination can hold them, so that one unusual record never fails a load.

An answer the API gave is kept whatever it holds; `raw_response` keeps it whole. In the record's
own columns, a value no destination column can hold as it is becomes text that says what it was,
and the field is named in the outcome's `text_fields`, so that its row puts it in a text column
of its own (the key with ` as text`: `lead_score_as_text`) instead of one typed by other
records (dlt would turn the digits of a uint64 back into a number for a BIGINT column, and the
load would fail):

- an integer beyond 64 bits (a uint64 such as 18446744073709551615): its digits;
- a float that is not finite (JSON's NaN, Infinity): its name;
- a structure nested deeper than the writers go (dlt's JSON writer stops at 254 levels), or one
  holding such a number: its JSON text.

Text itself is kept in its column, with what no destination text holds written visibly: a NUL
(PostgreSQL refuses one, DuckDB's writer drops it) as the four characters `\\x00`, and a lone
surrogate (the escape `\\ud83d` a JavaScript backend emits when it cuts an emoji in half; no
UTF-8 writer takes it) as its escape.

Applied where answers are read, so that the journal, the call worker's pipe and the load all
carry values they can carry.
"""

import json
import math
import re
from typing import Any, Final

NUL_STAND_IN: Final = "\\x00"
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
# Well inside dlt's (orjson's) 254 levels and the destinations' own JSON limits.
MAX_DEPTH: Final = 64
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def storable_text(text: str) -> str:
    """`text` with NUL and lone surrogates written visibly (see the module's docstring)."""
    if "\x00" in text:
        text = text.replace("\x00", NUL_STAND_IN)
    if LONE_SURROGATE.search(text):
        text = LONE_SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)
    return text


def storable_record(record: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A record's fields in forms every destination holds, and the keys of those that had to
    become text (each field on its own: one odd value leaves the others as they are)."""
    fields: dict[str, Any] = {}
    as_text: list[str] = []
    for key, value in record.items():
        name = storable_text(str(key))
        if holdable(value):
            fields[name] = _safe_text(value)
        else:
            fields[name] = _as_text(value)
            as_text.append(name)
    return fields, as_text


def holdable(value: Any) -> bool:
    """Whether `value` can go into a column as it is (its text made safe), looked at without
    recursion: a body may nest deeper than Python's own stack allows."""
    todo = [(value, 0)]
    while todo:
        current, depth = todo.pop()
        if isinstance(current, bool) or current is None or isinstance(current, str):
            continue
        if isinstance(current, int):
            if not INT64_MIN <= current <= INT64_MAX:
                return False
        elif isinstance(current, float):
            if not math.isfinite(current):
                return False
        elif isinstance(current, dict | list):
            if depth >= MAX_DEPTH:
                return False
            items = current.values() if isinstance(current, dict) else current
            todo.extend((item, depth + 1) for item in items)
    return True


def _safe_text(value: Any) -> Any:
    """A holdable value with every string in it (keys too) made safe."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(str(k)): _safe_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_safe_text(item) for item in value]
    return value


def _as_text(value: Any) -> str:
    """The JSON text of a value no column holds as it is: a number's digits or JSON name
    (`NaN`, `Infinity`), a structure's JSON (its strings escaped, so no NUL or lone surrogate
    survives into it)."""
    return json.dumps(value)
