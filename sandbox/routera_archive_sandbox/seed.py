"""Deterministic, realistic-looking records of every Routera object type for the sandbox.

The connector must cope with what real Routera accounts hold: custom fields of every documented
type, fields that only some records carry, nulls, odd internal names with spaces, capitals and
punctuation, non-ASCII names. Contacts, companies, deals and tickets each have their own default
fields (the reference's table) and custom fields; some names are shared between types
(`lead_source` on contacts and deals, `annual_revenue` and `account_manager` on contacts and
companies), the rest belong to one type. Every record is drawn from its own RNG seeded by
`(seed, type, index)`, so record *i* of a type has the same id and fields whatever the counts
(only its timestamps, which are spread over a fixed two-year window, depend on its type's count)
and no two types share an id. No external data is used.
"""

from __future__ import annotations

import random
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from routera_archive_sandbox.clock import iso_ms

FieldKind = Literal["text", "number", "checkbox", "dropdown", "date", "user"]

# What every record of every type starts with, in the order of the published DELETE example;
# the type's own default fields follow, then its custom fields, then `archived_by` once archived.
COMMON_FIELDS: tuple[str, ...] = ("id", "external_id", "created_at", "updated_at", "archived")

# The default fields of a contact, in the order of the published DELETE example. `archived_by` is
# appended once a contact is archived; custom fields sit between `contact_owner` and `archived_by`.
DEFAULT_FIELDS: tuple[str, ...] = (
    *COMMON_FIELDS,
    "first_name",
    "last_name",
    "email",
    "contact_owner",
)


@dataclass(frozen=True)
class CustomField:
    """One custom field as an account admin would define it in Routera's web app.

    `presence` is the share of records that carry the key at all; `null_rate` the share of those
    whose value is null (Routera returns a defined-but-empty field as null). `options`: a
    dropdown's option internal names. `samples`: the values a text field is drawn from (a text
    field without samples holds a phone number). A number is a whole number in
    `minimum..maximum`, or with `money` an amount with cents.
    """

    name: str
    kind: FieldKind
    presence: float = 1.0
    null_rate: float = 0.0
    options: tuple[str, ...] = ()
    samples: tuple[str, ...] = ()
    minimum: float = 0
    maximum: float = 100
    money: bool = False


# Routera users (id, email): record owners are users, and `user` fields hold a user id.
USERS: tuple[tuple[str, str], ...] = (
    ("3f6c2a9e-8b1d-4c57-9e0a-51d2b7c4e813", "jane@example.com"),
    ("8a1e4d07-2f3b-4b9c-a6d5-0c7e9f2b3a64", "omar.haddad@example.com"),
    ("c2b97f15-6d4e-4e28-b1a3-9f0d8e7c6b52", "li.wei@example.com"),
    ("5e0d3b8a-1c7f-4a96-8d2e-7b4f6a9c1e30", "maria.gonzalez@example.com"),
    ("9b7a6c5d-4e3f-4021-8a9b-c8d7e6f5a4b3", "sam.okafor@example.com"),
)

LEAD_SOURCES = ("web_form", "referral", "trade_show", "cold_outreach", "partner", "webinar")
LIFECYCLE_STAGES = ("subscriber", "lead", "marketing_qualified", "sales_qualified", "customer")

