"""The hash chain that makes the audit trail evidence: every row a run leaves is digested, and
each run's digests are linked to the previous run's.

At its end, under the dataset's chain lock (`dataset.lock.chain_lock`), a run:

1. reads the chain's head (the link of highest `chain_seq` in `archive_chain`);
2. digests every row the chain does not cover yet: the rows of its own run, and of any run
   with no link (a run killed before its end, whose rows this run loaded from its journal or
   packages, or rows of a release before the chain; such runs are *adopted*, and named in the
   link) by reading them back as the destination holds them (`canonical`): what is hashed is
   what `verify` will read, not what was sent (an insert-only merge may have dropped a row).
   Its own rows in the audit tables and the log it digested as each chunk loaded, beside the
   calls (`EarlyDigests`): the link reads back only what those digests miss;
3. loads its run row (`archive_runs`, the link's figures in it) with dlt, where that table
   lacks a column the row fills (the dataset's first link, a release that adds a column);
4. commits those digests (`row_digests`, keyed by table, row key and the run that chains them)
   and the link itself (`archive_chain`) with SQL INSERTs in one transaction, and the run row
   in it too when step 3 did not load it (`commit_with_run_row`).

Only step 4 makes the link, and it is atomic, where a dlt package is loaded table by table and
at least once. A run killed before it leaves no link (and no run row, or one no link covers
after step 3: the next run adopts the run's rows, that row included); digests left by an
earlier release, which loaded them with dlt before the link, are ignored by `verify` when no
link covers them. So a crash at any point leaves the chain as it was, and the next run extends
it. The digests are INSERTed rather than loaded with dlt because a run has one per row it
wrote: through dlt, a 10,000-contact run's 20,000 digests took most of the link's time; the
run row, because its own dlt load was most of a small run's end (issue 18).

The chain proves that nothing it covers changed since: an edited, deleted or inserted row, or
an edited run, breaks it. Someone who can write the tables can also recompute every hash;
only a head kept outside the dataset (`verify --expect-head`) catches such a rewrite.
"""

import base64
import contextlib
import json
import logging
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import dlt
from dlt.common.schema.typing import TColumnSchema
from dlt.common.storages.load_package import create_load_id
from dlt.destinations.exceptions import DatabaseUndefinedRelation
from dlt.extract.resource import DltResource

from routera_archive.dataset.canonical import CANONICAL_FORM, row_sha256, sha256_text
from routera_archive.dataset.loading import load_fresh
from routera_archive.dataset.lock import chain_lock
from routera_archive.dataset.tables import (
    RUN_LINK_COLUMNS,
    RUNS_COLUMNS,
    run_history,
)
from routera_archive.errors import one_line
from routera_archive.names import (
    CHAIN_TABLE,
    DIGESTS_TABLE,
    FIELDS_TABLE,
    LOG_TABLE,
    REDACTIONS_TABLE,
    RUNS_TABLE,
    SOURCE_NAME,
)
from routera_archive.objects import ObjectType

logger = logging.getLogger(__name__)

GENESIS = "0" * 64
"""The `previous_chain_sha256` of a chain's first link."""


@dataclass(frozen=True)
class ChainedTable:
    """A table whose rows the chain covers: its key, and the column naming the run that wrote
    a row (which decides the run that digests it)."""

    name: str
    key: tuple[str, ...]
    run_column: str


CHAINED_TABLES: tuple[ChainedTable, ...] = (
    *(ChainedTable(kind.table, ("id",), "run_id") for kind in ObjectType),
    ChainedTable(LOG_TABLE, ("outcome_id",), "run_id"),
    ChainedTable(FIELDS_TABLE, ("object_type", "field_key"), "first_seen_run_id"),
    # A linked run's own row is covered by its link (`run_sha256`); the rows of runs with no
    # link (before the chain, or killed while finishing) are digested like any other.
    ChainedTable(RUNS_TABLE, ("run_id",), "run_id"),
    ChainedTable(REDACTIONS_TABLE, ("redaction_id",), "run_id"),
)

