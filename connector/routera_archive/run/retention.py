"""`redact` as a command runs it: under the dataset's locks, as a run of its own."""

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import dlt

from routera_archive.config import DEFAULT_PERSONAL_FIELDS
from routera_archive.dataset.lock import RunLock, dataset_lock
from routera_archive.dataset.redact import Redaction, RedactionRequest, redact
from routera_archive.run.result import new_run_id


def redact_dataset(
    pipeline: dlt.Pipeline,
    request: RedactionRequest,
    *,
    personal_fields: Sequence[str] = DEFAULT_PERSONAL_FIELDS,
    dry_run: bool = False,
    folders: Sequence[Path] = (),
    now: datetime | None = None,
) -> list[Redaction]:
    """Redact what `request` selects (finishing a killed redaction first). It holds the
    pipeline folder's and the dataset's locks as a run does, so no run loads meanwhile; a dry
    run only reads, and takes neither."""
    redaction_id = new_run_id()
    if dry_run:
        return redact(
            pipeline,
            request,
            redaction_id=redaction_id,
            personal_fields=personal_fields,
            dry_run=True,
            folders=folders,
            now=now,
        )
    folder_lock = RunLock(Path(pipeline.working_dir) / "run.lock", redaction_id)
    folder_lock.acquire()
    try:
        shared_lock = dataset_lock(pipeline, redaction_id, None)
        shared_lock.acquire()
        try:
            return redact(
                pipeline,
                request,
                redaction_id=redaction_id,
                personal_fields=personal_fields,
                folders=folders,
                now=now,
            )
        finally:
            shared_lock.release()
    finally:
        folder_lock.release()
