"""Contact ids: what is refused, and that an accepted id always becomes exactly one path segment."""

from urllib.parse import unquote

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from routera_archive.errors import InvalidObjectId
from routera_archive.http.ids import (
    MAX_CONTACT_ID_LENGTH,
    encode_segment,
    id_preview,
    object_path,
    validate_contact_id,
    validate_object_id,
)
from routera_archive.objects import ObjectType


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("abc", "abc"),
        ("550e8400-e29b-41d4-a716-446655440000", "550e8400-e29b-41d4-a716-446655440000"),
        (123, "123"),
        ("a b", "a b"),
        ("é", "é"),
        ("名前", "名前"),
        ("%2F", "%2F"),
        ("a/b", "a/b"),
        ("...", "..."),
        ("x" * MAX_CONTACT_ID_LENGTH, "x" * MAX_CONTACT_ID_LENGTH),
    ],
)
def test_validate_accepts_ids(raw: object, expected: str) -> None:
    assert validate_contact_id(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason_part"),
    [
        (None, "NULL"),
        (True, "type bool"),
        (1.5, "type float"),
        (b"abc", "type bytes"),
        ("", "empty"),
        ("   ", "blank"),
        ("\t", "blank"),
        ("x" * (MAX_CONTACT_ID_LENGTH + 1), "257 characters"),
        (" a", "leading or trailing whitespace"),
        ("a ", "leading or trailing whitespace"),
        ("a\x00b", "U+0000"),
        ("a\nb", "U+000A"),
        ("a\x7fb", "U+007F"),
        ("a\u200bb", "U+200B"),  # zero-width space (format character)
        ("a\ud800b", "U+D800"),  # lone surrogate
        (".", "dot-segment"),
        ("..", "dot-segment"),
    ],
)
def test_validate_refuses_ids(raw: object, reason_part: str) -> None:
    with pytest.raises(InvalidObjectId) as caught:
        validate_contact_id(raw)
    assert reason_part in caught.value.reason
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("contact_id", "segment"),
    [
        ("a/b", "a%2Fb"),
        ("?x", "%3Fx"),
        ("#x", "%23x"),
        ("%2F", "%252F"),
        ("a b", "a%20b"),
        ("é", "%C3%A9"),
        ("名前", "%E5%90%8D%E5%89%8D"),
        ("../oauth2/token", "..%2Foauth2%2Ftoken"),
        ("a-b_c.d~e", "a-b_c.d~e"),
        ("a+b&c=d;e", "a%2Bb%26c%3Dd%3Be"),
    ],
)
def test_contact_path_encodes_one_segment(contact_id: str, segment: str) -> None:
    assert encode_segment(contact_id) == segment
    assert object_path(ObjectType.CONTACTS, contact_id) == f"/contacts/{segment}"


@pytest.mark.parametrize("bad", ["", " ", "..", ".", "a\x00", "x" * 257])
def test_contact_path_refuses_invalid_ids(bad: str) -> None:
    with pytest.raises(InvalidObjectId):
        object_path(ObjectType.CONTACTS, bad)


def test_id_preview_is_bounded_and_printable() -> None:
    assert id_preview("abc") == "'abc'"
    assert id_preview(None) == "None"
    long = id_preview("x" * 500, limit=20)
    assert len(long) == 20
    assert long.endswith("…")
    assert "\n" not in id_preview("a\nb")