DIGESTS_COLUMNS: dict[str, TColumnSchema] = {
    "table_name": {"data_type": "text", "nullable": False},
    # The row's key values, as a JSON list (`row_key`).
    "row_key": {"data_type": "text", "nullable": False},
    "chained_by": {"data_type": "text", "nullable": False},
    "row_sha256": {"data_type": "text", "nullable": False},
    "digested_at": {"data_type": "timestamp"},
}
# A digest's key (one per row and chaining run): the link's INSERTs keep it unique.
DIGESTS_KEY = ("table_name", "row_key", "chained_by")

CHAIN_COLUMNS: dict[str, TColumnSchema] = {
    "chain_seq": {"data_type": "bigint", "nullable": False},
    "run_id": {"data_type": "text", "nullable": False},
    "previous_chain_sha256": {"data_type": "text", "nullable": False},
    "rows_sha256": {"data_type": "text", "nullable": False},
    "run_sha256": {"data_type": "text", "nullable": False},
    "digested_rows": {"data_type": "bigint", "nullable": False},
    # A JSON list of the run ids whose rows this link adopted, sorted.
    "adopted_run_ids": {"data_type": "text", "nullable": False},
    "canonical_form": {"data_type": "text", "nullable": False},
    "chain_sha256": {"data_type": "text", "nullable": False},
    "linked_at": {"data_type": "text", "nullable": False},
}


def row_key(row: Mapping[str, Any], key: Sequence[str]) -> str:
    """A row's key as text: its key columns' values as a JSON list (`["c1"]`)."""
    return json.dumps([row.get(name) for name in key], ensure_ascii=True, default=str)


@dataclass(frozen=True)
class Digest:
    table: str
    key: str
    row_sha256: str


def rows_sha256(digests: Iterable[Digest]) -> str:
    """The hash of a run's digests: one line per row (table, key, hash), sorted."""
    lines = sorted(f"{d.table}\t{d.key}\t{d.row_sha256}" for d in digests)
    return sha256_text("\n".join(lines))


@dataclass(frozen=True)
class ChainLink:
    chain_seq: int
    run_id: str
    previous_chain_sha256: str
    rows_sha256: str
    run_sha256: str
    digested_rows: int
    adopted_run_ids: tuple[str, ...]
    canonical_form: str = CANONICAL_FORM
    chain_sha256: str = ""
    linked_at: str = ""

    def expected_sha256(self) -> str:
        """What `chain_sha256` must be: every other figure of the link, hashed."""
        parts = [
            self.canonical_form,
            str(self.chain_seq),
            self.run_id,
            self.previous_chain_sha256,
            self.rows_sha256,
            self.run_sha256,
            str(self.digested_rows),
            json.dumps(sorted(self.adopted_run_ids)),
        ]
        return sha256_text("\n".join(parts))

    def sealed(self) -> "ChainLink":
        return ChainLink(**{**self.__dict__, "chain_sha256": self.expected_sha256()})

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "ChainLink":
        adopted = row.get("adopted_run_ids") or "[]"
        return cls(
            chain_seq=int(row["chain_seq"]),
            run_id=str(row["run_id"]),
            previous_chain_sha256=str(row["previous_chain_sha256"]),
            rows_sha256=str(row["rows_sha256"]),
            run_sha256=str(row["run_sha256"]),
            digested_rows=int(row["digested_rows"]),
            adopted_run_ids=tuple(json.loads(adopted)),
            canonical_form=str(row["canonical_form"]),
            chain_sha256=str(row["chain_sha256"]),
            linked_at=str(row.get("linked_at") or ""),
        )

    def on_run_row(self, run_row: Mapping[str, Any]) -> dict[str, Any]:
        """The run row as `archive_runs` holds it: the run's figures and this link's."""
        return {**run_row, **self.run_row_figures()}

    def run_row_figures(self) -> dict[str, Any]:
        """The link's figures as the run row holds them (`RUN_LINK_COLUMNS`)."""
        return {
            "chain_seq": self.chain_seq,
            "previous_chain_sha256": self.previous_chain_sha256,
            "rows_sha256": self.rows_sha256,
            "chain_sha256": self.chain_sha256,
            "digested_rows": self.digested_rows,
            "adopted_run_ids": list(self.adopted_run_ids),
        }


def run_sha256(run_row: Mapping[str, Any], types: Mapping[str, str]) -> str:
    """A run row's hash, leaving out the columns that hold its link."""
    own = {name: value for name, value in run_row.items() if name not in RUN_LINK_COLUMNS}
    return row_sha256(own, types)


