"""How fast a bare httpx async loop can archive on this machine, without any connector code.

Diagnostic, not a target: `workers` coroutines share `pools` httpx.AsyncClient connection pools
and DELETE one id after another, doing nothing with the answer but `json()`. If this loop cannot
reach the ideal either, the gap is in the HTTP stack (or the machine), not in the connector; the
difference between one pool and several shows the cost of httpcore's pool bookkeeping, which
scans every connection of a pool each time a request starts or ends.

Usage: `python bench/http_ceiling.py BASE_URL IDS_FILE --workers 32 --pools 1`; client
credentials come from `SOURCES__ROUTERA__CLIENT_ID` / `..._CLIENT_SECRET`. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx


async def archive_all(base_url: str, ids: list[str], workers: int, pools: int) -> dict[str, Any]:
    token = httpx.post(
        f"{base_url}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": os.environ["SOURCES__ROUTERA__CLIENT_ID"],
            "client_secret": os.environ["SOURCES__ROUTERA__CLIENT_SECRET"],
        },
    ).json()["access_token"]
    per_pool = max(1, -(-workers // pools))
    clients = [
        httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            limits=httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool),
        )
        for _ in range(pools)
    ]
    pending = iter(ids)
    statuses: dict[int, int] = {}

    async def worker(number: int) -> None:
        client = clients[number % pools]
        for contact_id in pending:
            response = await client.delete(f"/contacts/{quote(contact_id, safe='')}")
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            response.json()

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(n) for n in range(workers)))
    seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    for client in clients:
        await client.aclose()
    return {
        "requests": len(ids),
        "workers": workers,
        "pools": pools,
        "seconds": seconds,
        "rps": len(ids) / seconds if seconds else 0.0,
        "cpu_ms_per_request": 1000 * cpu_s / max(1, len(ids)),
        "statuses": statuses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("base_url")
    parser.add_argument("ids_file", type=Path)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--pools", type=int, default=1)
    args = parser.parse_args()
    ids = [line for line in args.ids_file.read_text(encoding="utf-8").splitlines() if line]
    print(json.dumps(asyncio.run(archive_all(args.base_url, ids, args.workers, args.pools))))


if __name__ == "__main__":
    main()
