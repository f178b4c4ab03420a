"""`evidence`: the whole story of one subject, as an erasure audit asks for it.

For a record (`--contact-id`, or `--object-id` with `--object-type`) or a request
(`--request-id`): every request for it (who asked, why, when), every outcome with its time and
HTTP status, the record the API returned (`archived`, `archived_by`, the answer itself), the
record's hashes and whether they verify, each run involved (its connector version and the chain
head its link left), and every redaction applied since. The whole chain is verified as the
document is made (`audit.verify`), so "verifies" means: this row, and the chain it is in, are
as they were loaded (or as a recorded redaction left them).

A duplicate request has no record of its own: the record it names is shown with the request
that archived it (`duplicate_of`), and no other record of that request. Read-only, in a UTC
session.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from routera_archive import __version__
from routera_archive.audit.verify import Verification, verify_dataset
from routera_archive.dataset.canonical import sha256_text
from routera_archive.dataset.chain import read_links, row_key, select_rows, utc_session
from routera_archive.dataset.loading import stored_columns
from routera_archive.dataset.outcomes import logged_id, logged_type
from routera_archive.errors import ConfigurationError
from routera_archive.names import LOG_TABLE, REDACTIONS_TABLE, RUNS_TABLE
from routera_archive.objects import ObjectType

# The columns of each part, in the order a reader wants them.
REQUEST_COLUMNS = (
    "request_id",
    "object_type",
    "object_id",
    "requested_by",
    "reason",
    "requested_at",
)
OUTCOME_COLUMNS = (
    "request_id",
    "status",
    "http_status",
    "processed_at",
    "attempts",
    "run_id",
    "recovered",
    "record_source",
    "duplicate_of",
    "error",
    "outcome_id",
)
RECORD_COLUMNS = (
    "id",
    "archived",
    "archived_by",
    "created_at",
    "updated_at",
    "request_id",
    "requested_by",
    "reason",
    "run_id",
    "recovered",
    "record_source",
    "record_sha256",
    "snapshot_sha256",
)
RUN_COLUMNS = (
    "run_id",
    "mode",
    "started_at",
    "finished_at",
    "outcome",
    "exit_code",
    "connector_version",
    "chain_seq",
    "chain_sha256",
)
REDACTION_COLUMNS = ("redaction_id", "redacted_at", "redacted_by", "reason", "columns")


@dataclass
class Evidence:
    subject: dict[str, Any]
    dataset: str
    destination: str
    generated_at: datetime
    requests: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    redactions: list[dict[str, Any]] = field(default_factory=list)
    chain: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "evidence": {
                "subject": self.subject,
                "dataset": self.dataset,
                "destination": self.destination,
                "generated_at": self.generated_at,
                "generated_by": f"routera-archive {__version__}",
            },
            "requests": self.requests,
            "outcomes": self.outcomes,
            "records": self.records,
            "runs": self.runs,
            "redactions": self.redactions,
            "chain": self.chain,
            "notes": self.notes,
        }


def build_evidence(
    pipeline: dlt.Pipeline,
    *,
    object_id: str | None = None,
    object_type: ObjectType = ObjectType.CONTACTS,
    request_id: str | None = None,
    now: datetime | None = None,
) -> Evidence:
    if (object_id is None) == (request_id is None):
        raise ConfigurationError("name one subject: --contact-id (or --object-id) or --request-id")
    subject: dict[str, Any] = (
        {"request_id": request_id}
        if request_id is not None
        else {"object_type": object_type.value, "object_id": object_id}
    )
    evidence = Evidence(
        subject=subject,
        dataset=str(pipeline.dataset_name),
        destination=pipeline.destination.destination_name,
        generated_at=now or datetime.now(UTC),
    )
    verification = verify_dataset(pipeline)  # raises on a dataset with no audit trail
    with utc_session(pipeline) as client:
        log = _log_rows(client, object_id, object_type, request_id)
        evidence.outcomes = [_pick(row, OUTCOME_COLUMNS) for row in log]
        evidence.requests = _requests(log)
        records = _record_keys(log, object_id, object_type)
        # A duplicate names its own record (type and id): the one the request it duplicated
        # archived, shown with that request's id. That request may have named other records
        # too; they are not this subject's and are not shown.
        evidence.redactions = _redactions(client, records)
        evidence.records = _records(client, records, verification, evidence.redactions)
        involved = [*evidence.outcomes, *evidence.records]
        run_ids = {str(item["run_id"]) for item in involved if item.get("run_id")}
        run_ids |= {str(r["redaction_id"]) for r in evidence.redactions}
        evidence.runs = _runs(client, run_ids)
        links = read_links(client) or []
    evidence.chain = {
        "head": links[-1].chain_sha256 if links else None,
        "links": len(links),
        "intact": verification.intact,
        "finding_count": verification.finding_count,
    }
    if not log:
        evidence.notes.append("no request for this subject has an outcome in archive_log")
    if not verification.intact:
        evidence.notes.append(
            f"the dataset does not verify ({verification.finding_count} findings): run "
            "`routera-archive verify` for all of them"
        )
    return evidence


def _pick(row: dict[str, Any], columns: Iterable[str]) -> dict[str, Any]:
    return {name: row.get(name) for name in columns}


def _typed(client: Any) -> bool:
    """Whether the log has `object_type` yet (see `dataset.outcomes.logged_type`)."""
    return "object_type" in (stored_columns(client, LOG_TABLE) or set())


def _log_rows(
    client: Any, object_id: str | None, object_type: ObjectType, request_id: str | None
) -> list[dict[str, Any]]:
    table = client.make_qualified_table_name(LOG_TABLE)
    typed = _typed(client)
    kind, record = logged_type("l", typed=typed), logged_id("l", typed=typed)
    args: list[Any]
    if request_id is not None:
        where, args = "l.request_id = %s", [request_id]
    else:
        where, args = f"{kind} = %s AND {record} = %s", [object_type.value, object_id]
    query = (
        f"SELECT l.*, {kind} AS kind, {record} AS record_id FROM {table} l WHERE {where} "
        f"ORDER BY l.processed_at, l.outcome_id"
    )
    try:
        rows = list(select_rows(client, query, *args))
    except DatabaseUndefinedRelation:
        return []
    for row in rows:
        row["object_type"], row["object_id"] = row["kind"], row["record_id"]
    return rows


def _requests(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per request (its first log row holds what the queue said)."""
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in log:
        key = (str(row["request_id"]), str(row["object_type"]), str(row["object_id"]))
        if key not in seen:
            seen[key] = _pick(row, REQUEST_COLUMNS)
    return list(seen.values())


