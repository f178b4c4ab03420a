"""Everything the sandbox remembers: records of each object type, tokens and request statistics.

The server runs one asyncio event loop in a background thread while tests read the state from
the main thread, so every method takes one `threading.Lock` and returns copies: a caller can never
observe a half-applied write or mutate the store behind the server's back. No method awaits while
holding the lock, so the event loop is never blocked for longer than a dict operation.

Each object type (`contacts`, `companies`, `deals`, `tickets`) has a store of its own: its own
ids (the same id may be a contact and a company), list order, known fields and archive counts.
The `*_contact*` methods are the contacts' store; the `*_object*` ones take the type's name.
"""

from __future__ import annotations

import base64
import bisect
import copy
import hashlib
import hmac
import json
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from routera_archive_sandbox.clock import iso_ms, later_than, utc_now
from routera_archive_sandbox.config import SandboxConfig
from routera_archive_sandbox.seed import (
    CONTACT_TYPE,
    OBJECT_TYPES,
    ObjectType,
    generate_records,
    random_uuid4,
)

Contact = dict[str, Any]
# A record of any type: the same flat JSON object as a contact.
Record = Contact

# Keys a client may not write: the server owns them.
READ_ONLY_FIELDS = frozenset({"id", "created_at", "updated_at", "archived", "archived_by"})
# A contact needs at least one of these (non-empty) to be created.
IDENTITY_FIELDS = CONTACT_TYPE.identity_fields


class ObjectNotFound(LookupError):
    """No record of this type has this id."""


class ObjectArchived(Exception):
    """The record is archived and can no longer be changed."""


# The names these errors had when the sandbox served contacts only.
ContactNotFound = ObjectNotFound
ContactArchived = ObjectArchived


@dataclass
class _Token:
    client_id: str
    expires_at: float  # on the `monotonic` clock


@dataclass
class _Entry:
    seq: int  # creation order, the list order
    record: Record


@dataclass
class _Store:
    """One object type's records, in creation order, and what was done to them."""

    kind: ObjectType
    rng: random.Random  # ids of records created through the API
    entries: dict[str, _Entry] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # id by seq
    active: list[int] = field(default_factory=list)  # sorted seqs of records not archived
    known_fields: set[str] = field(default_factory=set)
    deletes: Counter[str] = field(default_factory=Counter)
    calls: dict[str, list[str]] = field(default_factory=dict)

    def insert(self, record: Record) -> None:
        seq = len(self.order)
        self.entries[record["id"]] = _Entry(seq, record)
        self.order.append(record["id"])
        if record.get("archived") is False:
            self.active.append(seq)  # seqs only grow: the list stays sorted
        self.known_fields.update(record)

    def ids(self, include_archived: bool) -> list[str]:
        if include_archived:
            return list(self.order)
        return [self.order[seq] for seq in self.active]


def _created_ids_rng(seed: int, kind: ObjectType) -> random.Random:
    """Where a type's API-created ids come from; contacts keep the RNG they always had."""
    if kind is CONTACT_TYPE:
        return random.Random(f"routera-sandbox:{seed}:created")
    return random.Random(f"routera-sandbox:{seed}:created:{kind.name}")


