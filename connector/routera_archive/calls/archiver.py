"""Turn one queue request into an outcome: DELETE, and when DELETE says 404, a GET to decide.

Routera's 404 means "not found *or already archived*". Guessing would either lose the audit
record of an archived object or claim an archive that never happened, so every 404 is resolved
by reading the object: archived → its record is kept (`recovered`), 404 → `not_found`. Every
call goes to the request's own type's path (`ObjectType`); the logic is the same for each.
No exception leaves `archive_request` after a DELETE was sent except AuthenticationError, which
stops the run. That request gets no outcome and stays pending: if an earlier attempt of it did
reach Routera (a 502, then a 401), the next run's DELETE answers 404 and the GET recovers it.
"""

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from routera_archive.errors import AuthenticationError, InvalidObjectId, RetriesExhausted
from routera_archive.http.client import (
    MAX_ERROR_BODY_CHARS,
    ApiAnswer,
    RouteraClient,
    api_message,
    summarize_reasons,
)
from routera_archive.http.ids import id_preview, validate_object_id
from routera_archive.journal import JournaledSnapshot
from routera_archive.models import (
    ArchiveOutcome,
    ArchiveRequest,
    ContractError,
    Status,
    parse_archived_record,
    parse_snapshot,
    read_active_flag,
)
from routera_archive.objects import ObjectType

logger = logging.getLogger(__name__)


def is_routera_error(body: str) -> bool:
    """Whether `body` is Routera's one published error shape, `{"message": ..., "error": true}`:
    a 404 without it comes from something else (a proxy, a wrong base path) and says nothing
    about the object."""
    try:
        decoded: Any = json.loads(body)
    except ValueError:
        return False
    return (
        isinstance(decoded, dict)
        and isinstance(decoded.get("message"), str)
        and decoded.get("error") is True
    )


def _not_routera_404(request: ArchiveRequest, method: str, answer: ApiAnswer) -> ArchiveOutcome:
    return ArchiveOutcome(
        request=request,
        status=Status.FAILED,
        http_status=404,
        attempts=answer.attempts,
        error=f"{method} answered 404 without Routera's error body: not taken as 'not found or "
        "already archived' (a proxy or a wrong base_url?); the next run asks again",
        raw_response=_cut(answer.body),
    )


def _message(client: RouteraClient, body: str) -> str:
    return api_message(body, secrets=client.secrets)


def _cut(body: str | None) -> str | None:
    return None if body is None else body[:MAX_ERROR_BODY_CHARS]


# Keeps a snapshot before its DELETE is sent (the call worker's journal); raises OSError when
# it cannot, and then the DELETE is not sent.
KeepSnapshot = Callable[[JournaledSnapshot], None]


async def archive_request(
    client: RouteraClient, request: ArchiveRequest, *, keep_snapshot: KeepSnapshot | None = None
) -> ArchiveOutcome:
    """Archive one request; every path ends in an outcome (see the module docstring)."""
    if request.queue_problem is not None or request.object_type is None:
        # The queue row names no record for certain (an unknown type, two ids that differ):
        # no path is made for it (the run settles these before any call; this is the rule
        # for every other caller too).
        reason = request.queue_problem or f"object_type {request.queued_type!r} is not a type"
        return ArchiveOutcome(request=request, status=Status.INVALID, error=reason)
    try:
        object_id = validate_object_id(request.object_id, field=request.object_type.id_field)
    except InvalidObjectId as exc:
        return ArchiveOutcome(request=request, status=Status.INVALID, error=exc.reason)
    # A snapshot for a type whose `properties` are set; the other types' DELETE answer alone.
    if client.config.properties_of(request.object_type):
        return await _snapshot_then_archive(client, request, object_id, keep_snapshot)
    return await _archive(client, request, object_id)


def _kind(request: ArchiveRequest) -> ObjectType:
    """The type of a request `archive_request` let through (which refuses one without)."""
    if request.object_type is None:
        raise AssertionError("a request without an object type reached a call")
    return request.object_type


@dataclass(frozen=True)
class Snapshot:
    """An active record read with the configured `properties` just before its DELETE: the
    custom fields a DELETE answer may not hold (Routera's reference: "default properties")."""

    fields: dict[str, Any]
    body: str
    attempts: int


