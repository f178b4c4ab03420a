"""What a run did: the report the CLI prints, `archive_runs` stores and schedulers read."""

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from routera_archive import __version__
from routera_archive.dataset.chain import ChainLink
from routera_archive.errors import ExitCode
from routera_archive.models import ArchiveOutcome, ArchiveRequest, Status
from routera_archive.objects import ObjectType
from routera_archive.redaction import scrub

# Where `counts_by_type` counts a request whose queue row named no type (it is `invalid`).
NO_TYPE = "(no type)"


@dataclass
class PlannedRequest:
    request: ArchiveRequest
    action: str  # "archive", or the status it will get without a call
    note: str | None = None


@dataclass
class RunReport:
    run_id: str
    mode: str
    started_at: datetime
    base_url: str
    destination: str
    dataset: str
    finished_at: datetime | None = None
    # The worker's share of the queue ("1/4"), None for a run of the whole queue.
    shard: str | None = None
    pending_at_start: int | None = None
    guardrail: str = "not checked"
    counts: Counter[str] = field(default_factory=Counter)
    # The same outcomes per type (`ObjectType` value; `NO_TYPE` for a row that named none).
    counts_by_type: dict[str, Counter[str]] = field(default_factory=dict)
    replayed_from_journal: int = 0
    loaded_pending_packages: bool = False
    new_columns: dict[str, list[str]] = field(default_factory=dict)
    # Record keys stored under another column than dlt's name for them (a collision avoided).
    renamed_fields: dict[str, str] = field(default_factory=dict)
    # Variant columns dlt added because a field's values changed type (`<field>__v_<type>`).
    type_changes: list[str] = field(default_factory=list)
    # Columns a frozen/discarding contract kept out of contact_archives (raw_response has them).
    held_back_fields: list[str] = field(default_factory=list)
    failures: list[tuple[str, str | None, str]] = field(default_factory=list)
    plan: list[PlannedRequest] = field(default_factory=list)
    plan_counts: Counter[str] = field(default_factory=Counter)
    exit_code: int = ExitCode.OK
    outcome: str = "completed"
    error: str | None = None
    requests_sent: int = 0
    # Why this run's own row is not in `archive_runs` (the destination could not take it).
    run_row_error: str | None = None
    # Records loaded with their own fields held back (in `raw_response` only), and why.
    held_back_records: list[str] = field(default_factory=list)
    held_back_reasons: list[str] = field(default_factory=list)
    # Packages a crashed or refused load left, aborted because they could never load.
    aborted_packages: int = 0
    # Records this run kept, and the keys outside Routera's default properties they carried
    # (each record judged by its own type's defaults), in all and by type.
    records_kept: int = 0
    keys_beyond_defaults: set[str] = field(default_factory=set)
    kept_by_type: Counter[ObjectType] = field(default_factory=Counter)
    beyond_by_type: dict[ObjectType, set[str]] = field(default_factory=dict)
    # What the user should know and act on, though nothing failed (`note_properties`).
    notes: list[str] = field(default_factory=list)
    # The dlt pipeline the run used, and its folder (for `dlt pipeline NAME info`, ...).
    pipeline_name: str | None = None
    pipeline_folder: str | None = None
    # The run's link in the dataset's hash chain (`dataset.chain`), once made; or why not.
    chain: ChainLink | None = None
    chain_error: str | None = None
    # What `redact_after_days` redacted at the run's end (`Redaction.summary()`s), or why not.
    retention: list[dict[str, Any]] = field(default_factory=list)
    retention_error: str | None = None

    def count(self, outcome: ArchiveOutcome) -> None:
        """Count an outcome, in all and under its type."""
        kind = outcome.request.object_type
        self.counts[outcome.status.value] += 1
        by_type = self.counts_by_type.setdefault(NO_TYPE if kind is None else kind.value, Counter())
        by_type[outcome.status.value] += 1

    def note_record(self, record: dict[str, Any], object_type: ObjectType) -> None:
        self.records_kept += 1
        self.kept_by_type[object_type] += 1
        defaults = object_type.default_properties
        beyond = {key for key in record if key not in defaults}
        self.keys_beyond_defaults.update(beyond)
        self.beyond_by_type.setdefault(object_type, set()).update(beyond)

    def note_properties(self, properties: Mapping[ObjectType, Sequence[str]]) -> None:
        """Say it, per type, when the records look incomplete: Routera's reference says a
        DELETE answer holds only the default properties, and an audit trail without custom
        fields that says nothing would be trusted as complete. Each type has its own setting,
        so each note names the one to set."""
        only_contacts = set(self.kept_by_type) <= {ObjectType.CONTACTS}
        for kind in ObjectType:
            kept = self.kept_by_type.get(kind, 0)
            if not kept:
                continue
            names = properties.get(kind, ())
            beyond = self.beyond_by_type.get(kind, set())
            contacts = kind is ObjectType.CONTACTS
            setting = "`properties`" if contacts else f"`properties.{kind.value}`"
            if not names and not beyond:
                answers = (
                    "the answers" if contacts and only_contacts else f"the {kind.singular} answers"
                )
                where = (
                    "SOURCES__ROUTERA__PROPERTIES or --properties"
                    if contacts
                    else f"[sources.routera.properties] {kind.value}"
                )
                self.notes.append(
                    f"{answers} held only Routera's default properties ({kept} records, no "
                    f"custom field): set {setting} to the custom fields to keep ({where}), and "
                    f"each {kind.singular} is read with them before its DELETE"
                )
            missing = [name for name in names if name not in beyond]
            if missing:
                record = "record" if contacts and only_contacts else f"{kind.singular} record"
                self.notes.append(
                    f"no {record} of this run held {', '.join(repr(name) for name in missing)} "
                    f"of {setting}: check each is a {kind.singular} field's internal name (in "
                    "Routera's field settings)"
                )

    def note_held_back(self, contact_ids: list[str], reason: str) -> None:
        self.held_back_records.extend(contact_ids)
        if reason not in self.held_back_reasons:
            self.held_back_reasons.append(reason)

    @property
    def handled(self) -> int:
        return sum(self.counts.values())

    def run_row(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "mode": self.mode,
            "shard": self.shard,
            "exit_code": self.exit_code,
            "outcome": self.outcome,
            "pending_at_start": self.pending_at_start,
            "guardrail": self.guardrail,
            "new_columns": self.new_columns,
            "renamed_fields": self.renamed_fields,
            "type_changes": self.type_changes,
            "held_back_fields": self.held_back_fields,
            "held_back_records": self.held_back_records,
            "aborted_packages": self.aborted_packages,
            "notes": self.notes,
            "counts": {status.value: self.counts.get(status.value, 0) for status in Status},
            "counts_by_type": {
                kind: dict(sorted(counts.items()))
                for kind, counts in sorted(self.counts_by_type.items())
            },
            "connector_version": __version__,
            "base_url": self.base_url,
            "destination": self.destination,
            "dataset": self.dataset,
            "error": None if self.error is None else scrub(self.error),
        }


def stored_run_row(report: "RunReport") -> dict[str, Any]:
    """The run's row as `archive_runs` holds it once linked: its figures and its link's."""
    row = report.run_row()
    return row if report.chain is None else report.chain.on_run_row(row)


class RunObserver:
    """Hooks for whoever shows progress; the library itself only logs."""

    def on_start(self, report: RunReport, to_handle: int) -> None: ...
    def on_outcome(self, outcome: ArchiveOutcome) -> None: ...
    def on_loaded(self, rows: int) -> None: ...


MAX_FAILURES_KEPT = 100


def new_run_id() -> str:
    """Sortable by time, unique without coordination."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid4().hex[:8]}"
