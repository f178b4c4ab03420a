"""The dlt-native `routera_archive` source: configuration from dlt's providers, and its tables."""

import dlt
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from routera_archive.config import RouteraSourceConfig, settings_from_values
from routera_archive.errors import GuardrailRefused
from routera_archive.models import ArchiveRequest
from routera_archive.names import SOURCE_NAME
from routera_archive.objects import ObjectType
from routera_archive.source import routera_archive
from routera_archive_sandbox import SandboxServer
from tests.pipeline.test_custom_fields import create_contacts
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


def sandbox_settings(server: SandboxServer, **values: object) -> RouteraSourceConfig:
    return settings_from_values(
        base_url=server.url,
        client_id=server.config.client_id,
        client_secret=server.config.client_secret,
        rps=0,
        **values,
    )


def test_the_source_refuses_more_than_max_archives_before_any_call(
    sandbox_server: SandboxServer,
) -> None:
    ids = active_ids(sandbox_server, 3)

    with pytest.raises(GuardrailRefused, match="more than max_archives 2"):
        routera_archive(ids, config=sandbox_settings(sandbox_server, max_archives=2))

    assert sandbox_server.state.stats()["totals"]["requests"] == 0


def test_the_source_refuses_too_large_a_share_of_the_account_and_force_passes(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    ids = active_ids(sandbox_server, 3)  # of 60 active: 5%
    config = sandbox_settings(sandbox_server, max_share=0.02)

    with pytest.raises(PipelineStepFailed) as failed:
        pipeline.run(routera_archive(ids, config=config))

    causes = [failed.value]
    while causes[-1].__cause__ is not None or causes[-1].__context__ is not None:
        causes.append(causes[-1].__cause__ or causes[-1].__context__)  # type: ignore[arg-type]
    assert any(isinstance(cause, GuardrailRefused) for cause in causes), causes
    assert sandbox_server.state.stats()["totals"]["by_method"].get("DELETE", 0) == 0

    pipeline.drop_pending_packages()
    pipeline.run(routera_archive(ids, config=config, force=True))
    assert sandbox_server.state.stats()["totals"]["by_method"]["DELETE"] == 3


def test_the_source_keeps_new_fields_out_under_a_held_back_contract(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    """As in a run: the first load makes the table with what it brings; a field that appears
    later stays in `raw_response` only."""
    pipeline.run(
        routera_archive(active_ids(sandbox_server, 2), config=sandbox_settings(sandbox_server))
    )
    (late,) = create_contacts(sandbox_server, {"appeared_later": 7})

    held_back = sandbox_settings(sandbox_server, schema_contract="discard")
    pipeline.run(routera_archive([late], config=held_back))

    columns = set(pipeline.schemas[SOURCE_NAME].get_table_columns("contact_archives"))
    assert "appeared_later" not in columns
    (raw,) = query(
        pipeline, f"SELECT raw_response FROM {{dataset}}.contact_archives WHERE id = '{late}'"
    )
    assert '"appeared_later":7' in str(raw[0])


def test_the_source_loads_each_type_s_records_into_that_type_s_table(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    """Issue 14: a company request's record goes to company_archives, with its own documented
    columns, never into contact_archives."""
    company = sandbox_server.state.object_ids("companies", include_archived=False)[0]
    contact = active_ids(sandbox_server, 1)[0]
    requests = [
        ArchiveRequest(request_id="r-co", object_type=ObjectType.COMPANIES, object_id=company),
        ArchiveRequest(request_id="r-c", object_id=contact),
    ]

    pipeline.run(routera_archive(requests, config=sandbox_settings(sandbox_server), run_id="n"))

    assert query(pipeline, "SELECT id FROM {dataset}.company_archives") == [(company,)]
    assert query(pipeline, "SELECT id FROM {dataset}.contact_archives") == [(contact,)]
    columns = pipeline.schemas[SOURCE_NAME].get_table_columns("company_archives")
    assert {"company_name", "industry", "archived"} <= set(columns)
    assert "first_name" not in columns
    logged = query(pipeline, "SELECT object_type, object_id FROM {dataset}.archive_log")
    assert sorted(logged) == [("companies", company), ("contacts", contact)]
