"""The guardrails a run passes before any call, one place for each rule: a queue that suddenly
holds more than `max_archives`, or a run that would archive more than `max_share` of the
account's active contacts, is far more likely a bad dbt model than an intent. Both refuse
unless forced. The run and the dlt-native source ask the same questions here.
"""

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from routera_archive.config import RouteraSourceConfig, setting_key
from routera_archive.errors import ApiMismatch, ConfigurationError
from routera_archive.http.client import ApiAnswer, api_message
from routera_archive.objects import ObjectType

logger = logging.getLogger(__name__)

# Lists one page of a type's records (`RouteraClient.list_objects`, `Caller.list_objects`): the
# share check's one call is GET /contacts?archived=false&limit=1.
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
    """What the run's first call tells: how many contacts are active (None: unreadable)."""

    active: int | None
    unreadable_because: str = ""


async def probe_account(list_objects: ListObjects, properties: Sequence[str] = ()) -> Account:
    """The run's first call, `GET /contacts?archived=false&limit=1`: the number of active
    contacts for the share check, and the proof that `base_url` is Routera's API. A base URL
    with a wrong path answers every DELETE and GET with the server's own route-level 404, and
    every request would end `not_found`, for good; so a 404 here, or an answer without the list
    shape, stops the run before any DELETE (ApiMismatch, exit 2).

    With `properties` configured the call asks for them (the client adds them), so it is also
    their check: Routera answers 400 to a name it does not know, and a run that went on would
    have every snapshot refused; it stops here instead (ConfigurationError, exit 2)."""
    # Contacts only, for now: the share check per type is a later step of issue 14.
    answer = await list_objects(ObjectType.CONTACTS, archived=False, limit=1, offset=0)
    said = f"GET /contacts answered {answer.status_code}: {api_message(answer.body)}"
    if answer.status_code == 404:
        raise ApiMismatch(f"{said}; base_url does not point at Routera's API (a wrong path?)")
    if answer.status_code == 400 and properties:
        raise ConfigurationError(
            f"Routera refused the properties setting ({', '.join(properties)}): {said}; each "
            "name must be a field's internal name (in Routera's field settings); set "
            f"{setting_key('properties')}"
        )
    if answer.status_code != 200:
        return Account(None, said)
    try:
        return Account(int(answer.json()["pagination"]["count"]))
    except (ValueError, KeyError, TypeError):
        raise ApiMismatch(
            "GET /contacts answered 200 without Routera's list shape (data, pagination.count): "
            f"{api_message(answer.body)}; base_url does not point at Routera's API"
        ) from None


def share_verdict(
    config: RouteraSourceConfig, account: Account, to_call: int, *, force: bool
) -> str | None:
    """A refusal when the run would archive too much of the account, else None. A figure that
    cannot be read refuses: the check does not pass what it cannot check."""
    share = config.max_share
    if not share or to_call == 0 or force:
        return None
    if account.active is None:
        return (
            f"refused: the number of active contacts cannot be read ({account.unreadable_because}),"
            " so the max_share check cannot pass"
        )
    if account.active > 0 and to_call > share * account.active:
        return (
            f"refused: this run would archive {to_call} of {account.active} active contacts, "
            f"more than max_share {share:.0%}"
        )
    return None