# Any text, plus text without the refused categories and text made of URL-special characters, so
# that most examples are accepted ids and the hostile ones come up often.
ID_LIKE_TEXT = st.one_of(
    st.text(max_size=300),
    st.text(
        st.characters(exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn")), min_size=1, max_size=300
    ),
    st.text(alphabet="/?#%.&=+;:@ aé名\\", min_size=1, max_size=20),
)


@given(ID_LIKE_TEXT)
def test_any_accepted_id_is_exactly_one_reversible_segment(text: str) -> None:
    try:
        contact_id = validate_contact_id(text)
    except InvalidObjectId:
        assume(False)
        return
    path = object_path(ObjectType.CONTACTS, contact_id)
    assert path.startswith("/contacts/")
    segment = path.removeprefix("/contacts/")
    assert segment
    for forbidden in ("/", "?", "#"):
        assert forbidden not in segment
    assert segment.isascii()
    assert segment not in (".", "..")
    assert unquote(segment, errors="strict") == contact_id


# --- every object type ------------------------------------------------------------------------

OTHER_TYPES = [ObjectType.COMPANIES, ObjectType.DEALS, ObjectType.TICKETS]


@pytest.mark.parametrize("kind", list(ObjectType))
@pytest.mark.parametrize(
    ("object_id", "segment"),
    [
        ("a/b", "a%2Fb"),
        ("%2F", "%252F"),
        ("a b", "a%20b"),
        ("a\tb", None),  # a control character: refused
        ("../contacts/c1", "..%2Fcontacts%2Fc1"),
        ("...", "..."),
        ("550e8400-e29b-41d4-a716-446655440000", "550e8400-e29b-41d4-a716-446655440000"),
    ],
)
def test_object_path_is_one_segment_under_its_own_type_s_path(
    kind: ObjectType, object_id: str, segment: str | None
) -> None:
    if segment is None:
        with pytest.raises(InvalidObjectId):
            object_path(kind, object_id)
        return
    path = object_path(kind, object_id)
    assert path == f"/{kind.value}/{segment}"
    head, _, tail = path.rpartition("/")
    assert head == kind.path and unquote(tail, errors="strict") == object_id


@pytest.mark.parametrize("kind", OTHER_TYPES)
@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "object_id is NULL"),
        ("", "object_id is empty"),
        ("   ", "object_id is blank"),
        (" a", "object_id has leading or trailing whitespace"),
        ("a\n", "object_id has leading or trailing whitespace"),
        ("..", "object_id '..' is a path dot-segment"),
        (".", "object_id '.' is a path dot-segment"),
        ("a\x00b", "object_id contains the control character U+0000"),
        ("x" * 257, "object_id is 257 characters long (at most 256)"),
    ],
)
def test_an_id_of_another_type_is_refused_by_the_same_rules_in_its_own_words(
    kind: ObjectType, raw: str | None, reason: str
) -> None:
    """Those types' ids come from a queue's `object_id` column: the reason names that."""
    with pytest.raises(InvalidObjectId) as caught:
        validate_object_id(raw, field=kind.id_field)
    assert caught.value.reason == reason
    if raw is not None:
        with pytest.raises(InvalidObjectId) as by_path:
            object_path(kind, raw)
        assert by_path.value.reason == reason


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "contact_id is NULL"),
        ("..", "contact_id '..' is a path dot-segment"),
        (" a", "contact_id has leading or trailing whitespace"),
    ],
)
def test_a_contact_id_is_refused_in_the_words_it_always_was(raw: str | None, reason: str) -> None:
    for validate in (
        validate_contact_id,
        lambda value: validate_object_id(value, field=ObjectType.CONTACTS.id_field),
    ):
        with pytest.raises(InvalidObjectId) as caught:
            validate(raw)
        assert caught.value.reason == reason


@given(ID_LIKE_TEXT, st.sampled_from(list(ObjectType)))
def test_any_accepted_id_of_any_type_is_one_reversible_segment_under_its_path(
    text: str, kind: ObjectType
) -> None:
    try:
        object_id = validate_object_id(text, field=kind.id_field)
    except InvalidObjectId:
        assume(False)
        return
    path = object_path(kind, object_id)
    assert path.startswith(f"{kind.path}/")
    segment = path.removeprefix(f"{kind.path}/")
    assert segment and segment.isascii() and segment not in (".", "..")
    assert not any(char in segment for char in "/?#")
    assert unquote(segment, errors="strict") == object_id