class SandboxState:
    """The in-memory account behind one sandbox.

    `clock` gives wall time for `created_at`/`updated_at`/`archived`; `monotonic` decides token
    expiry. Both are injectable so tests can pin time instead of sleeping.
    """

    def __init__(
        self,
        *,
        contacts: int = 200,
        companies: int = 50,
        deals: int = 50,
        tickets: int = 50,
        seed: int = 0,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._monotonic = monotonic
        counts = {"contacts": contacts, "companies": companies, "deals": deals, "tickets": tickets}
        self._stores: dict[str, _Store] = {}
        for name, kind in OBJECT_TYPES.items():
            # New records get ids from a seeded RNG too: the same calls give the same ids.
            store = _Store(kind, _created_ids_rng(seed, kind))
            store.known_fields.update({*kind.default_fields, "archived_by"})
            store.known_fields.update(spec.name for spec in kind.custom_fields)
            for record in generate_records(kind, counts[name], seed):
                store.insert(record)
            self._stores[name] = store
        self._tokens: dict[str, _Token] = {}
        # Set by `revoke()`: the account's credentials no longer work (until restored).
        self._revoked = False
        self._signing_key = secrets.token_bytes(32)
        self._requests: Counter[tuple[str, str, int]] = Counter()
        self._type_requests: Counter[tuple[str, str, int]] = Counter()  # (type, method, status)

    @classmethod
    def from_config(cls, config: SandboxConfig) -> SandboxState:
        """The state a sandbox described by `config` starts with (every field of every record:
        what an answer shows of them is the app's `answer_fields`)."""
        return cls(
            contacts=config.contacts,
            companies=config.companies,
            deals=config.deals,
            tickets=config.tickets,
            seed=config.seed,
        )

    def _store(self, object_type: str) -> _Store:
        store = self._stores.get(object_type)
        if store is None:
            raise ValueError(f"unknown object type {object_type!r}: one of {sorted(OBJECT_TYPES)}")
        return store

    # -- records of every type ------------------------------------------------------------------

    def list_objects(
        self, object_type: str, *, include_archived: bool, limit: int, offset: int
    ) -> tuple[list[Record], int]:
        """One page in creation order, and the total number of matching records.

        Offsets are positions in the *current* matching set, as with any offset pagination: a
        record archived between two pages shifts the active-only pages after it.
        """
        with self._lock:
            store = self._store(object_type)
            if include_archived:
                ids = store.order[offset : offset + limit]
                total = len(store.order)
            else:
                ids = [store.order[seq] for seq in store.active[offset : offset + limit]]
                total = len(store.active)
            return [_copy(store.entries[i].record) for i in ids], total

    def get_object(self, object_type: str, object_id: str) -> Record | None:
        """A copy of the record (archived ones too), or None."""
        with self._lock:
            entry = self._store(object_type).entries.get(object_id)
            return _copy(entry.record) if entry else None

    def create_object(
        self, object_type: str, fields: Mapping[str, Any], *, object_id: str | None = None
    ) -> Record:
        """Create an active record of `object_type` from client `fields` and return it.

        `object_id` lets tests plant awkward ids (with `/`, `%`, spaces) that the API itself
        never generates, or an id another type already has; it must not exist in this type yet.
        Validation of `fields` is the caller's job.
        """
        with self._lock:
            store = self._store(object_type)
            if object_id is None:
                object_id = random_uuid4(store.rng)
                while object_id in store.entries:  # pragma: no cover - 2**-122
                    object_id = random_uuid4(store.rng)
            elif object_id in store.entries:
                raise ValueError(f"{store.kind.singular} {object_id!r} already exists")
            now = iso_ms(self._clock())
            record: Record = dict.fromkeys(store.kind.default_fields)
            record.update(id=object_id, created_at=now, updated_at=now, archived=False)
            record.update(copy.deepcopy(dict(fields)))
            store.insert(record)
            return _copy(record)

    def update_object(self, object_type: str, object_id: str, fields: Mapping[str, Any]) -> Record:
        """Merge `fields` into an active record, bump `updated_at`, return the new record."""
        with self._lock:
            store = self._store(object_type)
            entry = store.entries.get(object_id)
            if entry is None:
                raise ObjectNotFound(object_id)
            record = entry.record
            if record["archived"] is not False:
                raise ObjectArchived(object_id)
            record.update(copy.deepcopy(dict(fields)))
            record["updated_at"] = later_than(record["updated_at"], self._clock())
            store.known_fields.update(fields)
            return _copy(record)

    def archive_object(self, object_type: str, object_id: str, archived_by: str) -> Record | None:
        """Archive an active record and return it; None if unknown or already archived.

        `archived` becomes the archive time (equal to the new `updated_at`) and `archived_by` is
        appended last, as in the published example. Counted in the stats' deletes.
        """
        with self._lock:
            store = self._store(object_type)
            entry = store.entries.get(object_id)
            if entry is None or entry.record["archived"] is not False:
                return None
            record = entry.record
            stamp = later_than(record["updated_at"], self._clock())
            record["updated_at"] = stamp
            record["archived"] = stamp
            record.pop("archived_by", None)
            record["archived_by"] = archived_by
            del store.active[bisect.bisect_left(store.active, entry.seq)]
            store.deletes[object_id] += 1
            return _copy(record)

    def known_fields(self, object_type: str = "contacts") -> frozenset[str]:
        """Every property name `?properties=` accepts on `object_type`: its defaults, its defined
        custom fields and every key a record of that type was ever written with."""
        with self._lock:
            return frozenset(self._store(object_type).known_fields)

    def snapshot(self, object_type: str = "contacts") -> list[Record]:
        """A deep copy of every record of `object_type`, in creation order (for tests and
        benchmarks)."""
        with self._lock:
            store = self._store(object_type)
            return [_copy(store.entries[i].record) for i in store.order]

    def object_ids(self, object_type: str, *, include_archived: bool = True) -> list[str]:
        """Ids of `object_type`'s records in creation order."""
        with self._lock:
            return self._store(object_type).ids(include_archived)

    # -- contacts -------------------------------------------------------------------------------

    def list_contacts(
        self, *, include_archived: bool, limit: int, offset: int
    ) -> tuple[list[Contact], int]:
        """`list_objects` of contacts."""
        return self.list_objects(
            "contacts", include_archived=include_archived, limit=limit, offset=offset
        )

    def get_contact(self, contact_id: str) -> Contact | None:
        """A copy of the contact (archived ones too), or None."""
        return self.get_object("contacts", contact_id)

    def create_contact(
        self, fields: Mapping[str, Any], *, contact_id: str | None = None
    ) -> Contact:
        """`create_object` of a contact (`contact_id`: a test's planted id)."""
        return self.create_object("contacts", fields, object_id=contact_id)

    def update_contact(self, contact_id: str, fields: Mapping[str, Any]) -> Contact:
        """Merge `fields` into an active contact, bump `updated_at`, return the new contact."""
        return self.update_object("contacts", contact_id, fields)

    def archive_contact(self, contact_id: str, archived_by: str) -> Contact | None:
        """`archive_object` of a contact; counted in `deletes_succeeded`."""
        return self.archive_object("contacts", contact_id, archived_by)

    def contact_ids(self, *, include_archived: bool = True) -> list[str]:
        """Contact ids in creation order."""
        return self.object_ids("contacts", include_archived=include_archived)

    # -- tokens ---------------------------------------------------------------------------------

    def issue_token(self, client_id: str, ttl: float) -> str | None:
        """A new opaque bearer token for `client_id`, valid for `ttl` seconds.

        It looks like a JWT (clients that peek at it will not choke) but only this state's
        memory makes it valid: a restarted sandbox rejects old tokens, as a real 401 would.
        None while the credentials are revoked (see `revoke`): no token is issued.
        """
        issued = int(time.time())
        header = {"alg": "HS256", "typ": "JWT"}
        payload = {
            "sub": client_id,
            "account_id": "sandbox-account",
            "iat": issued,
            "exp": issued + int(ttl),
            "jti": secrets.token_hex(8),
        }
        signing_input = f"{_b64json(header)}.{_b64json(payload)}"
        signature = hmac.new(self._signing_key, signing_input.encode(), hashlib.sha256).digest()
        token = f"{signing_input}.{_b64(signature)}"
        with self._lock:
            if self._revoked:
                return None
            now = self._monotonic()
            for stale in [t for t, info in self._tokens.items() if info.expires_at <= now]:
                del self._tokens[stale]
            self._tokens[token] = _Token(client_id, now + ttl)
        return token

    def token_client(self, token: str) -> str | None:
        """The client id holding `token`, or None if it was never issued, has expired or was
        revoked."""
        with self._lock:
            if self._revoked:
                return None
            info = self._tokens.get(token)
            if info is None or info.expires_at <= self._monotonic():
                return None
            return info.client_id

    def revoke(self, *, credentials: bool = True) -> None:
        """Revoke the account's credentials, as an admin rotating a leaked secret would.

        Every issued token stops working at once; the token endpoint refuses the configured
        client credentials (401 `invalid_client`) and static tokens are refused (401) until
        `restore_credentials()`. Records and statistics are kept.
        With `credentials=False` only the issued OAuth tokens are invalidated (a flushed token
        store): the client credentials and static tokens keep working.
        """
        with self._lock:
            self._revoked = self._revoked or credentials
            self._tokens.clear()

    def restore_credentials(self) -> None:
        """Accept the configured client credentials and static tokens again.

        Tokens issued before `revoke()` stay invalid: a client has to ask for a new one.
        """
        with self._lock:
            self._revoked = False

    @property
    def credentials_revoked(self) -> bool:
        """True between `revoke()` and `restore_credentials()`."""
        with self._lock:
            return self._revoked

    # -- statistics -----------------------------------------------------------------------------

    def record_request(
        self,
        method: str,
        raw_path: str,
        status: int,
        *,
        object_type: str | None = None,
        object_id: str | None = None,
        contact_id: str | None = None,
    ) -> None:
        """Count one answered API request (status 0: no answer was sent), under its object type
        when it was on one of a type's paths; one on a record's own path (`object_id`) is also
        kept in that record's call log, in order. `contact_id` is `object_id` of a contact."""
        if contact_id is not None:
            object_type, object_id = "contacts", contact_id
        with self._lock:
            self._requests[(method, raw_path, status)] += 1
            if object_type is None:
                return
            store = self._store(object_type)
            self._type_requests[(object_type, method, status)] += 1
            if object_id is not None:
                store.calls.setdefault(object_id, []).append(f"{method} {status}")

    def object_calls(self, object_type: str) -> dict[str, list[str]]:
        """Per id of `object_type`, the calls made on its own path in the order they were
        answered, as `"GET 200"`, `"DELETE 404"` (0: no answer)."""
        with self._lock:
            calls = self._store(object_type).calls
            return {object_id: list(log) for object_id, log in calls.items()}

    def contact_calls(self) -> dict[str, list[str]]:
        """`object_calls` of contacts: which came first on a contact, a snapshot or a DELETE."""
        return self.object_calls("contacts")

    def stats(self) -> dict[str, Any]:
        """Request counts by method, raw path and status, and archives performed per record.

        - `requests`, `totals`: every API request (token, unknown paths and every type's paths).
        - `deletes_succeeded`: archives the server performed, per *contact* id (as before there
          were other types); `deletes_succeeded_by_type` has them per type, every type present.
          Without faults each is a 200 DELETE (a `hang` or `malformed` fault can swallow or spoil
          the answer of one).
        - `by_type`: per type, the requests on its collection and record paths, as `totals`.
        JSON keys are strings, so `by_status` is keyed by e.g. "200".
        """
        with self._lock:
            requests = [
                {"method": method, "path": path, "status": status, "count": count}
                for (method, path, status), count in self._requests.items()
            ]
            by_type = {
                name: _totals(
                    (method, status, count)
                    for (kind, method, status), count in self._type_requests.items()
                    if kind == name
                )
                for name in self._stores
            }
            deletes = {name: dict(store.deletes) for name, store in self._stores.items()}
            return {
                "requests": requests,
                "deletes_succeeded": deletes["contacts"],
                "deletes_succeeded_by_type": deletes,
                "totals": _totals(
                    (method, status, count)
                    for (method, _path, status), count in self._requests.items()
                ),
                "by_type": by_type,
            }

    def reset_stats(self) -> None:
        """Zero every counter (records and tokens are kept)."""
        with self._lock:
            self._requests.clear()
            self._type_requests.clear()
            for store in self._stores.values():
                store.deletes.clear()
                store.calls.clear()


def _totals(counts: Iterable[tuple[str, int, int]]) -> dict[str, Any]:
    """`{"requests", "by_method", "by_status"}` of `(method, status, count)` triples."""
    by_method: Counter[str] = Counter()
    by_status: Counter[str] = Counter()
    for method, status, count in counts:
        by_method[method] += count
        by_status[str(status)] += count
    return {
        "requests": by_method.total(),
        "by_method": dict(by_method),
        "by_status": dict(by_status),
    }


def _copy(record: Record) -> Record:
    """A copy no caller can use to change the store (values are scalars unless a client sent
    more)."""
    return {k: copy.deepcopy(v) if isinstance(v, dict | list) else v for k, v in record.items()}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64json(value: Mapping[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def validate_fields(fields: Iterable[str]) -> str | None:
    """Why client-supplied `fields` cannot be written, or None if they can."""
    for name in fields:
        if name in READ_ONLY_FIELDS:
            return f"Field '{name}' is read-only"
    return None
