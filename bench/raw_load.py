"""The floor for extract/normalize/load: `pipeline.run()` of records already in memory.

The records are what the sandbox's DELETE answers (its seeded contacts, stamped `archived` and
`archived_by`), built in this process, so no HTTP is involved: whatever the connector spends
beyond this on the same number of records is its own overhead. With `--chunk K` the same records
are loaded in `pipeline.run()` calls of K records each, which shows what loading in chunks (as the
connector does, to lose at most one chunk on a crash) costs by itself.

Usage: `python bench/raw_load.py N DUCKDB_FILE [--chunk K] [--seed S]`. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def archived_records(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """`count` records shaped like the sandbox's DELETE answers for its first `count` contacts."""
    from routera_archive_sandbox.seed import make_contact

    stamp = "2026-06-01T12:00:00.000Z"
    records = []
    for index in range(count):
        contact = make_contact(seed, index, count)
        contact["archived"] = stamp
        contact["updated_at"] = stamp
        contact["archived_by"] = "sandbox-client"
        records.append(contact)
    return records


def load(records: list[dict[str, Any]], database: Path, chunk: int | None = None) -> float:
    """Seconds spent in `pipeline.run()` (one call, or one per chunk of `chunk` records)."""
    import dlt

    pipeline = dlt.pipeline(
        pipeline_name=f"raw_load_{database.stem}",
        destination=dlt.destinations.duckdb(credentials=str(database)),
        dataset_name="raw_load",
        pipelines_dir=str(database.parent / "raw_load_pipelines"),
    )
    size = chunk or len(records) or 1
    started = time.perf_counter()
    for start in range(0, len(records), size):
        pipeline.run(records[start : start + size], table_name="contact_archives")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("count", type=int)
    parser.add_argument("database", type=Path)
    parser.add_argument("--chunk", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    import dlt  # noqa: F401  (timed apart from the load, like the connector's start-up)

    imported = time.perf_counter()
    records = archived_records(args.count, args.seed)
    built = time.perf_counter()
    load_s = load(records, args.database, args.chunk)
    result = {
        "records": len(records),
        "chunk": args.chunk,
        "import_s": imported - started,
        "build_s": built - imported,
        "load_s": load_s,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