async def _archive(
    client: RouteraClient,
    request: ArchiveRequest,
    object_id: str,
    snapshot: Snapshot | None = None,
) -> ArchiveOutcome:
    """The DELETE and what its answer means; with a `snapshot`, the record is both."""
    try:
        answer = await client.delete_object(_kind(request), object_id)
    except RetriesExhausted as exc:
        outcome = ArchiveOutcome(
            request=request,
            status=Status.FAILED,
            http_status=exc.last_status,
            attempts=exc.attempts,
            error=f"DELETE gave up: {exc.reason}"
            + (
                "; an attempt may have archived it: the next run's GET will tell"
                if exc.maybe_reached_server
                else ""
            ),
            raw_response=_cut(exc.last_body),
        )
        return _with_snapshot(outcome, snapshot)

    try:
        outcome = await _interpret(client, request, object_id, answer, snapshot)
    except AuthenticationError:
        raise  # stops the run; the request stays pending (see the module's docstring)
    except Exception as exc:
        # A DELETE was sent and answered: whatever went wrong in reading the answer, it is
        # kept, and the request asked about again next run, never dropped.
        logger.error(
            "reading the answer for %s failed: %s", id_preview(object_id), type(exc).__name__
        )
        logger.debug("reading the answer failed", exc_info=exc)
        outcome = ArchiveOutcome(
            request=request,
            status=Status.FAILED,
            http_status=answer.status_code,
            attempts=answer.attempts,
            error=f"DELETE answered {answer.status_code}, and reading the answer failed "
            f"({type(exc).__name__}); the next run asks again",
            raw_response=_cut(answer.body),
        )
    return _with_snapshot(outcome, snapshot)


def _with_snapshot(outcome: ArchiveOutcome, snapshot: Snapshot | None) -> ArchiveOutcome:
    """The outcome of a DELETE made after a snapshot: its attempts count, its body is kept."""
    if snapshot is None:
        return outcome
    return outcome.model_copy(
        update={
            "attempts": outcome.attempts + snapshot.attempts,
            "snapshot_response": snapshot.body,
        }
    )


async def _snapshot_then_archive(
    client: RouteraClient,
    request: ArchiveRequest,
    object_id: str,
    keep_snapshot: KeepSnapshot | None,
) -> ArchiveOutcome:
    """Read the record with `properties`, then archive it. Never a DELETE without the
    snapshot that was asked for (a DELETE cannot be undone, and its answer may hold no custom
    field): every way the snapshot fails ends the request before its DELETE."""

    try:
        read = await client.get_object(_kind(request), object_id)
    except RetriesExhausted as exc:
        return _no_delete(
            request,
            f"the snapshot (GET with properties) gave up: {exc.reason}",
            status=exc.last_status,
            attempts=exc.attempts,
            body=exc.last_body,
        )
    if read.status_code == 404:
        if not is_routera_error(read.body):
            return _not_routera_404(request, "GET", read)
        return ArchiveOutcome(
            request=request, status=Status.NOT_FOUND, http_status=404, attempts=read.attempts
        )
    if read.status_code != 200:
        return _no_delete(
            request,
            f"the snapshot (GET with properties) answered {read.status_code}: "
            f"{_message(client, read.body)}",
            status=read.status_code,
            attempts=read.attempts,
            body=read.body,
        )
    if read_active_flag(read.body) is not True:
        return _archived_in_snapshot(request, object_id, read)
    try:
        fields = parse_snapshot(read.body, _kind(request), object_id)
    except ContractError as exc:
        return _no_delete(
            request,
            f"the snapshot answered 200 but {exc}",
            status=200,
            attempts=read.attempts,
            body=read.body,
        )
    if keep_snapshot is not None:
        try:
            keep_snapshot(JournaledSnapshot(request=request, body=read.body))
        except OSError as exc:  # a full disk: a DELETE now could lose what was just read
            return _no_delete(
                request,
                f"the snapshot could not be journaled ({exc.strerror or exc})",
                status=200,
                attempts=read.attempts,
                body=None,
            )
    return await _archive(client, request, object_id, Snapshot(fields, read.body, read.attempts))


def _no_delete(
    request: ArchiveRequest, error: str, *, status: int | None, attempts: int, body: str | None
) -> ArchiveOutcome:
    """A request whose snapshot failed: `failed`, and its DELETE never sent."""
    return ArchiveOutcome(
        request=request,
        status=Status.FAILED,
        http_status=status,
        attempts=attempts,
        error=f"{error}; no DELETE was sent, the next run asks again",
        raw_response=_cut(body),
    )