FIRST_NAMES = (
    "Ada", "Grace", "Alan", "Katherine", "Linus", "Margaret", "Tim", "Radia", "Dennis", "Barbara",
    "Ken", "Frances", "Edsger", "Hedy", "John", "Shafi", "Zoë", "José", "Øyvind", "Aiko",
    "Chidi", "Priya", "Mateo", "Siobhán", "Yusuf", "Ingrid", "Thanh", "Amara", "Lars", "Noor",
)  # fmt: skip
LAST_NAMES = (
    "Lovelace", "Hopper", "Turing", "Johnson", "Torvalds", "Hamilton", "Berners-Lee", "Perlman",
    "Ritchie", "Liskov", "Thompson", "Allen", "Dijkstra", "Lamarr", "McCarthy", "Goldwasser",
    "O'Brien", "García", "Nguyễn", "Okonkwo", "Patel", "Kowalski", "Müller", "Tanaka",
    "van der Berg", "Haddad", "Rossi", "Andersson", "Mensah", "Ó Súilleabháin",
)  # fmt: skip
COMPANIES = (
    "Acme Analytics", "Globex", "Initech", "Umbrella Logistics", "Stark Fintech", "Wayne Health",
    "Hooli", "Pied Piper", "Vandelay Imports", "Soylent Foods", "Tyrell Systems", "Cyberdyne",
    "Massive Dynamic", "Oscorp Labs", "Wonka Confections", "Aperture Science",
)  # fmt: skip
JOB_TITLES = (
    "Head of Operations", "VP Sales", "Marketing Manager", "CTO", "Data Engineer",
    "Account Executive", "Office Manager", "Founder", "Procurement Lead", "RevOps Analyst",
)  # fmt: skip
EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example", "corp.example")
LEAD_SOURCE_DETAILS = (
    "Booth #42 at SaaStr", "Podcast ad, spring campaign", "Referred by an existing customer",
    "LinkedIn InMail — Q3 push", "Partner webinar (EMEA)",
)  # fmt: skip

# Contacts' custom fields. Their order and dice are fixed: changing them would change every
# seeded contact, whose ids and values the benchmarks and tests compute from the seed.
CUSTOM_FIELDS: tuple[CustomField, ...] = (
    CustomField("company", "text", presence=0.9, samples=COMPANIES),
    CustomField("job_title", "text", presence=0.6, samples=JOB_TITLES),
    CustomField("phone", "text", presence=1.0, null_rate=0.25),
    CustomField("lead_score", "number", presence=0.85),
    CustomField(
        "annual_revenue", "number", presence=0.3, minimum=50_000, maximum=25_000_000, money=True
    ),
    CustomField("is_customer", "checkbox", presence=1.0),
    CustomField("newsletter_opt_in", "checkbox", presence=0.5),
    CustomField("lead_source", "dropdown", presence=0.7, options=LEAD_SOURCES),
    CustomField("lifecycle_stage", "dropdown", presence=0.95, options=LIFECYCLE_STAGES),
    CustomField("next_follow_up", "date", presence=0.4),
    CustomField("account_manager", "user", presence=0.6),
    CustomField("Lead Source Detail", "text", presence=0.05, samples=LEAD_SOURCE_DETAILS),
)

COMPANY_NAMES = (
    "Acme Analytics", "Globex", "Initech", "Hooli", "Pied Piper", "Tyrell Systems", "Cyberdyne",
    "Müller & Söhne", "Société Lumière", "Nordlys Energi", "Café Zürich", "Łódź Robotics",
    "Sakura Kōgyō", "Oscorp Labs", "Wonka Confections", "Aperture Science",
)  # fmt: skip
COMPANY_SUFFIXES = ("Inc.", "GmbH", "Ltd", "S.A.", "K.K.", "Oy", "LLC", "AG")
COMPANY_DESCRIPTIONS = (
    "Mid-market logistics platform", "B2B payments for marketplaces", "Family-owned manufacturer",
    "Analytics consultancy — EMEA & APAC", "Hospital scheduling software", "Reseller partner",
)  # fmt: skip
INDUSTRIES = ("software", "manufacturing", "healthcare", "financial_services", "retail", "energy")
COMPANY_TIERS = ("enterprise", "mid_market", "smb")
WEBSITES = ("https://acme.example", "https://globex.example", "https://hooli.example")
COUNTRIES = ("DE", "US", "FR", "JP", "NO", "PL", "BR", "NG")
COMPANY_CUSTOM_FIELDS: tuple[CustomField, ...] = (
    CustomField("website", "text", presence=0.8, samples=WEBSITES),
    CustomField("employee_count", "number", presence=0.9, maximum=5_000),
    CustomField(
        "annual_revenue", "number", presence=0.5, minimum=100_000, maximum=900_000_000, money=True
    ),
    CustomField("is_partner", "checkbox", presence=1.0),
    CustomField("tier", "dropdown", presence=0.85, options=COMPANY_TIERS),
    CustomField("renewal_date", "date", presence=0.5, null_rate=0.2),
    CustomField("account_manager", "user", presence=0.7),
    CustomField("HQ Country", "text", presence=0.2, samples=COUNTRIES),
)