# ------------------------------------------------------------------------------- reading
ZONE_SETTING = {"duckdb": "SET TimeZone = 'UTC'", "postgres": "SET TIME ZONE 'UTC'"}


def read_in_utc(client: Any, destination: str) -> None:
    """Make an open sql_client's session read timestamps in UTC: in another zone a driver
    cannot even make year 1 or 9999 (psycopg2 raises), and DuckDB gives text."""
    setting = ZONE_SETTING.get(destination)
    if setting is not None:
        client.execute_sql(setting)


def select_rows(client: Any, query: str, *args: Any) -> Iterator[dict[str, Any]]:
    with client.execute_query(query, *args) as cursor:
        names = [column[0] for column in cursor.description]
        while batch := cursor.fetchmany(1000):
            for values in batch:
                yield dict(zip(names, values, strict=True))


def stored_types(pipeline: dlt.Pipeline) -> dict[str, dict[str, str]]:
    """Each table's column types as the newest schema dlt stored in the destination has them
    (the pipeline's own where the destination holds none): the types rows were loaded with,
    whatever pipeline folder asks (dlt's job client would need the schema locally first)."""
    schema: Any = None
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name("_dlt_version")
        try:
            rows = client.execute_sql(
                f"SELECT schema FROM {table} WHERE schema_name = %s "
                "ORDER BY inserted_at DESC LIMIT 1",
                SOURCE_NAME,
            )
        except DatabaseUndefinedRelation:
            rows = []
    if rows:
        text = str(rows[0][0])
        # dlt stores it compressed on some destinations (its job_client_impl).
        with contextlib.suppress(ValueError):
            text = zlib.decompress(base64.b64decode(text, validate=True)).decode("utf-8")
        schema = json.loads(text)
    if schema is None:
        local = pipeline.schemas.get(SOURCE_NAME) if SOURCE_NAME in pipeline.schemas else None
        schema = {"tables": local.tables} if local is not None else {"tables": {}}
    return {
        name: {
            column: str(spec.get("data_type", "text"))
            for column, spec in table.get("columns", {}).items()
        }
        for name, table in schema["tables"].items()
    }


def read_links(client: Any) -> list[ChainLink] | None:
    """Every link, in `chain_seq` order; None when the dataset has no chain yet."""
    table = client.make_qualified_table_name(CHAIN_TABLE)
    columns = ", ".join(CHAIN_COLUMNS)
    try:
        rows = list(select_rows(client, f"SELECT {columns} FROM {table} ORDER BY chain_seq"))
    except DatabaseUndefinedRelation:
        return None
    return [ChainLink.from_row(row) for row in rows]


# ----------------------------------------------------------------------------- digesting
@dataclass
class Unchained:
    """The rows a run's link is to cover, digested."""

    digests: list[Digest] = field(default_factory=list)
    # The run ids of those rows other than the run's own (a NULL run id as "").
    adopted_run_ids: set[str] = field(default_factory=set)


# The tables whose rows no later load of the same run changes (insert-only on their keys), so
# that a run may digest them as each chunk loads (`digest_loads`). The custom fields' table is
# not one: a later chunk's first sighting of a field may update its row.
EARLY_TABLES: tuple[ChainedTable, ...] = tuple(
    spec
    for spec in CHAINED_TABLES
    if spec.name == LOG_TABLE or spec.name in {kind.table for kind in ObjectType}
)


@dataclass
class EarlyDigests:
    """A run's own rows digested as each of its chunks loaded, beside the calls, so that its
    link reads back only what loaded since (issue 18: reading back and hashing 20,000 rows was
    most of a 10,000-contact run's link). The rows of a load are found by its load id, and a
    load's digests count only once every table of it is read: a load retried under another id
    leaves rows of the first id, which the link reads back."""

    load_ids: set[str] = field(default_factory=set)
    digests: list[Digest] = field(default_factory=list)


