"""Everything the sandbox remembers: contacts, issued tokens and request statistics.

The server runs one asyncio event loop in a background thread while tests read the state from
the main thread, so every method takes one `threading.Lock` and returns copies: a caller can never
observe a half-applied write or mutate the store behind the server's back. No method awaits while
holding the lock, so the event loop is never blocked for longer than a dict operation.
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
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from routera_archive_sandbox.clock import iso_ms, later_than, utc_now
from routera_archive_sandbox.config import SandboxConfig
from routera_archive_sandbox.seed import (
    CUSTOM_FIELDS,
    DEFAULT_FIELDS,
    generate_contacts,
    random_uuid4,
)

Contact = dict[str, Any]

# Keys a client may not write: the server owns them.
READ_ONLY_FIELDS = frozenset({"id", "created_at", "updated_at", "archived", "archived_by"})
# A contact needs at least one of these (non-empty) to be created.
IDENTITY_FIELDS = ("email", "first_name", "last_name")


class ContactNotFound(LookupError):
    """No contact has this id."""


class ContactArchived(Exception):
    """The contact is archived and can no longer be changed."""


@dataclass
class _Token:
    client_id: str
    expires_at: float  # on the `monotonic` clock


@dataclass
class _Entry:
    seq: int  # creation order, the list order
    contact: Contact


class SandboxState:
    """The in-memory account behind one sandbox.

    `clock` gives wall time for `created_at`/`updated_at`/`archived`; `monotonic` decides token
    expiry. Both are injectable so tests can pin time instead of sleeping.
    """

    def __init__(
        self,
        *,
        contacts: int = 200,
        seed: int = 0,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._monotonic = monotonic
        # New contacts get ids from a seeded RNG too: the same calls give the same ids.
        self._rng = random.Random(f"routera-sandbox:{seed}:created")
        self._entries: dict[str, _Entry] = {}
        self._order: list[str] = []  # id by seq
        self._active: list[int] = []  # sorted seqs of contacts that are not archived
        self._known_fields: set[str] = {*DEFAULT_FIELDS, "archived_by"}
        self._known_fields.update(spec.name for spec in CUSTOM_FIELDS)
        self._tokens: dict[str, _Token] = {}
        # Set by `revoke()`: the account's credentials no longer work (until restored).
        self._revoked = False
        self._signing_key = secrets.token_bytes(32)
        self._requests: Counter[tuple[str, str, int]] = Counter()
        self._deletes: Counter[str] = Counter()
        self._calls: dict[str, list[str]] = {}
        for contact in generate_contacts(contacts, seed):
            self._insert(contact)

    @classmethod
    def from_config(cls, config: SandboxConfig) -> SandboxState:
        """The state a sandbox described by `config` starts with (every field of every contact:
        what an answer shows of them is the app's `answer_fields`)."""
        return cls(contacts=config.contacts, seed=config.seed)

    # -- contacts -------------------------------------------------------------------------------

    def _insert(self, contact: Contact) -> None:
        seq = len(self._order)
        self._entries[contact["id"]] = _Entry(seq, contact)
        self._order.append(contact["id"])
        if contact.get("archived") is False:
            self._active.append(seq)  # seqs only grow: the list stays sorted
        self._known_fields.update(contact)

    def list_contacts(
        self, *, include_archived: bool, limit: int, offset: int
    ) -> tuple[list[Contact], int]:
        """One page in creation order, and the total number of matching contacts.

        Offsets are positions in the *current* matching set, as with any offset pagination: a
        contact archived between two pages shifts the active-only pages after it.
        """
        with self._lock:
            if include_archived:
                ids = self._order[offset : offset + limit]
                total = len(self._order)
            else:
                ids = [self._order[seq] for seq in self._active[offset : offset + limit]]
                total = len(self._active)
            return [_copy(self._entries[i].contact) for i in ids], total

    def get_contact(self, contact_id: str) -> Contact | None:
        """A copy of the contact (archived ones too), or None."""
        with self._lock:
            entry = self._entries.get(contact_id)
            return _copy(entry.contact) if entry else None

    def create_contact(
        self, fields: Mapping[str, Any], *, contact_id: str | None = None
    ) -> Contact:
        """Create an active contact from client `fields` and return it.

        `contact_id` lets tests plant awkward ids (with `/`, `%`, spaces) that the API itself
        never generates; it must not exist yet. Validation of `fields` is the caller's job.
        """
        with self._lock:
            if contact_id is None:
                contact_id = random_uuid4(self._rng)
                while contact_id in self._entries:  # pragma: no cover - 2**-122
                    contact_id = random_uuid4(self._rng)
            elif contact_id in self._entries:
                raise ValueError(f"contact {contact_id!r} already exists")
            now = iso_ms(self._clock())
            contact: Contact = {
                "id": contact_id,
                "external_id": None,
                "created_at": now,
                "updated_at": now,
                "archived": False,
                "first_name": None,
                "last_name": None,
                "email": None,
                "contact_owner": None,
            }
            contact.update(copy.deepcopy(dict(fields)))
            self._insert(contact)
            return _copy(contact)

    def update_contact(self, contact_id: str, fields: Mapping[str, Any]) -> Contact:
        """Merge `fields` into an active contact, bump `updated_at`, return the new contact."""
        with self._lock:
            entry = self._entries.get(contact_id)
            if entry is None:
                raise ContactNotFound(contact_id)
            contact = entry.contact
            if contact["archived"] is not False:
                raise ContactArchived(contact_id)
            contact.update(copy.deepcopy(dict(fields)))
            contact["updated_at"] = later_than(contact["updated_at"], self._clock())
            self._known_fields.update(fields)
            return _copy(contact)

    def archive_contact(self, contact_id: str, archived_by: str) -> Contact | None:
        """Archive an active contact and return it; None if unknown or already archived.

        `archived` becomes the archive time (equal to the new `updated_at`) and `archived_by` is
        appended last, as in the published example. Counted in `deletes_succeeded`.
        """
        with self._lock:
            entry = self._entries.get(contact_id)
            if entry is None or entry.contact["archived"] is not False:
                return None
            contact = entry.contact
            stamp = later_than(contact["updated_at"], self._clock())
            contact["updated_at"] = stamp
            contact["archived"] = stamp
            contact.pop("archived_by", None)
            contact["archived_by"] = archived_by
            index = bisect.bisect_left(self._active, entry.seq)
            del self._active[index]
            self._deletes[contact_id] += 1
            return _copy(contact)

    def known_fields(self) -> frozenset[str]:
        """Every property name `?properties=` accepts: defaults, defined and ever-written keys."""
        with self._lock:
            return frozenset(self._known_fields)

    def snapshot(self) -> list[Contact]:
        """A deep copy of every contact, in creation order (for tests and benchmarks)."""
        with self._lock:
            return [_copy(self._entries[i].contact) for i in self._order]

    def contact_ids(self, *, include_archived: bool = True) -> list[str]:
        """Contact ids in creation order."""
        with self._lock:
            if include_archived:
                return list(self._order)
            return [self._order[seq] for seq in self._active]

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
        `restore_credentials()`. Contacts and statistics are kept.
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
        self, method: str, raw_path: str, status: int, *, contact_id: str | None = None
    ) -> None:
        """Count one answered API request (status 0: no answer was sent); one on a contact's
        own path is also kept in that contact's call log, in order."""
        with self._lock:
            self._requests[(method, raw_path, status)] += 1
            if contact_id is not None:
                self._calls.setdefault(contact_id, []).append(f"{method} {status}")

    def contact_calls(self) -> dict[str, list[str]]:
        """Per contact id, the calls made on its own path in the order they were answered, as
        `"GET 200"`, `"DELETE 404"` (0: no answer): which came first, a snapshot or a DELETE."""
        with self._lock:
            return {contact_id: list(calls) for contact_id, calls in self._calls.items()}

    def stats(self) -> dict[str, Any]:
        """Request counts by method, raw path and status, and archives performed per contact.

        `deletes_succeeded` counts archives the server performed; without faults each is a 200
        DELETE (a `hang` or `malformed` fault can swallow or spoil the answer of one).
        JSON keys are strings, so `by_status` is keyed by e.g. "200".
        """
        with self._lock:
            requests = [
                {"method": method, "path": path, "status": status, "count": count}
                for (method, path, status), count in self._requests.items()
            ]
            by_method: Counter[str] = Counter()
            by_status: Counter[str] = Counter()
            for (method, _path, status), count in self._requests.items():
                by_method[method] += count
                by_status[str(status)] += count
            return {
                "requests": requests,
                "deletes_succeeded": dict(self._deletes),
                "totals": {
                    "requests": sum(self._requests.values()),
                    "by_method": dict(by_method),
                    "by_status": dict(by_status),
                },
            }

    def reset_stats(self) -> None:
        """Zero every counter (contacts and tokens are kept)."""
        with self._lock:
            self._requests.clear()
            self._deletes.clear()
            self._calls.clear()


def _copy(contact: Contact) -> Contact:
    """A copy no caller can use to change the store (values are scalars unless a client sent
    more)."""
    return {k: copy.deepcopy(v) if isinstance(v, dict | list) else v for k, v in contact.items()}


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
