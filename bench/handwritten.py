"""The baseline the issue asks for: the loop a user would write without the connector.

A synchronous httpx client archives one contact at a time, collects the answers in a list, then
one `pipeline.run()` loads them into DuckDB. No concurrency, no journal, no 404 resolution, no
audit columns: the least work that still ends with the records in a table. It runs as its own
process, like the connector, so both pay the same interpreter and import start-up.

Usage: `python bench/handwritten.py BASE_URL IDS_FILE DUCKDB_FILE`; client credentials come from
`SOURCES__ROUTERA__CLIENT_ID` / `SOURCES__ROUTERA__CLIENT_SECRET`. Prints one JSON line with the
phase timings and counts.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote


def main(base_url: str, ids_file: Path, database: Path) -> dict[str, Any]:
    started = time.perf_counter()
    import dlt
    import httpx

    imported = time.perf_counter()
    ids = [line for line in ids_file.read_text(encoding="utf-8").splitlines() if line]
    token = httpx.post(
        f"{base_url}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": os.environ["SOURCES__ROUTERA__CLIENT_ID"],
            "client_secret": os.environ["SOURCES__ROUTERA__CLIENT_SECRET"],
        },
    ).json()["access_token"]
    records: list[dict[str, Any]] = []
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}) as client:
        for contact_id in ids:
            response = client.delete(f"/contacts/{quote(contact_id, safe='')}")
            response.raise_for_status()
            records.append(response.json())
    called = time.perf_counter()
    pipeline = dlt.pipeline(
        pipeline_name="handwritten",
        destination=dlt.destinations.duckdb(credentials=str(database)),
        dataset_name="handwritten",
    )
    pipeline.run(records, table_name="contact_archives")
    loaded = time.perf_counter()
    return {
        "contacts": len(ids),
        "records": len(records),
        "import_s": imported - started,
        "calls_s": called - imported,
        "load_s": loaded - called,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))))