def digest_loads(
    pipeline: dlt.Pipeline, run_id: str, load_ids: Sequence[str], into: EarlyDigests
) -> None:
    """Digest the rows of `run_id` that the loads `load_ids` wrote to the `EARLY_TABLES`."""
    if not load_ids:
        return
    types = stored_types(pipeline)
    found: list[Digest] = []
    marks = ", ".join(["%s"] * len(load_ids))
    with utc_session(pipeline) as client:
        for spec in EARLY_TABLES:
            if spec.name not in types:
                continue
            table = client.make_qualified_table_name(spec.name)
            query = (
                f"SELECT * FROM {table} WHERE {spec.run_column} = %s AND _dlt_load_id IN ({marks})"
            )
            try:
                rows = list(select_rows(client, query, run_id, *load_ids))
            except DatabaseUndefinedRelation:
                continue
            found.extend(
                Digest(spec.name, row_key(row, spec.key), row_sha256(row, types[spec.name]))
                for row in rows
            )
    into.digests.extend(found)
    into.load_ids.update(load_ids)


def unfinished_redactions(client: Any, links: Sequence[ChainLink]) -> set[str]:
    """The ids of redactions recorded (their `redactions` row is in) but not linked: killed
    before their link. Their rows are theirs to chain (`dataset.redact.finish_redactions`),
    never another run's to adopt: adopted, the rows they changed would never be covered."""
    table = client.make_qualified_table_name(REDACTIONS_TABLE)
    try:
        recorded = {str(row[0]) for row in client.execute_sql(f"SELECT redaction_id FROM {table}")}
    except DatabaseUndefinedRelation:
        return set()
    return recorded - {link.run_id for link in links}


def digest_unchained(
    client: Any,
    types: Mapping[str, Mapping[str, str]],
    run_id: str,
    *,
    links: Sequence[ChainLink],
    linked_runs_replayed: Iterable[str] = (),
    early: EarlyDigests | None = None,
) -> Unchained:
    """Digest every row no link covers: those of runs no link names, as its run or as one it
    adopted (this run included), and those of `linked_runs_replayed` (linked runs whose
    journal this run loaded: a run that lost its lock leaves outcomes for the next run) that
    no digest covers yet. The rows of an unfinished redaction other than this run are left
    for it (`unfinished_redactions`). The run's own rows in `early` are taken from there, not
    read back again."""
    early = early if early is not None and early.load_ids else None
    found = Unchained()
    covered = (
        {link.run_id for link in links}
        | {adopted for link in links for adopted in link.adopted_run_ids}
        | (unfinished_redactions(client, links) - {run_id})
    )
    replayed = sorted(set(linked_runs_replayed) & covered)
    for spec in CHAINED_TABLES:
        if spec.name not in types:
            continue
        table = client.make_qualified_table_name(spec.name)
        column = spec.run_column
        try:
            owners = {
                row[0] for row in client.execute_sql(f"SELECT DISTINCT {column} FROM {table}")
            }
        except DatabaseUndefinedRelation:
            continue
        uncovered = sorted(str(o) for o in owners if o is not None and str(o) not in covered)
        conditions = [f"{column} IN ({', '.join(['%s'] * len(uncovered))})"] if uncovered else []
        if None in owners and "" not in covered:
            conditions.append(f"{column} IS NULL")
        rows: list[dict[str, Any]] = []
        args: list[Any] = list(uncovered)
        early_here = early if spec in EARLY_TABLES else None
        if conditions:
            where = " OR ".join(conditions)
            if early_here is not None:
                marks = ", ".join(["%s"] * len(early_here.load_ids))
                where = (
                    f"({where}) AND NOT (COALESCE({column}, '') = %s AND _dlt_load_id IN ({marks}))"
                )
                args += [run_id, *sorted(early_here.load_ids)]
            rows = list(select_rows(client, f"SELECT * FROM {table} WHERE {where}", *args))
        if replayed and spec.name != RUNS_TABLE:  # a linked run's row is its link's
            rows += _undigested_rows_of(client, spec, replayed)
        seen: set[str] = set()
        for row in rows:
            key = row_key(row, spec.key)
            if key in seen or (spec.name == RUNS_TABLE and row.get("run_id") == run_id):
                continue
            seen.add(key)
            found.digests.append(Digest(spec.name, key, row_sha256(row, types[spec.name])))
            owner = row.get(column)
            if owner != run_id:
                found.adopted_run_ids.add("" if owner is None else str(owner))
        if early_here is not None and run_id in owners:
            for digest in early_here.digests:
                if digest.table == spec.name and digest.key not in seen:
                    seen.add(digest.key)
                    found.digests.append(digest)
    return found