def _archived_in_snapshot(
    request: ArchiveRequest, object_id: str, read: ApiAnswer
) -> ArchiveOutcome:
    """A snapshot showing the record archived already: its record, from the snapshot, and no
    DELETE (it would answer 404)."""
    try:
        _, record, as_text = parse_archived_record(read.body, _kind(request), object_id)
    except ContractError as exc:
        return _no_delete(
            request,
            f"the snapshot answered 200 but {exc}",
            status=200,
            attempts=read.attempts,
            body=read.body,
        )
    return ArchiveOutcome(
        request=request,
        status=Status.ALREADY_ARCHIVED,
        http_status=200,
        attempts=read.attempts,
        record=record,
        text_fields=as_text,
        raw_response=read.body,
        snapshot_response=read.body,
        record_source="get",
        recovered=True,
    )


async def _interpret(
    client: RouteraClient,
    request: ArchiveRequest,
    object_id: str,
    answer: ApiAnswer,
    snapshot: Snapshot | None = None,
) -> ArchiveOutcome:
    if answer.status_code == 200:
        return _from_delete_200(request, object_id, answer, snapshot)
    if answer.status_code == 404:
        if not is_routera_error(answer.body):
            return _not_routera_404(request, "DELETE", answer)
        return await _resolve_404(client, request, object_id, answer)
    return ArchiveOutcome(
        request=request,
        status=Status.FAILED,
        http_status=answer.status_code,
        attempts=answer.attempts,
        error=f"DELETE answered {answer.status_code}: {_message(client, answer.body)}",
        raw_response=_cut(answer.body),
    )


def _from_delete_200(
    request: ArchiveRequest, object_id: str, answer: ApiAnswer, snapshot: Snapshot | None
) -> ArchiveOutcome:
    kind = _kind(request)
    under = None if snapshot is None else snapshot.fields
    try:
        _, record, as_text = parse_archived_record(answer.body, kind, object_id, under=under)
    except ContractError as exc:
        # Routera said 200, so the record is probably archived; the body is kept in the log and
        # the request stays pending: next run's DELETE answers 404 and a GET recovers the record.
        logger.warning(
            "DELETE %s answered 200 with an unexpected body: %s", id_preview(object_id), exc
        )
        return ArchiveOutcome(
            request=request,
            status=Status.FAILED,
            http_status=200,
            attempts=answer.attempts,
            error=f"DELETE answered 200 but {exc}; the next run re-reads the {kind.singular}",
            raw_response=answer.body,
        )
    return ArchiveOutcome(
        request=request,
        status=Status.ARCHIVED,
        http_status=200,
        attempts=answer.attempts,
        record=record,
        text_fields=as_text,
        raw_response=answer.body,
        record_source="delete" if snapshot is None else "snapshot+delete",
    )


