"""`routera-archive demo`: the whole path on a laptop, against the sandbox, into DuckDB.

It uses its own DuckDB file and pipeline (`routera_archive_demo`) and starts from scratch each
time, so it never mixes sandbox contacts into a real audit trail.
"""

import asyncio
import shutil
from pathlib import Path
from typing import Any

import dlt
from rich.console import Console
from rich.table import Table
from rich.text import Text

from routera_archive.config import RouteraSourceConfig, settings_from_values
from routera_archive.dataset.enqueue import enqueue
from routera_archive.errors import ExitCode
from routera_archive.http.client import RouteraClient
from routera_archive.names import ARCHIVES_TABLE, LOG_TABLE, SOURCE_NAME
from routera_archive.objects import ObjectType
from routera_archive.run.runner import ArchiveRun, RunOptions
from routera_archive_pipelines.console import ProgressObserver, print_report
from routera_archive_pipelines.factory import make_pipeline
from routera_archive_sandbox import SandboxConfig, SandboxServer

DEMO_PIPELINE = "routera_archive_demo"
DEMO_DUCKDB_FILE = "routera_archive_demo.duckdb"


async def _active_contact_ids(config: RouteraSourceConfig, count: int) -> list[str]:
    ids: list[str] = []
    async with RouteraClient(config.client_config()) as client:
        while len(ids) < count:
            answer = await client.list_objects(
                ObjectType.CONTACTS, archived=False, limit=100, offset=len(ids)
            )
            page = [str(contact["id"]) for contact in answer.json()["data"]]
            if not page:
                break
            ids.extend(page)
    return ids[:count]


def _fresh_pipeline(workdir: Path) -> dlt.Pipeline:
    duckdb_file = workdir / DEMO_DUCKDB_FILE
    duckdb_file.unlink(missing_ok=True)
    Path(f"{duckdb_file}.wal").unlink(missing_ok=True)
    pipeline = make_pipeline(pipeline_name=DEMO_PIPELINE, duckdb_file=duckdb_file)
    shutil.rmtree(pipeline.working_dir, ignore_errors=True)
    return make_pipeline(pipeline_name=DEMO_PIPELINE, duckdb_file=duckdb_file)


def _demo_requests(ids: list[str]) -> list[dict[str, Any]]:
    """The chosen contacts, plus one request of each kind a real queue produces."""
    rows: list[dict[str, Any]] = [{"contact_id": cid} for cid in ids]
    rows.append({"contact_id": ids[0]})  # asked twice: archived once, then `duplicate`
    rows.append({"contact_id": "00000000-0000-4000-8000-000000000000"})  # unknown: `not_found`
    rows.append({"contact_id": "../oauth2/token"})  # stays one path segment: `not_found`
    return rows


def _audit_report(console: Console, pipeline: dlt.Pipeline) -> None:
    with pipeline.sql_client() as client:
        archives = client.make_qualified_table_name(ARCHIVES_TABLE)
        log = client.make_qualified_table_name(LOG_TABLE)
        rows = (
            client.execute_sql(
                f"SELECT id, email, archived, archived_by, recovered FROM {archives} "
                "ORDER BY archived, id LIMIT 8"
            )
            or []
        )
        (total,) = (client.execute_sql(f"SELECT COUNT(*) FROM {archives}") or [(0,)])[0]
        statuses = (
            client.execute_sql(
                f"SELECT status, COUNT(*) FROM {log} GROUP BY status ORDER BY status"
            )
            or []
        )
    columns = sorted(pipeline.schemas[SOURCE_NAME].get_table_columns(ARCHIVES_TABLE))
    table = Table(title=f"contact_archives: {total} rows (first 8)", show_edge=False)
    for name in ("id", "email", "archived", "archived_by", "recovered"):
        table.add_column(name)
    for contact_id, email, archived, archived_by, recovered in rows:
        table.add_row(
            Text(str(contact_id)),
            Text(str(email)),
            f"{archived:%Y-%m-%d %H:%M:%S}",
            Text(str(archived_by)),
            str(recovered),
        )
    console.print(table)
    # What the destination holds is printed as text, never read as markup.
    console.print(
        "archive_log by status: " + ", ".join(f"{status} {count}" for status, count in statuses),
        markup=False,
    )
    console.print(f"contact_archives columns ({len(columns)}): {', '.join(columns)}", markup=False)


def run_demo(console: Console, *, contacts: int, archive: int, workdir: Path) -> int:
    workdir.mkdir(parents=True, exist_ok=True)
    sandbox_config = SandboxConfig(port=0, contacts=contacts, seed=7)
    with SandboxServer(sandbox_config) as server:
        console.print(f"sandbox API on {server.url} with {contacts} contacts")
        # The sandbox's own settings, not the environment's: a real token or URL set there
        # must never reach the demo (nor the demo's sandbox contacts a real trail).
        config = settings_from_values(
            base_url=server.url,
            client_id=sandbox_config.client_id,
            client_secret=sandbox_config.client_secret,
        )
        ids = asyncio.run(_active_contact_ids(config, archive))
        pipeline = _fresh_pipeline(workdir)
        queued = enqueue(
            pipeline, _demo_requests(ids), requested_by="demo", reason="routera-archive demo"
        )
        console.print(f"enqueued {queued} requests into {pipeline.dataset_name}.archive_queue")
        observer = ProgressObserver(console)
        try:
            report = ArchiveRun(pipeline, config, RunOptions(), observer=observer).execute()
        finally:
            observer.close()
        print_report(console, report)
        deletes_before = server.state.stats()["totals"]["by_method"].get("DELETE", 0)
        again = ArchiveRun(pipeline, config, RunOptions()).execute()
        deletes_after = server.state.stats()["totals"]["by_method"].get("DELETE", 0)
        console.print(
            f"a second run straight after: {again.handled} requests handled, "
            f"{deletes_after - deletes_before} DELETE calls (nothing left pending)"
        )
        _audit_report(console, pipeline)
    duckdb_path = (workdir / DEMO_DUCKDB_FILE).resolve()
    console.print(f"the audit trail is in {duckdb_path} (dataset {pipeline.dataset_name})")
    return report.exit_code if report.exit_code != ExitCode.OK else again.exit_code
