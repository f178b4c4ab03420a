"""`ids.PLAIN_CONTACT_ID` lets SQL count requests without handing each id to Python
(`PendingQueue.summary`): that is exact only if every id it matches is valid for
`validate_contact_id`, the one rule. Checked for every ASCII character and every length."""

import re

import pytest

from routera_archive.errors import InvalidObjectId
from routera_archive.http.ids import (
    DOT_SEGMENTS,
    MAX_CONTACT_ID_LENGTH,
    PLAIN_CONTACT_ID,
    validate_contact_id,
)


def is_plain(contact_id: str) -> bool:
    return re.fullmatch(PLAIN_CONTACT_ID, contact_id) is not None and contact_id not in DOT_SEGMENTS


def is_valid(contact_id: str) -> bool:
    try:
        validate_contact_id(contact_id)
    except InvalidObjectId:
        return False
    return True


@pytest.mark.parametrize("code", range(0x80))
def test_every_plain_id_of_ascii_is_valid(code: int) -> None:
    char = chr(code)
    for contact_id in (char, f"a{char}", f"{char}b", f"a{char}b", char * 3):
        if is_plain(contact_id):
            assert is_valid(contact_id), repr(contact_id)


def test_plain_ids_stop_at_the_longest_valid_id() -> None:
    assert is_plain("a" * MAX_CONTACT_ID_LENGTH) and is_valid("a" * MAX_CONTACT_ID_LENGTH)
    assert not is_plain("a" * (MAX_CONTACT_ID_LENGTH + 1))
    assert not is_plain("")


@pytest.mark.parametrize("contact_id", [".", "..", " a", "a ", "a\tb", "é", "a\u00a0", "\x7f"])
def test_what_is_not_plain_is_left_to_python(contact_id: str) -> None:
    assert not is_plain(contact_id)
