"""Routera's object types and the rules that differ between them, in one place.

Contacts, companies, deals and tickets are archived by one and the same call
(`DELETE /{type}/{id}`, routera-api.md); what differs is the path, the word a message uses, the
audit table a record goes to and the fields an answer holds by default. Everything else (id
rules, retries, the 404 resolution, the journal) is the same for every type and lives where it
always did.

A queue names a type as text (`archive_queue.object_type`, issue 14); `parse_object_type` is the
one reading of that text. It takes the exact path segment only: `Companies`, ` deals` or
`company` are refused with a reason, never guessed at, because guessing is how the wrong record
gets archived (an id valid as a contact and as a company names two different records).
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class ObjectType(StrEnum):
    """A Routera object type; its value is its path segment (`/contacts`)."""

    CONTACTS = "contacts"
    COMPANIES = "companies"
    DEALS = "deals"
    TICKETS = "tickets"

    @property
    def path(self) -> str:
        """The type's collection path: `/contacts`."""
        return f"/{self.value}"

    @property
    def singular(self) -> str:
        """The word for one record in messages: `contact`, `company`, `deal`, `ticket`."""
        return _RULES[self].singular

    @property
    def table(self) -> str:
        """The audit table its records go to: `contact_archives`, `company_archives`, ..."""
        return _RULES[self].table

    @property
    def documented_fields(self) -> tuple[str, ...]:
        """The type's own default fields (besides `id`, `external_id` and the stamps), in
        the order of Routera's reference: the audit table's first columns, in that order."""
        return _RULES[self].documented

    @property
    def default_properties(self) -> frozenset[str]:
        """What Routera's reference says every answer for this type holds ("default
        properties"), with the stamps every answer has and `archived_by` once archived: a
        record with no other key carries no custom field (`RunReport.note_record`)."""
        return COMMON_PROPERTIES | frozenset(_RULES[self].documented)

    @property
    def id_field(self) -> str:
        """The name an id of this type goes by in messages (`contact_id is NULL`): the queue
        column it is read from. Contacts come from `contact_id`, as they always have; the
        other types only ever from `object_id` (issue 14: a queue names them with
        `object_type` and `object_id`)."""
        return _RULES[self].id_field


@dataclass(frozen=True)
class _Rules:
    singular: str
    table: str
    documented: tuple[str, ...]
    id_field: str


# What every answer of every type holds, whatever its type's own defaults (routera-api.md:
# `id`, `external_id` and `archived` in each default set; `created_at`, `updated_at` in every
# answer; `archived_by` once archived).
COMMON_PROPERTIES: Final = frozenset(
    {"id", "external_id", "archived", "created_at", "updated_at", "archived_by"}
)

_RULES: Final[dict[ObjectType, _Rules]] = {
    ObjectType.CONTACTS: _Rules(
        "contact",
        "contact_archives",
        ("first_name", "last_name", "email", "contact_owner"),
        "contact_id",
    ),
    ObjectType.COMPANIES: _Rules(
        "company",
        "company_archives",
        ("company_name", "description", "industry", "company_owner"),
        "object_id",
    ),
    ObjectType.DEALS: _Rules(
        "deal",
        "deal_archives",
        ("deal_name", "pipeline", "deal_stage", "deal_owner"),
        "object_id",
    ),
    ObjectType.TICKETS: _Rules(
        "ticket",
        "ticket_archives",
        ("ticket_name", "pipeline", "ticket_owner"),
        "object_id",
    ),
}

OBJECT_TYPE_FIELD: Final = "object_type"
"""The queue column that names a request's type (absent or NULL: contacts)."""


@dataclass(frozen=True)
class NotAnObjectType:
    """Why a queued `object_type` names no type: the request is `invalid`, and nothing is sent."""

    reason: str


def parse_object_type(raw: object) -> ObjectType | NotAnObjectType:
    """The type a queued `object_type` value names, or why it names none.

    Absent (None, SQL NULL) means contacts: a queue made before types existed holds only
    contacts. Anything else must be a type's path segment exactly: no other case, no
    whitespace around it, no singular. A near miss is refused with the spelling it resembles,
    for a person to fix in the queue.
    """
    if raw is None:
        return ObjectType.CONTACTS
    if not isinstance(raw, str):
        return NotAnObjectType(f"{OBJECT_TYPE_FIELD} has type {type(raw).__name__}, not text")
    try:
        return ObjectType(raw)
    except ValueError:
        pass
    known = ", ".join(kind.value for kind in ObjectType)
    reason = f"{OBJECT_TYPE_FIELD} {_preview(raw)} is not one of {known}"
    meant = _resembled(raw)
    if meant is not None:
        reason += f" (spelled exactly: {meant.value!r}?)"
    return NotAnObjectType(reason)


def _resembled(raw: str) -> ObjectType | None:
    """The type `raw` is a case, whitespace or singular variant of, if any."""
    folded = raw.strip().casefold()
    for kind in ObjectType:
        if folded in (kind.value, kind.singular):
            return kind
    return None


def _preview(raw: str, limit: int = 40) -> str:
    text = repr(raw)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"
