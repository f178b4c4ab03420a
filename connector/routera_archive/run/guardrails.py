"""The guardrails a run passes before any call, one place for each rule: a queue that suddenly
holds more than `max_archives` (over the whole run, every type together), or a run that would
archive more than `max_share` of one type's active records (each type on its own: 30 of 5,000
contacts is routine, 30 of 40 companies is not), is far more likely a bad dbt model than an
intent. Both refuse unless forced. The run and the dlt-native source ask the same questions here.
"""

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from routera_archive.config import RouteraSourceConfig, properties_key
from routera_archive.errors import ApiMismatch, ConfigurationError
from routera_archive.http.client import ApiAnswer, api_message
from routera_archive.objects import ObjectType

logger = logging.getLogger(__name__)

# Lists one page of a type's records (`RouteraClient.list_objects`, `Caller.list_objects`): the
# share check's one call per type is GET /{type}?archived=false&limit=1.
ListObjects = Callable[..., Awaitable[ApiAnswer]]


def max_archives_verdict(config: RouteraSourceConfig, to_handle: int, *, force: bool) -> str:
    """`passed: ...`, `forced: ...` or `refused: ...` (the words `archive_runs.guardrail` keeps)."""
    limit = config.max_archives
    if to_handle <= limit:
        return f"passed: {to_handle} to handle, max_archives {limit}"
    if force:
        return f"forced: {to_handle} to handle over max_archives {limit}"
    return f"refused: {to_handle} requests to handle, more than max_archives {limit}"


@dataclass(frozen=True)
class Account:
    """What a type's first call tells: how many of its records are active (None: unreadable)."""

    active: int | None
    unreadable_because: str = ""


async def probe_account(
    list_objects: ListObjects,
    properties: Sequence[str] = (),
    object_type: ObjectType = ObjectType.CONTACTS,
) -> Account:
    """One of the run's first calls, `GET /{type}?archived=false&limit=1`, made for each type
    the run will call: the number of its active records for the share check, and the proof
    that `base_url` is Routera's API. A base URL with a wrong path answers every DELETE and
    GET with the server's own route-level 404, and every request would end `not_found`, for
    good; so a 404 here, or an answer without the list shape, stops the run before any DELETE
    (ApiMismatch, exit 2).

    With that type's `properties` configured the call asks for them (the client adds them), so
    it is also their check: Routera answers 400 to a name it does not know, and a run that
    went on would have every snapshot of the type refused; it stops here instead, before any
    DELETE of any type (ConfigurationError, exit 2)."""
    answer = await list_objects(object_type, archived=False, limit=1, offset=0)
    said = f"GET {object_type.path} answered {answer.status_code}: {api_message(answer.body)}"
    if answer.status_code == 404:
        raise ApiMismatch(f"{said}; base_url does not point at Routera's API (a wrong path?)")
    if answer.status_code == 400 and properties:
        raise ConfigurationError(
            f"Routera refused the properties setting ({', '.join(properties)}) for "
            f"{object_type.value}: {said}; each name must be a {object_type.singular} field's "
            f"internal name (in Routera's field settings); set {properties_key(object_type)}"
        )
    if answer.status_code != 200:
        return Account(None, said)
    try:
        return Account(int(answer.json()["pagination"]["count"]))
    except (ValueError, KeyError, TypeError):
        raise ApiMismatch(
            f"GET {object_type.path} answered 200 without Routera's list shape (data, "
            f"pagination.count): {api_message(answer.body)}; base_url does not point at "
            "Routera's API"
        ) from None


async def probe_accounts(
    list_objects: ListObjects,
    to_call: Mapping[ObjectType, int],
    properties: Mapping[ObjectType, Sequence[str]],
) -> dict[ObjectType, Account]:
    """`probe_account` for each type with requests to call, in the types' order, every one
    before any DELETE: a bad name of the last type stops the run as surely as one of the
    first. A type with nothing to call is not asked: its names are not used this run."""
    return {
        kind: await probe_account(list_objects, properties.get(kind, ()), kind)
        for kind in ObjectType
        if to_call.get(kind, 0) > 0
    }


def share_verdict(
    config: RouteraSourceConfig,
    accounts: Mapping[ObjectType, Account],
    to_call: Mapping[ObjectType, int],
    *,
    force: bool,
) -> str | None:
    """A refusal when the run would archive too much of any type's active records, else None.
    Each type is held to `max_share` on its own; a refusal names every type's figures, so the
    one who reads it sees which queue went wrong. A figure that cannot be read refuses: the
    check does not pass what it cannot check."""
    share = config.max_share
    called = [kind for kind in ObjectType if to_call.get(kind, 0) > 0]
    if not share or not called or force:
        return None
    unreadable = [kind for kind in called if accounts[kind].active is None]
    if unreadable:
        return (
            "refused: "
            + "; ".join(
                f"the number of active {kind.value} cannot be read "
                f"({accounts[kind].unreadable_because})"
                for kind in unreadable
            )
            + ", so the max_share check cannot pass"
        )
    over = [
        kind
        for kind in called
        if (active := accounts[kind].active or 0) > 0 and to_call[kind] > share * active
    ]
    if not over:
        return None
    parts = " and ".join(
        f"{to_call[kind]} of {accounts[kind].active} active {kind.value}" for kind in over
    )
    verdict = f"refused: this run would archive {parts}, more than max_share {share:.0%}"
    if len(called) > 1:
        verdict += (
            " (by type: "
            + ", ".join(
                f"{kind.value} {to_call[kind]} to call of {accounts[kind].active} active"
                for kind in called
            )
            + ")"
        )
    return verdict