async def _resolve_404(
    client: RouteraClient, request: ArchiveRequest, object_id: str, deleted: ApiAnswer
) -> ArchiveOutcome:
    kind = _kind(request)

    def failed(error: str, *, attempts: int, body: str | None = None) -> ArchiveOutcome:
        return ArchiveOutcome(
            request=request,
            status=Status.FAILED,
            http_status=404,
            attempts=deleted.attempts + attempts,
            error=error,
            raw_response=_cut(body),
        )

    try:
        read = await client.get_object(kind, object_id)
    except RetriesExhausted as exc:
        return failed(
            f"DELETE answered 404 and the GET that tells 'not found' from 'already archived' "
            f"gave up: {exc.reason}",
            attempts=exc.attempts,
            body=exc.last_body,
        )
    attempts = deleted.attempts + read.attempts

    if read.status_code == 404 and not is_routera_error(read.body):
        return failed(
            "DELETE answered 404; GET answered 404 without Routera's error body "
            f"({api_message(read.body, secrets=client.secrets)}): not taken as 'not found'; "
            "check base_url",
            attempts=read.attempts,
            body=read.body,
        )
    if read.status_code == 404:
        return ArchiveOutcome(
            request=request,
            status=Status.NOT_FOUND,
            http_status=404,
            attempts=attempts,
            # If GET ever hid archived records, this note is what would point at the loss.
            error=(
                "an earlier DELETE attempt may have reached Routera "
                f"({summarize_reasons(deleted.retry_reasons)}), yet GET finds no such "
                f"{kind.singular}"
                if deleted.maybe_reached_before
                else None
            ),
        )
    if read.status_code != 200:
        return failed(
            f"DELETE answered 404; GET answered {read.status_code}: {_message(client, read.body)}",
            attempts=read.attempts,
            body=read.body,
        )
    if read_active_flag(read.body):
        return failed(
            "DELETE answered 404 (not found or already archived) but GET shows the "
            f"{kind.singular} active; nothing was archived",
            attempts=read.attempts,
            body=read.body,
        )
    try:
        _, record, as_text = parse_archived_record(read.body, kind, object_id)
    except ContractError as exc:
        return failed(
            f"DELETE answered 404; GET answered 200 but {exc}",
            attempts=read.attempts,
            body=read.body,
        )

    # DESIGN.md's statuses: 404 then GET archived is `already_archived`, even when an earlier
    # attempt of this call (a timeout, a 5xx) may have been ours: `archived_by` in the record
    # tells who archived it, and the note says an answer may have been lost.
    lost = deleted.maybe_reached_before
    return ArchiveOutcome(
        request=request,
        status=Status.ALREADY_ARCHIVED,
        http_status=404,
        attempts=attempts,
        error=(
            "an earlier DELETE attempt may have archived it, its answer lost in transit "
            f"({summarize_reasons(deleted.retry_reasons)}); the record was read back with GET"
            if lost
            else None
        ),
        record=record,
        text_fields=as_text,
        raw_response=read.body,
        record_source="get",
        recovered=True,
    )


async def archive_concurrently(
    client: RouteraClient,
    requests: AsyncIterator[ArchiveRequest] | Iterable[ArchiveRequest],
    *,
    workers: int,
    may_start: Callable[[], bool] | None = None,
    keep_snapshot: KeepSnapshot | None = None,
) -> AsyncGenerator[ArchiveOutcome, None]:
    """Archive `requests` with at most `workers` in progress, yielding outcomes as they finish.

    Requests are pulled lazily (a bounded hand-off queue), so a long queue is never held in
    memory. An AuthenticationError stops the intake at once; the requests already in progress
    finish and their outcomes are yielded before the error is raised. Once `may_start` says no
    (the run is stopping), requests already pulled but not started are dropped: they get no
    outcome and stay pending.
    """
    intake: asyncio.Queue[ArchiveRequest | None] = asyncio.Queue(maxsize=workers * 2)
    # Bounded, so answers never wait in memory in numbers: a slow consumer slows the workers.
    results: asyncio.Queue[ArchiveOutcome | BaseException | None] = asyncio.Queue(
        maxsize=workers * 2
    )
    stop = asyncio.Event()
    # An error of `requests` itself (the queue could not be read): raised once the requests
    # already started have their outcomes, never swallowed as if the queue had ended.
    feed_error: list[Exception] = []

    async def feed() -> None:
        try:
            if isinstance(requests, AsyncIterator):
                async for request in requests:
                    if stop.is_set():
                        break
                    await intake.put(request)
            else:
                for request in requests:
                    if stop.is_set():
                        break
                    await intake.put(request)
        except Exception as exc:
            feed_error.append(exc)
        # Not in a `finally`: once cancelled, waiting for room in the queue would never end
        # (nobody takes from it any more), and the process would hang in its shutdown.
        for _ in range(workers):
            await intake.put(None)

    async def work() -> None:
        while (request := await intake.get()) is not None:
            if stop.is_set() or (may_start is not None and not may_start()):
                continue
            try:
                await results.put(
                    await archive_request(client, request, keep_snapshot=keep_snapshot)
                )
            except asyncio.CancelledError:
                raise  # the consumer is gone: nobody would take what this put in `results`
            except BaseException as exc:
                stop.set()
                await results.put(exc)
        await results.put(None)

    tasks = [asyncio.create_task(feed())] + [asyncio.create_task(work()) for _ in range(workers)]
    error: BaseException | None = None
    try:
        finished = 0
        while finished < workers:
            item = await results.get()
            if item is None:
                finished += 1
            elif isinstance(item, BaseException):
                error = error or item
            else:
                yield item
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if error is not None:
        raise error
    if feed_error:
        raise feed_error[0]
