"""`verify`: recompute every hash of the dataset's chain and say whether it is intact.

What is checked, and what each failure says (`Finding.check`):
- `broken link`: a link of `archive_chain` whose hash, sequence or predecessor is not what it
  must be (a link edited, deleted or inserted), or whose digests no longer hash to its
  `rows_sha256` (a digest edited, deleted or inserted);
- `run content`: a linked run's row in `archive_runs` that differs from what its link hashed,
  or whose link figures differ from the link's;
- `row content`: a row whose canonical content (`dataset.canonical`) differs from its digest;
- `record hash`: an audit row whose `record_sha256` / `snapshot_sha256` is not the SHA-256 of
  its `raw_response` / `snapshot_response`;
- `missing row`: a digest, or a link's run row, with no row;
- a row a recorded redaction changed is checked against the redaction's digest (a link of a
  run of mode `redact` may chain a row again; any other link may not), and its
  `record_sha256` is not recomputed: it is the hash of the answer before the redaction;
- `extra row`: a row no link covers (inserted; or loaded by a run that has not finished yet:
  verify between runs);
- `unexpected head`: `--expect-head` names a hash the chain does not pass through (the
  tables were rewritten, with their hashes recomputed);
- `unfinished redaction`: a row a redaction changed (as it left it), or its own record, of a
  redaction killed before its link: the next `redact` or run links it.

Read-only, in a UTC session; the column types are those of the newest schema dlt stored in
the destination, so a fresh pipeline folder verifies as well as the one that ran.
"""

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from routera_archive.dataset.canonical import CANONICAL_FORM, row_sha256, sha256_text
from routera_archive.dataset.chain import (
    CHAINED_TABLES,
    GENESIS,
    RUN_TYPES,
    ChainLink,
    Digest,
    read_links,
    row_key,
    rows_sha256,
    run_sha256,
    select_rows,
    stored_types,
    unfinished_redactions,
    utc_session,
)
from routera_archive.dataset.redact import REDACT_MODE
from routera_archive.dataset.tables import RUN_LINK_COLUMNS
from routera_archive.errors import ConfigurationError
from routera_archive.names import CHAIN_TABLE, DIGESTS_TABLE, REDACTIONS_TABLE, RUNS_TABLE
from routera_archive.objects import ObjectType

# How many findings a verification keeps (their count is always exact).
MAX_FINDINGS = 1000


@dataclass(frozen=True)
class Finding:
    table: str
    # The row's key (its key columns' values as a JSON list), or a run id / chain position.
    key: str
    check: str
    detail: str


@dataclass
class Verification:
    head: str | None = None
    links: int = 0
    rows_checked: int = 0
    findings: list[Finding] = field(default_factory=list)
    finding_count: int = 0
    notes: list[str] = field(default_factory=list)
    expected_head: str | None = None
    # Runs whose digests no longer hash to their link (a `broken link` finding), and the rows
    # checked against those digests: no link vouches for them (`evidence` says so per row).
    broken_runs: set[str] = field(default_factory=set)
    unvouched: set[tuple[str, str]] = field(default_factory=set)

    @property
    def intact(self) -> bool:
        return self.finding_count == 0

    def add(self, table: str, key: str, check: str, detail: str) -> None:
        self.finding_count += 1
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(Finding(table, key, check, detail))

    def as_dict(self) -> dict[str, Any]:
        return {
            "intact": self.intact,
            "head": self.head,
            "links": self.links,
            "rows_checked": self.rows_checked,
            "expected_head": self.expected_head,
            "finding_count": self.finding_count,
            "findings": [asdict(finding) for finding in self.findings],
            "notes": self.notes,
            "canonical_form": CANONICAL_FORM,
        }


def verify_dataset(pipeline: dlt.Pipeline, *, expect_head: str | None = None) -> Verification:
    result = Verification(expected_head=expect_head)
    types = stored_types(pipeline)
    if not any(spec.name in types for spec in CHAINED_TABLES):
        # Nothing to verify is not "intact": the wrong file or dataset, most likely.
        raise ConfigurationError(
            f"dataset `{pipeline.dataset_name}` holds no audit trail: check --destination, "
            "--dataset and the destination's credentials (a DuckDB file's path)"
        )
    with utc_session(pipeline) as client:
        links = read_links(client) or []
        result.links = len(links)
        result.head = links[-1].chain_sha256 if links else None
        _check_links(links, result)
        linked = {link.run_id: link for link in links}
        modes = _check_run_rows(client, linked, result)
        redactions = {run_id for run_id, mode in modes.items() if mode == REDACT_MODE}
        digests = _valid_digests(client, linked, redactions, result)
        unfinished = _unfinished(client, links, types)
        _check_rows(client, types, digests, linked, redactions, unfinished, result)
    if expect_head is not None:
        _check_head(links, expect_head.strip().lower(), result)
    if not links:
        result.notes.append("the dataset has no hash chain yet: no run of this release ended")
    return result