PRODUCTS = ("Platform licence", "Routing add-on", "Onboarding package", "Enterprise seats")
# Each deal pipeline's stages (option internal names): a deal's stage is one of its pipeline's.
DEAL_PIPELINES: dict[str, tuple[str, ...]] = {
    "sales": ("qualification", "demo", "proposal", "negotiation", "closed_won", "closed_lost"),
    "renewals": ("upcoming", "in_review", "renewed", "churned"),
}
DEAL_TYPE_OPTIONS = ("new_business", "upsell", "renewal")
NEXT_STEPS = ("Send proposal", "Book a demo", "Security review", "Call the CFO", "Sign DPA")
COMPETITORS = ("LeanData", "Chili Piper", "in-house script", "None — greenfield")
DEAL_CUSTOM_FIELDS: tuple[CustomField, ...] = (
    CustomField(
        "amount", "number", presence=0.95, null_rate=0.05, minimum=500, maximum=250_000, money=True
    ),
    CustomField("close_date", "date", presence=0.8),
    CustomField("lead_source", "dropdown", presence=0.6, options=LEAD_SOURCES),
    CustomField("deal_type", "dropdown", presence=0.9, options=DEAL_TYPE_OPTIONS),
    CustomField("is_multi_year", "checkbox", presence=1.0),
    CustomField("sales_engineer", "user", presence=0.4),
    CustomField("next_step", "text", presence=0.5, samples=NEXT_STEPS),
    CustomField("Competitor (primary)", "text", presence=0.1, samples=COMPETITORS),
)

TICKET_SUBJECTS = (
    "Cannot log in after SSO change", "Invoice shows the wrong VAT", "Router skips a rep",
    "Export to CSV times out", "Umlaut in a name shows as Ã¼", "Add a second workspace",
    "Webhook retries twice", "Onboarding call for the new team",
)  # fmt: skip
TICKET_PIPELINES = ("support", "onboarding")
PRIORITIES = ("low", "medium", "high", "urgent")
CATEGORIES = ("billing", "bug", "how_to", "feature_request", "account_access")
CUSTOMER_REFS = ("CR-1042", "CR-2210", "PO 7781/B", "ref: 55-A")
TICKET_CUSTOM_FIELDS: tuple[CustomField, ...] = (
    CustomField("priority", "dropdown", presence=1.0, options=PRIORITIES),
    CustomField("category", "dropdown", presence=0.9, options=CATEGORIES),
    CustomField("is_escalated", "checkbox", presence=1.0),
    CustomField("due_date", "date", presence=0.5, null_rate=0.2),
    CustomField("assigned_agent", "user", presence=0.8),
    CustomField("satisfaction_score", "number", presence=0.3, maximum=5),
    CustomField("Customer Ref #", "text", presence=0.15, samples=CUSTOMER_REFS),
)

# Seeded records are created over this window, in creation order, so that list order, created_at
# and the ids all agree and every timestamp lies in the past.
WINDOW_START = datetime(2024, 1, 1, 8, 0, tzinfo=UTC)
WINDOW = timedelta(days=730)
MAX_UPDATE_DELAY = timedelta(days=60)


