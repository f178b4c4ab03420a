"""Deterministic, realistic-looking contacts for the sandbox.

The connector must cope with what real Routera accounts hold: custom fields of every documented
type, fields that only some contacts carry, nulls, odd internal names with spaces and capitals,
non-ASCII names. Every contact is drawn from its own RNG seeded by `(seed, index)`, so contact
*i* has the same id, names and fields whatever the total count (only its timestamps, which are
spread over a fixed two-year window, depend on the count). No external data is used.
"""

from __future__ import annotations

import random
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from routera_archive_sandbox.clock import iso_ms

FieldKind = Literal["text", "number", "checkbox", "dropdown", "date", "user"]

# The default fields, in the order of the published DELETE example. `archived_by` is appended
# once a contact is archived; custom fields sit between `contact_owner` and `archived_by`.
DEFAULT_FIELDS: tuple[str, ...] = (
    "id",
    "external_id",
    "created_at",
    "updated_at",
    "archived",
    "first_name",
    "last_name",
    "email",
    "contact_owner",
)


@dataclass(frozen=True)
class CustomField:
    """One custom contact field as an account admin would define it in Routera's web app.

    `presence` is the share of contacts that carry the key at all; `null_rate` the share of those
    whose value is null (Routera returns a defined-but-empty field as null).
    """

    name: str
    kind: FieldKind
    presence: float = 1.0
    null_rate: float = 0.0
    options: tuple[str, ...] = ()


# Routera users (id, email): contact owners are users, and `user` fields hold a user id.
USERS: tuple[tuple[str, str], ...] = (
    ("3f6c2a9e-8b1d-4c57-9e0a-51d2b7c4e813", "jane@example.com"),
    ("8a1e4d07-2f3b-4b9c-a6d5-0c7e9f2b3a64", "omar.haddad@example.com"),
    ("c2b97f15-6d4e-4e28-b1a3-9f0d8e7c6b52", "li.wei@example.com"),
    ("5e0d3b8a-1c7f-4a96-8d2e-7b4f6a9c1e30", "maria.gonzalez@example.com"),
    ("9b7a6c5d-4e3f-4021-8a9b-c8d7e6f5a4b3", "sam.okafor@example.com"),
)

LEAD_SOURCES = ("web_form", "referral", "trade_show", "cold_outreach", "partner", "webinar")
LIFECYCLE_STAGES = ("subscriber", "lead", "marketing_qualified", "sales_qualified", "customer")

CUSTOM_FIELDS: tuple[CustomField, ...] = (
    CustomField("company", "text", presence=0.9),
    CustomField("job_title", "text", presence=0.6),
    CustomField("phone", "text", presence=1.0, null_rate=0.25),
    CustomField("lead_score", "number", presence=0.85),
    CustomField("annual_revenue", "number", presence=0.3),
    CustomField("is_customer", "checkbox", presence=1.0),
    CustomField("newsletter_opt_in", "checkbox", presence=0.5),
    CustomField("lead_source", "dropdown", presence=0.7, options=LEAD_SOURCES),
    CustomField("lifecycle_stage", "dropdown", presence=0.95, options=LIFECYCLE_STAGES),
    CustomField("next_follow_up", "date", presence=0.4),
    CustomField("account_manager", "user", presence=0.6),
    CustomField("Lead Source Detail", "text", presence=0.05),
)

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

# Seeded contacts are created over this window, in creation order, so that list order, created_at
# and the ids all agree and every timestamp lies in the past.
WINDOW_START = datetime(2024, 1, 1, 8, 0, tzinfo=UTC)
WINDOW = timedelta(days=730)
MAX_UPDATE_DELAY = timedelta(days=60)


def _ascii_local_part(first: str, last: str) -> str:
    """`Zoë Ó Súilleabháin` -> `zoe.osuilleabhain`: mailbox names stay plain ASCII."""
    text = unicodedata.normalize("NFKD", f"{first}.{last}".lower().replace("ø", "o"))
    return "".join(ch for ch in text if ch.isascii() and (ch.isalnum() or ch in ".-"))


def random_uuid4(rng: random.Random) -> str:
    """A version-4 UUID drawn from `rng` (not from the OS), so ids are reproducible."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def contact_rng(seed: int, index: int) -> random.Random:
    """The RNG of contact `index` under `seed` (a string seed is hashed with SHA-512: stable)."""
    return random.Random(f"routera-sandbox:{seed}:contact:{index}")


def _custom_value(spec: CustomField, rng: random.Random) -> Any:
    """A plausible value of `spec`'s type, in the JSON shape Routera uses for that type."""
    match spec.kind:
        case "text":
            if spec.name == "company":
                return rng.choice(COMPANIES)
            if spec.name == "job_title":
                return rng.choice(JOB_TITLES)
            if spec.name == "phone":
                return f"+1-555-01{rng.randrange(100):02d}"
            return rng.choice(LEAD_SOURCE_DETAILS)
        case "number":
            if spec.name == "annual_revenue":
                return round(rng.uniform(50_000, 25_000_000), 2)
            return rng.randrange(101)
        case "checkbox":
            return rng.random() < 0.3
        case "dropdown":
            return rng.choice(spec.options)
        case "date":
            return (date(2026, 1, 1) + timedelta(days=rng.randrange(365))).isoformat()
        case "user":
            return rng.choice(USERS)[0]
    raise AssertionError(f"unknown field kind {spec.kind!r}")  # pragma: no cover


def make_contact(seed: int, index: int, count: int) -> dict[str, Any]:
    """Contact number `index` (0-based) of a sandbox seeded with `seed` holding `count` contacts."""
    rng = contact_rng(seed, index)
    contact_id = random_uuid4(rng)
    external_id = f"ext-{index + 1:05d}" if rng.random() < 0.85 else None
    first = rng.choice(FIRST_NAMES)
    last = rng.choice(LAST_NAMES)
    email = f"{_ascii_local_part(first, last)}.{index + 1}@{rng.choice(EMAIL_DOMAINS)}"
    owner = rng.choice(USERS)[1] if rng.random() < 0.95 else None

    step = WINDOW / max(count, 1)
    created = WINDOW_START + step * index + step * rng.random() * 0.9
    updated = created if rng.random() < 0.4 else created + MAX_UPDATE_DELAY * rng.random()

    contact: dict[str, Any] = {
        "id": contact_id,
        "external_id": external_id,
        "created_at": iso_ms(created),
        "updated_at": iso_ms(updated),
        "archived": False,
        "first_name": first,
        "last_name": last,
        "email": email,
        "contact_owner": owner,
    }
    for spec in CUSTOM_FIELDS:
        # Always draw all three dice, so one field's presence never changes the fields after it.
        present = rng.random() < spec.presence
        is_null = rng.random() < spec.null_rate
        value = _custom_value(spec, rng)
        if present:
            contact[spec.name] = None if is_null else value
    return contact


def generate_contacts(count: int, seed: int) -> list[dict[str, Any]]:
    """`count` contacts in creation order; the same `(count, seed)` always gives the same list."""
    return [make_contact(seed, index, count) for index in range(count)]