def _check_links(links: list[ChainLink], result: Verification) -> None:
    previous = GENESIS
    for position, link in enumerate(links, start=1):
        where = str(link.chain_seq)
        if link.chain_seq != position:
            result.add(
                CHAIN_TABLE,
                where,
                "broken link",
                f"link {link.chain_seq} (run {link.run_id}) is at position {position}: a link "
                "before it was deleted, or one was inserted",
            )
        if link.previous_chain_sha256 != previous:
            result.add(
                CHAIN_TABLE,
                where,
                "broken link",
                f"run {link.run_id}'s link does not follow the link before it",
            )
        if link.chain_sha256 != link.expected_sha256():
            result.add(CHAIN_TABLE, where, "broken link", f"run {link.run_id}'s link was edited")
        previous = link.chain_sha256
    counted = Counter(link.run_id for link in links)
    for run_id, count in counted.items():
        if count > 1:
            result.add(CHAIN_TABLE, run_id, "broken link", f"run {run_id} is linked {count} times")


def _check_run_rows(
    client: Any, linked: dict[str, ChainLink], result: Verification
) -> dict[str, str | None]:
    """Check each linked run's row; return each one's mode (as its hash vouches for it)."""
    table = client.make_qualified_table_name(RUNS_TABLE)
    try:
        rows = {str(row["run_id"]): row for row in select_rows(client, f"SELECT * FROM {table}")}
    except DatabaseUndefinedRelation:
        rows = {}
    modes: dict[str, str | None] = {}
    for run_id, link in linked.items():
        key = json.dumps([run_id])
        row = rows.get(run_id)
        result.rows_checked += 1
        if row is None:
            result.add(RUNS_TABLE, key, "missing row", f"linked run {run_id} has no row")
            continue
        if run_sha256(row, RUN_TYPES) != link.run_sha256:
            result.add(RUNS_TABLE, key, "run content", f"run {run_id}'s row was edited")
        else:
            modes[run_id] = row.get("mode")
        figures = link.run_row_figures()
        stored = {name: row.get(name) for name in RUN_LINK_COLUMNS}
        adopted = stored.get("adopted_run_ids")
        stored["adopted_run_ids"] = json.loads(adopted) if isinstance(adopted, str) else adopted
        if stored != figures:
            differing = sorted(name for name in figures if stored.get(name) != figures[name])
            result.add(
                RUNS_TABLE,
                key,
                "run content",
                f"run {run_id}'s row says otherwise than its link ({', '.join(differing)})",
            )
    return modes


def _valid_digests(
    client: Any, linked: dict[str, ChainLink], redactions: set[str], result: Verification
) -> dict[tuple[str, str], tuple[str, str]]:
    """(table, key) -> (row hash, run that chained it), of the digests a link covers, the
    newest where a redaction chained a row again; each link's digests re-hashed against its
    `rows_sha256`."""
    table = client.make_qualified_table_name(DIGESTS_TABLE)
    by_run: dict[str, list[Digest]] = defaultdict(list)
    orphans = 0
    try:
        rows = select_rows(
            client, f"SELECT table_name, row_key, chained_by, row_sha256 FROM {table}"
        )
        for row in rows:
            run_id = str(row["chained_by"])
            if run_id not in linked:
                orphans += 1  # a run killed before its link: the next run chained its rows
                continue
            by_run[run_id].append(
                Digest(str(row["table_name"]), str(row["row_key"]), str(row["row_sha256"]))
            )
    except DatabaseUndefinedRelation:
        pass
    if orphans:
        result.notes.append(
            f"{orphans} digests of runs killed before their link were left aside (a later run "
            "chained those rows)"
        )
    valid: dict[tuple[str, str], tuple[str, str]] = {}
    redacted: set[tuple[str, str]] = set()
    for run_id, link in linked.items():
        digests = by_run.get(run_id, [])
        if rows_sha256(digests) != link.rows_sha256 or len(digests) != link.digested_rows:
            result.broken_runs.add(run_id)
            result.add(
                DIGESTS_TABLE,
                json.dumps([run_id]),
                "broken link",
                f"the digests run {run_id} chained ({len(digests)}, linked: "
                f"{link.digested_rows}) no longer hash to its link: one was edited, deleted "
                "or inserted",
            )
        for digest in digests:
            place = (digest.table, digest.key)
            if place in valid:
                if run_id in redactions:
                    redacted.add(place)
                else:
                    result.add(digest.table, digest.key, "broken link", "the row is chained twice")
            valid[place] = (digest.row_sha256, run_id)
    if redacted:
        result.notes.append(
            f"{len(redacted)} rows were changed by {len(redactions)} recorded redaction(s) and are "
            "checked as redacted; their record_sha256 is the hash of the answer as loaded"
        )
    return valid


