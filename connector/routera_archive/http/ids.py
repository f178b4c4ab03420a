"""Record ids: which strings can be ids at all, and how one becomes exactly one path segment.

An id comes from a warehouse table that anyone can write to. Sending it unchecked could reach
another route (`../oauth2/token`, `a/b`, `x?y`), so every id is validated and then
percent-encoded with no safe characters: the result can contain no `/`, `?`, `#` or `%` that
was not produced by the encoding itself. The rules are the same for every object type; only
the name an id goes by in a message differs (`ObjectType.id_field`), and an id is only ever
placed under its own type's path.
"""

import unicodedata
from typing import Final
from urllib.parse import quote

from routera_archive.errors import InvalidObjectId
from routera_archive.objects import ObjectType

# Routera ids are UUIDs or short external keys; anything longer is a data error, not an id.
MAX_CONTACT_ID_LENGTH: Final = 256

# A sufficient condition for a valid id that SQL can test (a regular expression matched against
# the whole id, and not a dot-segment): printable ASCII without space, 1 to 256 characters.
# Such an id passes every check of `validate_object_id` (tests/unit check each character), so
# SQL may count requests whose ids match without handing each id to Python; any other id is
# still decided by `validate_object_id` alone.
PLAIN_CONTACT_ID: Final = f"[!-~]{{1,{MAX_CONTACT_ID_LENGTH}}}"
DOT_SEGMENTS: Final = (".", "..")


def validate_object_id(raw: object, *, field: str) -> str:
    """Return `raw` as a record id, or raise InvalidObjectId saying why it can never be one.

    `field` is the name the id goes by in the reason (`contact_id is NULL`): the column it was
    read from. Whitespace around an id is refused rather than stripped: guessing which record
    was meant is how the wrong one gets archived.
    """
    if raw is None:
        raise InvalidObjectId(f"{field} is NULL")
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise InvalidObjectId(f"{field} has type {type(raw).__name__}, not text")
    object_id = str(raw)
    if object_id == "":
        raise InvalidObjectId(f"{field} is empty")
    if object_id.strip() == "":
        raise InvalidObjectId(f"{field} is blank")
    if len(object_id) > MAX_CONTACT_ID_LENGTH:
        raise InvalidObjectId(
            f"{field} is {len(object_id)} characters long (at most {MAX_CONTACT_ID_LENGTH})"
        )
    if object_id != object_id.strip():
        raise InvalidObjectId(f"{field} has leading or trailing whitespace")
    # Printable ASCII holds no character of those categories: the usual id (a UUID, a key)
    # skips the per-character look-up, a few microseconds an id, seconds a million.
    if not (object_id.isascii() and object_id.isprintable()):
        for char in object_id:
            if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
                raise InvalidObjectId(f"{field} contains the control character U+{ord(char):04X}")
    if object_id in DOT_SEGMENTS:
        # Even percent-encoded, `.` and `..` are dot-segments that servers may resolve.
        raise InvalidObjectId(f"{field} {object_id!r} is a path dot-segment")
    return object_id


def validate_contact_id(raw: object) -> str:
    """`validate_object_id` for a queue's `contact_id` column."""
    return validate_object_id(raw, field=ObjectType.CONTACTS.id_field)


def encode_segment(object_id: str) -> str:
    """Percent-encode `object_id` as one path segment (RFC 3986 unreserved characters stay)."""
    return quote(object_id, safe="")


def object_path(object_type: ObjectType, object_id: str) -> str:
    """The API path of one record, `/{type}/{id}`: the id validated, then encoded as exactly
    one segment under its own type's path."""
    valid = validate_object_id(object_id, field=object_type.id_field)
    return f"{object_type.path}/{encode_segment(valid)}"


def id_preview(raw: object, limit: int = 80) -> str:
    """A printable, bounded rendering of any id, for logs and error messages."""
    text = repr(raw)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"