def _ascii_local_part(first: str, last: str) -> str:
    """`Zoë Ó Súilleabháin` -> `zoe.osuilleabhain`: mailbox names stay plain ASCII."""
    text = unicodedata.normalize("NFKD", f"{first}.{last}".lower().replace("ø", "o"))
    return "".join(ch for ch in text if ch.isascii() and (ch.isalnum() or ch in ".-"))


def _contact_fields(rng: random.Random, index: int) -> dict[str, Any]:
    first = rng.choice(FIRST_NAMES)
    last = rng.choice(LAST_NAMES)
    email = f"{_ascii_local_part(first, last)}.{index + 1}@{rng.choice(EMAIL_DOMAINS)}"
    return {"first_name": first, "last_name": last, "email": email}


def _company_fields(rng: random.Random, index: int) -> dict[str, Any]:
    name = f"{rng.choice(COMPANY_NAMES)} {rng.choice(COMPANY_SUFFIXES)}"
    description = rng.choice(COMPANY_DESCRIPTIONS) if rng.random() < 0.7 else None
    industry = rng.choice(INDUSTRIES) if rng.random() < 0.9 else None
    return {"company_name": name, "description": description, "industry": industry}


def _deal_fields(rng: random.Random, index: int) -> dict[str, Any]:
    name = f"{rng.choice(COMPANIES)} — {rng.choice(PRODUCTS)}"
    pipeline = rng.choice(sorted(DEAL_PIPELINES))
    return {
        "deal_name": name,
        "pipeline": pipeline,
        "deal_stage": rng.choice(DEAL_PIPELINES[pipeline]),
    }


def _ticket_fields(rng: random.Random, index: int) -> dict[str, Any]:
    return {"ticket_name": rng.choice(TICKET_SUBJECTS), "pipeline": rng.choice(TICKET_PIPELINES)}


@dataclass(frozen=True)
class ObjectType:
    """One Routera object type: its path segment, fields and how its records are seeded.

    `default_fields` is what an answer holds under the reference's reading (`COMMON_FIELDS`, then
    the type's own, the owner last); `identity_fields`: a create needs one of them non-empty.
    `draw(rng, index)` gives a seeded record's own default fields but the owner, in order.
    """

    name: str  # the path segment: `/contacts`
    singular: str  # `contact`: its RNG label, and the `contactId` of its 400 message
    own_fields: tuple[str, ...]  # after COMMON_FIELDS, the owner last
    custom_fields: tuple[CustomField, ...]
    identity_fields: tuple[str, ...]
    external_prefix: str
    draw: Callable[[random.Random, int], dict[str, Any]]

    @property
    def default_fields(self) -> tuple[str, ...]:
        return (*COMMON_FIELDS, *self.own_fields)

    @property
    def owner_field(self) -> str:
        return self.own_fields[-1]


CONTACT_TYPE = ObjectType(
    "contacts",
    "contact",
    DEFAULT_FIELDS[len(COMMON_FIELDS) :],
    CUSTOM_FIELDS,
    ("email", "first_name", "last_name"),  # the reference: "at least one of"
    "ext-",
    _contact_fields,
)
# The reference names no required field of a company, deal or ticket: *inferred*, by analogy
# with contacts, that a create needs the type's name field.
COMPANY_TYPE = ObjectType(
    "companies",
    "company",
    ("company_name", "description", "industry", "company_owner"),
    COMPANY_CUSTOM_FIELDS,
    ("company_name",),
    "ext-co-",
    _company_fields,
)
DEAL_TYPE = ObjectType(
    "deals",
    "deal",
    ("deal_name", "pipeline", "deal_stage", "deal_owner"),
    DEAL_CUSTOM_FIELDS,
    ("deal_name",),
    "ext-deal-",
    _deal_fields,
)
TICKET_TYPE = ObjectType(
    "tickets",
    "ticket",
    ("ticket_name", "pipeline", "ticket_owner"),
    TICKET_CUSTOM_FIELDS,
    ("ticket_name",),
    "ext-tkt-",
    _ticket_fields,
)
# Every type the sandbox serves, by path segment, in the reference's order.
OBJECT_TYPES: dict[str, ObjectType] = {
    kind.name: kind for kind in (CONTACT_TYPE, COMPANY_TYPE, DEAL_TYPE, TICKET_TYPE)
}


