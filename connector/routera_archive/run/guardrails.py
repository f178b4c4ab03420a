"""The guardrails a run passes before any call, one place for each rule: a queue that suddenly
holds more than `max_archives`, or a run that would archive more than `max_share` of the
account's active contacts, is far more likely a bad dbt model than an intent. Both refuse
unless forced. The run and the dlt-native source ask the same questions here.
"""

import logging
from collections.abc import Awaitable, Callable

from routera_archive.config import RouteraSourceConfig
from routera_archive.http.client import ApiAnswer

logger = logging.getLogger(__name__)

# Lists one page of contacts: the share check's one call (GET /contacts?archived=false&limit=1).
ListContacts = Callable[..., Awaitable[ApiAnswer]]


def max_archives_verdict(config: RouteraSourceConfig, to_handle: int, *, force: bool) -> str:
    """`passed: ...`, `forced: ...` or `refused: ...` (the words `archive_runs.guardrail` keeps)."""
    limit = config.max_archives
    if to_handle <= limit:
        return f"passed: {to_handle} to handle, max_archives {limit}"
    if force:
        return f"forced: {to_handle} to handle over max_archives {limit}"
    return f"refused: {to_handle} requests to handle, more than max_archives {limit}"


async def share_verdict(
    config: RouteraSourceConfig, list_contacts: ListContacts, to_call: int, *, force: bool
) -> str | None:
    """A refusal when the run would archive too much of the account, else None."""
    share = config.max_share
    if not share or to_call == 0 or force:
        return None
    answer = await list_contacts(archived=False, limit=1, offset=0)
    try:
        active = int(answer.json()["pagination"]["count"])
    except (ValueError, KeyError, TypeError):
        logger.warning("could not read the number of active contacts; share check skipped")
        return None
    if active > 0 and to_call > share * active:
        return (
            f"refused: this run would archive {to_call} of {active} active contacts, more "
            f"than max_share {share:.0%}"
        )
    return None
