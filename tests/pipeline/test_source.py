"""The dlt-native `routera_archive` source: configuration from dlt's providers, and its tables."""

import dlt
import pytest

from routera_archive.names import SOURCE_NAME
from routera_archive.source import routera_archive
from routera_archive_sandbox import SandboxServer
from tests.pipeline.test_run import active_ids, query


def test_the_source_resolves_sources_routera_settings_and_archives(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCES__ROUTERA__BASE_URL", sandbox_server.url)
    monkeypatch.setenv("SOURCES__ROUTERA__CLIENT_ID", sandbox_server.config.client_id)
    monkeypatch.setenv("SOURCES__ROUTERA__CLIENT_SECRET", sandbox_server.config.client_secret)
    monkeypatch.setenv("SOURCES__ROUTERA__RPS", "0")
    ids = active_ids(sandbox_server, 4)

    pipeline.run(routera_archive([*ids, ids[0], "no-such-id"], run_id="native"))

    statuses = query(
        pipeline, "SELECT status, COUNT(*) FROM {dataset}.archive_log GROUP BY 1 ORDER BY 1"
    )
    # Without a queue there is no de-duplication by request: the second DELETE answers 404
    # and the GET finds the contact archived; the audit still has one row per contact.
    assert statuses == [("already_archived", 1), ("archived", 4), ("not_found", 1)]
    rows = query(pipeline, "SELECT id, run_id FROM {dataset}.contact_archives ORDER BY id")
    assert rows == [(cid, "native") for cid in sorted(ids)]
    columns = pipeline.schemas[SOURCE_NAME].get_table_columns("contact_archives")
    assert columns["archived"]["data_type"] == "timestamp"


def test_the_source_refuses_to_start_without_credentials(
    sandbox_server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCES__ROUTERA__BASE_URL", sandbox_server.url)

    with pytest.raises(Exception, match="SOURCES__ROUTERA__ACCESS_TOKEN"):
        routera_archive(["x"])