def _unfinished(
    client: Any, links: list[ChainLink], types: dict[str, dict[str, str]]
) -> dict[tuple[str, str], tuple[str, str | None]]:
    """(table, key) -> (redaction id, the row's hash as it left it; None for its own rows) of
    every redaction killed before its link."""
    ids = unfinished_redactions(client, links)
    if not ids:
        return {}
    table = client.make_qualified_table_name(REDACTIONS_TABLE)
    marks = ", ".join(["%s"] * len(ids))
    places: dict[tuple[str, str], tuple[str, str | None]] = {}
    for row in select_rows(client, f"SELECT * FROM {table} WHERE redaction_id IN ({marks})", *ids):
        redaction = str(row["redaction_id"])
        hashes = row.get("row_hashes")
        hashes = json.loads(hashes) if isinstance(hashes, str) else hashes or {}
        for table_name, expected in hashes.items():
            for key, digest in expected.items():
                places[(table_name, json.dumps([key]))] = (redaction, str(digest))
        places[(REDACTIONS_TABLE, json.dumps([redaction]))] = (redaction, None)
        places[(RUNS_TABLE, json.dumps([redaction]))] = (redaction, None)
    return places


def _check_rows(
    client: Any,
    types: dict[str, dict[str, str]],
    digests: dict[tuple[str, str], tuple[str, str]],
    linked: dict[str, ChainLink],
    redactions: set[str],
    unfinished: dict[tuple[str, str], tuple[str, str | None]],
    result: Verification,
) -> None:
    def left_by_a_killed_redaction(place: tuple[str, str], row: dict[str, Any]) -> bool:
        found = unfinished.get(place)
        if found is None:
            return False
        redaction, expected = found
        if expected is not None and row_sha256(row, types.get(place[0], {})) != expected:
            return False
        result.add(
            place[0],
            place[1],
            "unfinished redaction",
            f"redaction {redaction} was killed before its link: run `routera-archive redact` "
            "(or a run) to finish it",
        )
        return True

    seen: set[tuple[str, str]] = set()
    audit_tables = {kind.table for kind in ObjectType}
    for spec in CHAINED_TABLES:
        table = client.make_qualified_table_name(spec.name)
        try:
            rows: Iterable[dict[str, Any]] = select_rows(client, f"SELECT * FROM {table}")
            for row in rows:
                if spec.name == RUNS_TABLE and str(row.get("run_id")) in linked:
                    continue  # checked against its link
                key = row_key(row, spec.key)
                place = (spec.name, key)
                result.rows_checked += 1
                if place in seen:  # an exact copy matches the digest too: count the rows
                    result.add(spec.name, key, "extra row", "a second row with this key")
                    continue
                seen.add(place)
                digest = digests.get(place)
                redacted = digest is not None and digest[1] in redactions
                if digest is not None and digest[1] in result.broken_runs:
                    result.unvouched.add(place)  # its digest may be the one edited
                if place in unfinished and left_by_a_killed_redaction(place, row):
                    continue
                if spec.name in audit_tables and not redacted:
                    _check_record_hashes(row, spec.name, key, result)
                if digest is None:
                    owner = row.get(spec.run_column)
                    if owner is None:
                        why = f"inserted: its {spec.run_column} names no run"
                    elif str(owner) in linked:
                        why = f"inserted after run {owner}, whose id it carries, was chained"
                    else:
                        why = (
                            f"run {owner} has no link: it has not finished, or it was killed "
                            "and no run has ended here since, or the row was inserted"
                        )
                    result.add(spec.name, key, "extra row", f"no link covers this row ({why})")
                elif row_sha256(row, types.get(spec.name, {})) != digest[0]:
                    result.add(
                        spec.name,
                        key,
                        "row content",
                        f"the row differs from what run {digest[1]} chained",
                    )
        except DatabaseUndefinedRelation:
            continue
    for (table_name, key), (_, run_id) in sorted(digests.items()):
        if (table_name, key) not in seen:
            result.add(table_name, key, "missing row", f"run {run_id} chained this row; it is gone")


def _check_record_hashes(row: dict[str, Any], table: str, key: str, result: Verification) -> None:
    for body, digest in (
        ("raw_response", "record_sha256"),
        ("snapshot_response", "snapshot_sha256"),
    ):
        stored = row.get(digest)
        text = row.get(body)
        if stored is None:
            continue  # a row of a release before the hashes (its digest covers it whole)
        if (None if text is None else sha256_text(str(text))) != stored:
            result.add(table, key, "record hash", f"{digest} is not the SHA-256 of {body}")


def _check_head(links: list[ChainLink], expected: str, result: Verification) -> None:
    positions = {link.chain_sha256: link.chain_seq for link in links}
    if expected not in positions:
        result.add(
            CHAIN_TABLE,
            expected,
            "unexpected head",
            "the chain does not pass through the expected head: the tables were rewritten "
            "since it was taken",
        )
        return
    later = len(links) - positions[expected]
    result.notes.append(
        "the chain ends at the expected head"
        if later == 0
        else f"the chain passes through the expected head; {later} run(s) linked since"
    )
