"""Sharded workers on one PostgreSQL dataset: the real CLI, N processes at once."""

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from routera_archive.dataset.queue import Shard
from routera_archive_sandbox import FaultConfig, SandboxConfig, SandboxServer
from tests.conftest import POSTGRES_SKIP_REASON, POSTGRES_URL, postgres_available
from tests.e2e.cli_support import cli_env, deletes_sent, run_cli, start_cli

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postgres,
    pytest.mark.skipif(not postgres_available(), reason=POSTGRES_SKIP_REASON),
]

WORKERS = 3


@pytest.fixture
def dataset() -> Iterator[str]:
    name = f"ra_shards_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg2.connect(POSTGRES_URL.replace(":trust", "")) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE %s",
                (f"{name}%",),
            )
            for (schema,) in cursor.fetchall():
                cursor.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    config = SandboxConfig(port=0, contacts=900, seed=12, faults=FaultConfig(latency_ms=5.0))
    with SandboxServer(config) as running:
        yield running


def env_for(server: SandboxServer, tmp_path: Path) -> dict[str, str]:
    """The test PostgreSQL as destination; small loads so that workers overlap."""
    settings = {
        "SOURCES__ROUTERA__CONCURRENCY": "4",
        "SOURCES__ROUTERA__CHUNK_SIZE": "60",
        "DESTINATION__POSTGRES__CREDENTIALS": POSTGRES_URL,
    }
    return cli_env(server, tmp_path, settings)


def cli(server: SandboxServer, tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return start_cli(tmp_path, env_for(server, tmp_path), *args)


def finish(process: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, out + err


def enqueue(server: SandboxServer, tmp_path: Path, dataset: str) -> tuple[int, str]:
    """Queue `ids.txt` into `dataset` on PostgreSQL; the exit code and output."""
    args = ("enqueue", "ids.txt", "--destination", "postgres", "--dataset", dataset)
    return finish(cli(server, tmp_path, *args))


def sql(query: str) -> list[tuple[object, ...]]:
    with (
        psycopg2.connect(POSTGRES_URL.replace(":trust", "")) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute(query)
        return cursor.fetchall()


def test_the_shard_hash_is_stable_and_splits_every_id_to_exactly_one_worker() -> None:
    ids = [f"id-{n}" for n in range(2000)] + ["", "名前", "a/b"]
    owners = [[i for i in range(4) if Shard(i, 4).owns(cid)] for cid in ids]
    assert all(len(owner) == 1 for owner in owners)
    assert Shard(1, 4).owns("id-7") == (
        int(__import__("hashlib").sha1(b"id-7").hexdigest()[:15], 16) % 4 == 1
    )
    counts = [sum(1 for owner in owners if owner == [i]) for i in range(4)]
    assert min(counts) > 400  # roughly even


def test_workers_split_one_queue_each_request_handled_once(
    server: SandboxServer, tmp_path: Path, dataset: str
) -> None:
    ids = server.state.contact_ids(include_archived=False)[:360]
    (tmp_path / "ids.txt").write_text("\n".join([*ids, *ids[:10]]), encoding="utf-8")
    code, output = enqueue(server, tmp_path, dataset)
    assert code == 0, output

    workers = [
        cli(
            server,
            tmp_path,
            "run",
            "--destination",
            "postgres",
            "--dataset",
            dataset,
            "--shard",
            f"{index}/{WORKERS}",
            "--force",
        )
        for index in range(WORKERS)
    ]
    results = [finish(worker) for worker in workers]

    assert [code for code, _ in results] == [0] * WORKERS, "\n".join(o for _, o in results)
    stats = server.state.stats()
    assert stats["totals"]["by_method"]["DELETE"] == len(ids)
    assert set(stats["deletes_succeeded"].values()) == {1}
    assert sorted(stats["deletes_succeeded"]) == sorted(ids)
    per_request = sql(
        f'SELECT request_id, COUNT(*), COUNT(DISTINCT run_id) FROM "{dataset}".archive_log '
        "GROUP BY request_id"
    )
    assert len(per_request) == len(ids) + 10
    assert {(count, runs) for _, count, runs in per_request} == {(1, 1)}
    runs = sql(f'SELECT COUNT(DISTINCT run_id) FROM "{dataset}".archive_log')
    assert runs == [(WORKERS,)]
    # Each run's row says which worker it was.
    shards = sql(f"SELECT shard FROM \"{dataset}\".archive_runs WHERE mode = 'run' ORDER BY 1")
    assert shards == [(f"{index}/{WORKERS}",) for index in range(WORKERS)]
    audit = sql(f'SELECT COUNT(*), COUNT(DISTINCT id) FROM "{dataset}".contact_archives')
    assert audit == [(len(ids), len(ids))]


def test_a_shard_already_running_and_a_full_run_beside_workers_are_refused(
    server: SandboxServer, tmp_path: Path, dataset: str
) -> None:
    server.config.faults.latency_ms = 120.0  # the first worker must outlive two CLI starts
    ids = server.state.contact_ids(include_archived=False)[:360]
    (tmp_path / "ids.txt").write_text("\n".join(ids), encoding="utf-8")
    assert enqueue(server, tmp_path, dataset)[0] == 0
    target = ("--destination", "postgres", "--dataset", dataset, "--force")
    first = cli(server, tmp_path, "run", *target, "--shard", "0/2")
    try:
        deadline = time.monotonic() + 60
        while deletes_sent(server) < 10:
            assert time.monotonic() < deadline and first.poll() is None, "the worker never started"
            time.sleep(0.02)
        # The same shard from another machine (another pipeline folder): refused by PostgreSQL.
        twin_env = {**env_for(server, tmp_path), "DLT_DATA_DIR": str(tmp_path / "other_machine")}
        twin = run_cli(tmp_path, twin_env, "run", *target, "--shard", "0/2", timeout=120)
        full = run_cli(tmp_path, twin_env, "run", *target, timeout=120)
    finally:
        code, output = finish(first)

    assert code == 0, output
    assert twin.code == 1 and "another run holds dataset" in twin.stderr + twin.stdout
    assert "routera-archive" in twin.stderr + twin.stdout  # it names the holder's session
    assert full.code == 1 and "another run holds dataset" in full.stderr + full.stdout
    assert set(server.state.stats()["deletes_succeeded"].values()) == {1}