def _record_keys(
    log: list[dict[str, Any]], object_id: str | None, object_type: ObjectType
) -> set[tuple[str, str]]:
    keys = {(str(row["object_type"]), str(row["object_id"])) for row in log}
    if object_id is not None:
        keys.add((object_type.value, object_id))
    return keys


def _records(
    client: Any,
    keys: set[tuple[str, str]],
    verification: Verification,
    redactions: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    redacted = {(t, i) for entry in redactions for t, ids in entry["rows"].items() for i in ids}
    # Findings beyond MAX_FINDINGS are counted, not kept: then a row's may be among them.
    complete = verification.finding_count == len(verification.findings)
    records: list[dict[str, Any]] = []
    for kind_name, record_id in sorted(keys):
        try:
            kind = ObjectType(kind_name)
        except ValueError:
            continue
        table = client.make_qualified_table_name(kind.table)
        try:
            rows = list(select_rows(client, f"SELECT * FROM {table} WHERE id = %s", record_id))
        except DatabaseUndefinedRelation:
            continue
        for row in rows:
            key = row_key(row, ("id",))
            findings = [
                {"check": f.check, "detail": f.detail}
                for f in verification.findings
                if f.table == kind.table and f.key == key
            ]
            raw = row.get("raw_response")
            was_redacted = (kind.table, str(row["id"])) in redacted
            record = {"object_type": kind.value, **_pick(row, RECORD_COLUMNS)}
            record["redacted"] = was_redacted
            # After a redaction the stored answer is not the one hashed at load.
            record["record_hash_matches"] = (
                None
                if was_redacted or row.get("record_sha256") is None or raw is None
                else sha256_text(str(raw)) == row["record_sha256"]
            )
            if (kind.table, key) in verification.unvouched:
                findings.append(
                    {
                        "check": "broken link",
                        "detail": "the digest this row matches is among those its run's link "
                        "no longer vouches for",
                    }
                )
            record["verifies"] = False if findings else (True if complete else None)
            record["findings"] = findings
            record["answer"] = _parsed(raw)
            record["snapshot"] = _parsed(row.get("snapshot_response"))
            records.append(record)
    return records


def _parsed(text: Any) -> Any:
    if text is None:
        return None
    try:
        return json.loads(str(text))
    except ValueError:
        return str(text)


def _redactions(client: Any, keys: set[tuple[str, str]]) -> list[dict[str, Any]]:
    table = client.make_qualified_table_name(REDACTIONS_TABLE)
    try:
        rows = list(select_rows(client, f"SELECT * FROM {table} ORDER BY redacted_at"))
    except DatabaseUndefinedRelation:
        return []
    wanted: dict[str, set[str]] = {}
    for kind_name, record_id in keys:
        try:
            wanted.setdefault(ObjectType(kind_name).table, set()).add(record_id)
        except ValueError:
            continue
    applied: list[dict[str, Any]] = []
    for row in rows:
        named = _as_json(row.get("rows")) or {}
        tables = {t: sorted(set(ids) & wanted.get(t, set())) for t, ids in named.items()}
        tables = {t: ids for t, ids in tables.items() if ids}
        if tables:
            entry = _pick(row, REDACTION_COLUMNS)
            entry["columns"] = {t: (_as_json(row.get("columns")) or {}).get(t, []) for t in tables}
            entry["rows"] = tables
            applied.append(entry)
    return applied


def _as_json(value: Any) -> Any:
    if value is None or isinstance(value, (dict, list)):
        return value
    return json.loads(str(value))


def _runs(client: Any, run_ids: set[str]) -> list[dict[str, Any]]:
    if not run_ids:
        return []
    table = client.make_qualified_table_name(RUNS_TABLE)
    marks = ", ".join(["%s"] * len(run_ids))
    try:
        rows = select_rows(
            client,
            f"SELECT * FROM {table} WHERE run_id IN ({marks}) ORDER BY started_at",
            *sorted(run_ids),
        )
        return [_pick(row, RUN_COLUMNS) for row in rows]
    except DatabaseUndefinedRelation:
        return []