def random_uuid4(rng: random.Random) -> str:
    """A version-4 UUID drawn from `rng` (not from the OS), so ids are reproducible."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def object_rng(kind: ObjectType, seed: int, index: int) -> random.Random:
    """The RNG of record `index` of `kind` under `seed` (a string seed is hashed with SHA-512:
    stable). The type's singular is part of the seed, so types never share an id."""
    return random.Random(f"routera-sandbox:{seed}:{kind.singular}:{index}")


def contact_rng(seed: int, index: int) -> random.Random:
    """The RNG of contact `index` under `seed` (`object_rng` of a contact)."""
    return object_rng(CONTACT_TYPE, seed, index)


def _custom_value(spec: CustomField, rng: random.Random) -> Any:
    """A plausible value of `spec`'s type, in the JSON shape Routera uses for that type."""
    match spec.kind:
        case "text":
            if spec.samples:
                return rng.choice(spec.samples)
            return f"+1-555-01{rng.randrange(100):02d}"
        case "number":
            if spec.money:
                return round(rng.uniform(spec.minimum, spec.maximum), 2)
            return rng.randrange(int(spec.minimum), int(spec.maximum) + 1)
        case "checkbox":
            return rng.random() < 0.3
        case "dropdown":
            return rng.choice(spec.options)
        case "date":
            return (date(2026, 1, 1) + timedelta(days=rng.randrange(365))).isoformat()
        case "user":
            return rng.choice(USERS)[0]
    raise AssertionError(f"unknown field kind {spec.kind!r}")  # pragma: no cover


def make_record(kind: ObjectType, seed: int, index: int, count: int) -> dict[str, Any]:
    """Record number `index` (0-based) of `kind` in a sandbox seeded with `seed` holding `count`
    records of that type."""
    rng = object_rng(kind, seed, index)
    record_id = random_uuid4(rng)
    external_id = f"{kind.external_prefix}{index + 1:05d}" if rng.random() < 0.85 else None
    own = kind.draw(rng, index)
    owner = rng.choice(USERS)[1] if rng.random() < 0.95 else None

    step = WINDOW / max(count, 1)
    created = WINDOW_START + step * index + step * rng.random() * 0.9
    updated = created if rng.random() < 0.4 else created + MAX_UPDATE_DELAY * rng.random()

    record: dict[str, Any] = {
        "id": record_id,
        "external_id": external_id,
        "created_at": iso_ms(created),
        "updated_at": iso_ms(updated),
        "archived": False,
        **own,
        kind.owner_field: owner,
    }
    for spec in kind.custom_fields:
        # Always draw all three dice, so one field's presence never changes the fields after it.
        present = rng.random() < spec.presence
        is_null = rng.random() < spec.null_rate
        value = _custom_value(spec, rng)
        if present:
            record[spec.name] = None if is_null else value
    return record


def make_contact(seed: int, index: int, count: int) -> dict[str, Any]:
    """Contact number `index` (0-based) of a sandbox seeded with `seed` holding `count` contacts."""
    return make_record(CONTACT_TYPE, seed, index, count)


def generate_records(kind: ObjectType, count: int, seed: int) -> list[dict[str, Any]]:
    """`count` records of `kind` in creation order; the same arguments give the same list."""
    return [make_record(kind, seed, index, count) for index in range(count)]


def generate_contacts(count: int, seed: int) -> list[dict[str, Any]]:
    """`count` contacts in creation order; the same `(count, seed)` always gives the same list."""
    return generate_records(CONTACT_TYPE, count, seed)