def _undigested_rows_of(
    client: Any, spec: ChainedTable, run_ids: list[str]
) -> list[dict[str, Any]]:
    table = client.make_qualified_table_name(spec.name)
    digests = client.make_qualified_table_name(DIGESTS_TABLE)
    chain = client.make_qualified_table_name(CHAIN_TABLE)
    marks = ", ".join(["%s"] * len(run_ids))
    try:
        covered = {
            row["row_key"]
            for row in select_rows(
                client,
                f"SELECT row_key FROM {digests} WHERE table_name = %s "
                f"AND chained_by IN (SELECT run_id FROM {chain})",
                spec.name,
            )
        }
    except DatabaseUndefinedRelation:
        covered = set()
    rows = select_rows(
        client, f"SELECT * FROM {table} WHERE {spec.run_column} IN ({marks})", *run_ids
    )
    return [row for row in rows if row_key(row, spec.key) not in covered]


def digest_again(
    client: Any, types: Mapping[str, Mapping[str, str]], keys: Mapping[str, Iterable[str]]
) -> list[Digest]:
    """Digest the rows named by `keys` (table -> key values, single-column keys) as they are
    now, whoever chained them before: a redaction changed them, and its link covers them."""
    found: list[Digest] = []
    for spec in CHAINED_TABLES:
        wanted = sorted(set(keys.get(spec.name, ())))
        if not wanted or spec.name not in types:
            continue
        if len(spec.key) != 1:
            raise ValueError(f"{spec.name} has a composite key: its rows cannot be named by one")
        table = client.make_qualified_table_name(spec.name)
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            marks = ", ".join(["%s"] * len(part))
            query = f"SELECT * FROM {table} WHERE {spec.key[0]} IN ({marks})"
            for row in select_rows(client, query, *part):
                found.append(
                    Digest(spec.name, row_key(row, spec.key), row_sha256(row, types[spec.name]))
                )
    return found


def digest_rows(digests: Sequence[Digest], chained_by: str) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "table_name": d.table,
            "row_key": d.key,
            "chained_by": chained_by,
            "row_sha256": d.row_sha256,
            "digested_at": now,
        }
        for d in digests
    ]


# Digest rows per INSERT (`_insert_digests`).
DIGEST_ROWS_PER_INSERT = 10_000


def empty_table(name: str, columns: dict[str, TColumnSchema]) -> DltResource:
    """A table with no row, for dlt to make with its columns: the chain's tables, whose rows
    are INSERTed (`insert_link`)."""

    def nothing() -> Iterator[Any]:
        yield dlt.mark.materialize_table_schema()

    return dlt.resource(
        nothing, name=name, write_disposition="append", columns=columns, max_table_nesting=0
    )


def insert_link(
    client: Any, link: ChainLink, digests: Sequence[Mapping[str, Any]], load_id: str
) -> None:
    """Commit a link and the digests it covers: INSERTs in one transaction, atomic (see the
    module's docstring)."""
    with client.begin_transaction():
        _insert_digests(client, digests, load_id)
        _insert_link_row(client, link, load_id)


def _insert_digests(client: Any, digests: Sequence[Mapping[str, Any]], load_id: str) -> None:
    """One statement per DIGEST_ROWS_PER_INSERT rows, each column's values bound as one array
    and unnested side by side (DuckDB and PostgreSQL alike): binding 7 values per row took
    DuckDB a second for 10,000 digests."""
    table = client.make_qualified_table_name(DIGESTS_TABLE)
    names = ", ".join([*DIGESTS_COLUMNS, "_dlt_load_id", "_dlt_id"])
    per_row = ("table_name", "row_key", "chained_by", "row_sha256")
    unnested = ", ".join(f"unnest(CAST(%s AS TEXT[])) AS {name}" for name in (*per_row, "dlt_id"))
    query = (
        f"INSERT INTO {table} ({names}) SELECT u.table_name, u.row_key, u.chained_by, "
        f"u.row_sha256, %s, %s, u.dlt_id FROM (SELECT {unnested}) AS u"
    )
    for start in range(0, len(digests), DIGEST_ROWS_PER_INSERT):
        part = digests[start : start + DIGEST_ROWS_PER_INSERT]
        columns = [[str(digest[name]) for digest in part] for name in per_row]
        ids = [uuid4().hex[:14] for _ in part]
        # The placeholders in order: digested_at and the load id come first in the SELECT.
        client.execute_sql(query, part[0]["digested_at"], load_id, *columns, ids)


def _insert_link_row(client: Any, link: ChainLink, load_id: str) -> None:
    values = {
        "chain_seq": link.chain_seq,
        "run_id": link.run_id,
        "previous_chain_sha256": link.previous_chain_sha256,
        "rows_sha256": link.rows_sha256,
        "run_sha256": link.run_sha256,
        "digested_rows": link.digested_rows,
        "adopted_run_ids": json.dumps(sorted(link.adopted_run_ids)),
        "canonical_form": link.canonical_form,
        "chain_sha256": link.chain_sha256,
        "linked_at": link.linked_at,
        "_dlt_load_id": load_id,
        "_dlt_id": uuid4().hex[:14],
    }
    _insert_row(client, CHAIN_TABLE, values)


@contextmanager
def utc_session(pipeline: dlt.Pipeline) -> Iterator[Any]:
    with pipeline.sql_client() as client:
        read_in_utc(client, pipeline.destination.destination_name)
        yield client


# ------------------------------------------------------------------------------- linking
@dlt.source(name=SOURCE_NAME, section=SOURCE_NAME, max_table_nesting=0)
def run_commit(run_row: dict[str, Any], make_tables: bool) -> list[DltResource]:
    """A run's row (see the docstring), and with `make_tables` the chain's two tables, empty,
    for dlt to make (the destination lacks one: the dataset's first link)."""
    return [
        *run_history([run_row]).resources.values(),
        *(
            [empty_table(DIGESTS_TABLE, DIGESTS_COLUMNS), empty_table(CHAIN_TABLE, CHAIN_COLUMNS)]
            if make_tables
            else []
        ),
    ]


def table_exists(client: Any, name: str) -> bool:
    try:
        client.execute_sql(f"SELECT 1 FROM {client.make_qualified_table_name(name)} LIMIT 0")
    except DatabaseUndefinedRelation:
        return False
    return True


class ChainLinkError(Exception):
    """The run row came back otherwise than it was hashed: no link is made (the next run
    adopts the run's rows)."""


RUN_TYPES: dict[str, str] = {name: str(spec["data_type"]) for name, spec in RUNS_COLUMNS.items()}


def link_run(
    pipeline: dlt.Pipeline,
    run_row: dict[str, Any],
    *,
    linked_runs_replayed: Iterable[str] = (),
    redigest: Mapping[str, Iterable[str]] | None = None,
    early: EarlyDigests | None = None,
) -> ChainLink:
    """Load a run's row and link the run into the chain (see the module's docstring).
    `redigest` names rows chained before that this link covers again as they are now (the
    rows a redaction changed: `dataset.redact`); `early`, the run's rows digested as they
    loaded (`digest_loads`)."""
    run_id = str(run_row["run_id"])
    with chain_lock(pipeline, run_id):
        with utc_session(pipeline) as client:
            chain = read_links(client)
            make_tables = chain is None or not table_exists(client, DIGESTS_TABLE)
            links = chain or []
            head = links[-1] if links else None
            types = stored_types(pipeline)
            unchained = digest_unchained(
                client,
                types,
                run_id,
                links=links,
                linked_runs_replayed=linked_runs_replayed,
                early=early,
            )
            if redigest:
                places = {(d.table, d.key) for d in unchained.digests}
                for digest in digest_again(client, types, redigest):
                    if (digest.table, digest.key) not in places:
                        unchained.digests.append(digest)
        link = ChainLink(
            chain_seq=1 if head is None else head.chain_seq + 1,
            run_id=run_id,
            previous_chain_sha256=GENESIS if head is None else head.chain_sha256,
            rows_sha256=rows_sha256(unchained.digests),
            run_sha256=run_sha256(run_row, RUN_TYPES),
            digested_rows=len(unchained.digests),
            adopted_run_ids=tuple(sorted(unchained.adopted_run_ids)),
            linked_at=datetime.now(UTC).isoformat(timespec="seconds"),
        ).sealed()
        row = link.on_run_row(run_row)
        digests = digest_rows(unchained.digests, run_id)
        if not make_tables and commit_with_run_row(
            pipeline, link, row, digests, types.get(RUNS_TABLE, {})
        ):
            return link
        info = load_fresh(pipeline, run_commit(row, make_tables))
        with utc_session(pipeline) as client:
            if not run_row_reads_back_as_hashed(client, link):
                raise ChainLinkError(
                    f"run {run_id}'s row reads back otherwise than it was hashed; not linked"
                )
            load_id = info.loads_ids[-1] if info.loads_ids else run_id
            insert_link(client, link, digests, load_id)
    return link


def run_row_reads_back_as_hashed(client: Any, link: ChainLink) -> bool:
    """The run's one row in `archive_runs` hashes to the link's `run_sha256`."""
    runs = client.make_qualified_table_name(RUNS_TABLE)
    stored = list(select_rows(client, f"SELECT * FROM {runs} WHERE run_id = %s", link.run_id))
    return len(stored) == 1 and run_sha256(stored[0], RUN_TYPES) == link.run_sha256


class _ThroughDlt(Exception):
    """Why a run row is loaded with dlt after all (`commit_with_run_row`): nothing was kept."""


def commit_with_run_row(
    pipeline: dlt.Pipeline,
    link: ChainLink,
    row: Mapping[str, Any],
    digests: Sequence[Mapping[str, Any]],
    stored: Mapping[str, str],
) -> bool:
    """Commit the run row with the digests and the link, INSERTed in their one transaction,
    instead of a dlt load of its own first (0.2-0.4 s: most of a small run's end, and every
    shard's; issue 18). Only where `archive_runs` has every column the row fills (`stored`,
    its column types; a release that adds one loads through dlt, which adds the column), and
    only if the row reads back, inside the transaction, as it was hashed. The row's load id is
    one of dlt's form, recorded in `_dlt_loads` as a finished load, so the dataset reads as if
    dlt had loaded it. False, with nothing written, where it cannot: the caller loads the row
    with dlt and links after it (step 3 of the module's docstring)."""
    values = {name: value for name, value in row.items() if value is not None}
    if not stored or not values.keys() <= stored.keys():
        return False
    load_id = create_load_id()
    committing = False
    try:
        with utc_session(pipeline) as client, client.begin_transaction():
            runs = client.make_qualified_table_name(RUNS_TABLE)
            query = f"SELECT * FROM {runs} WHERE run_id = %s"
            if list(select_rows(client, query, link.run_id)):
                raise _ThroughDlt("the run already has a row")
            _insert_row(
                client,
                RUNS_TABLE,
                {
                    **{name: _sql_value(value, stored[name]) for name, value in values.items()},
                    "_dlt_load_id": load_id,
                    "_dlt_id": uuid4().hex[:14],
                },
            )
            if not run_row_reads_back_as_hashed(client, link):
                raise _ThroughDlt("the run row reads back otherwise than it was hashed")
            _insert_digests(client, digests, load_id)
            _insert_link_row(client, link, load_id)
            schema = pipeline.schemas.get(SOURCE_NAME) if SOURCE_NAME in pipeline.schemas else None
            _insert_row(
                client,
                "_dlt_loads",
                {
                    "load_id": load_id,
                    "schema_name": SOURCE_NAME,
                    "status": 0,
                    "inserted_at": datetime.now(UTC),
                    "schema_version_hash": None if schema is None else schema.version_hash,
                },
            )
            committing = True
    except Exception as exc:
        if committing:  # the COMMIT failed, or seemed to: loading the row again could link twice
            raise
        # Rolled back: nothing of it stays.
        logger.info("the run row is loaded with dlt: %s", one_line(str(exc)))
        logger.debug("committing the run row by SQL", exc_info=exc)
        return False
    return True


def _sql_value(value: Any, data_type: str) -> Any:
    """A run row's value as an INSERT binds it: a JSON column's as JSON text."""
    if data_type == "json":
        return json.dumps(value, ensure_ascii=True, default=str)
    return value


def _insert_row(client: Any, name: str, values: Mapping[str, Any]) -> None:
    table = client.make_qualified_table_name(name)
    columns = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    client.execute_sql(f"INSERT INTO {table} ({columns}) VALUES ({marks})", *values.values())
