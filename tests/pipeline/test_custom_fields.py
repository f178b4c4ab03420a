"""Custom fields in a real run: new columns, type changes, colliding and odd keys, contracts."""

import json
from typing import Any

import dlt
import httpx
import pytest

from routera_archive.dataset.enqueue import enqueue
from routera_archive.errors import ExitCode
from routera_archive.run.runner import ArchiveRun, RunOptions, RunReport
from routera_archive_sandbox import SandboxServer
from tests.conftest import TWINNED, source_config
from tests.pipeline.test_run import query


def create_contacts(server: SandboxServer, *custom: dict[str, Any]) -> list[str]:
    token = httpx.post(
        f"{server.url}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": server.config.client_id,
            "client_secret": server.config.client_secret,
        },
    ).json()["access_token"]
    ids = []
    for number, fields in enumerate(custom):
        answer = httpx.post(
            f"{server.url}/contacts",
            json={"fields": {"email": f"c{number}@example.com", **fields}},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    return ids


def archive(
    pipeline: dlt.Pipeline, server: SandboxServer, ids: list[str], **config: Any
) -> RunReport:
    enqueue(pipeline, [{"contact_id": cid} for cid in ids])
    return ArchiveRun(
        pipeline, source_config(server, max_share=0, **config), RunOptions()
    ).execute()


def field_columns(pipeline: dlt.Pipeline) -> dict[str, str]:
    return dict(query(pipeline, "SELECT field_key, column_name FROM {dataset}.custom_fields"))


def stored_value(pipeline: dlt.Pipeline, contact_id: str, column: str) -> Any:
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name("contact_archives")
        name = client.escape_column_name(column)
        rows = client.execute_sql(f"SELECT {name} FROM {table} WHERE id = %s", contact_id)
    return rows[0][0]


def test_a_field_that_changes_type_loses_no_value_and_is_reported(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    before = create_contacts(sandbox_server, {"score": 5, "opt_in": True})
    assert archive(pipeline, sandbox_server, before).exit_code == ExitCode.OK
    after = create_contacts(sandbox_server, {"score": "high", "opt_in": "2024-05-01"})

    report = archive(pipeline, sandbox_server, after)

    assert report.exit_code == ExitCode.OK, report.error
    assert stored_value(pipeline, before[0], "score") == 5
    assert stored_value(pipeline, after[0], "score__v_text") == "high"
    assert stored_value(pipeline, before[0], "opt_in") is True
    assert stored_value(pipeline, after[0], "opt_in__v_text") == "2024-05-01"
    assert sorted(report.type_changes) == [
        "contact_archives.opt_in__v_text",
        "contact_archives.score__v_text",
    ]


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_keys_that_collide_after_normalisation_are_kept_apart_across_runs(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    first = create_contacts(sandbox_server, {"Lead Score": 1, "lead_score": 2, "leadScore": 3})
    report = archive(pipeline, sandbox_server, first)

    assert report.exit_code == ExitCode.OK, report.error
    columns = field_columns(pipeline)
    assert columns["Lead Score"] == "lead_score"
    assert len({columns["Lead Score"], columns["lead_score"], columns["leadScore"]}) == 3
    assert {key: stored_value(pipeline, first[0], columns[key]) for key in columns} == {
        "Lead Score": 1,
        "lead_score": 2,
        "leadScore": 3,
    }
    assert set(report.renamed_fields) == {"lead_score", "leadScore"}

    second = create_contacts(sandbox_server, {"leadScore": 9})
    again = archive(pipeline, sandbox_server, second)

    assert again.renamed_fields == {}  # known already: nothing new to report
    assert stored_value(pipeline, second[0], columns["leadScore"]) == 9
    assert field_columns(pipeline) == columns


ODD_KEYS = {
    "Lead Source Detail": "spaces",
    "e-mail (work)!": "punctuation",
    "名前": "unicode 1",
    "電話": "unicode 2",
    "Ünïcode Näme": "accents",
    "1st touch": "leading digit",
    "k" * 200: "a 200-character name",
    "k" * 199 + "z": "another 200-character name",
    "run_id": "clashes with our run_id",
    "raw_response": "clashes with raw_response",
    "_dlt_id": "clashes with dlt's id",
    "Archived": "spelled like a documented field",
}


def test_odd_keys_all_land_in_columns_of_their_own(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    ids = create_contacts(sandbox_server, ODD_KEYS)

    report = archive(pipeline, sandbox_server, ids)

    assert report.exit_code == ExitCode.OK, report.error
    columns = field_columns(pipeline)
    assert len({columns[key] for key in ODD_KEYS}) == len(ODD_KEYS)
    for key, value in ODD_KEYS.items():
        assert stored_value(pipeline, ids[0], columns[key]) == value, key
    (run_id, raw) = query(
        pipeline,
        f"SELECT run_id, raw_response FROM {{dataset}}.contact_archives WHERE id = '{ids[0]}'",
    )[0]
    assert run_id == report.run_id
    assert json.loads(raw)["run_id"] == "clashes with our run_id"


def test_a_run_whose_records_carry_a_thousand_custom_fields_loads(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    ids = create_contacts(
        sandbox_server,
        *(
            {f"field_{i:04d}": i for i in range(start, start + 250)}
            for start in range(0, 1000, 250)
        ),
    )

    report = archive(pipeline, sandbox_server, ids)

    assert report.exit_code == ExitCode.OK, report.error
    assert len(report.new_columns.get("contact_archives", [])) == 0  # the table is new this run
    assert query(pipeline, "SELECT COUNT(*) FROM {dataset}.custom_fields") == [(1000,)]
    assert stored_value(pipeline, ids[3], "field_0999") == 999


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
@pytest.mark.parametrize(
    ("contract", "exit_code"), [("freeze", ExitCode.FAILED), ("discard", ExitCode.OK)]
)
def test_a_held_back_contract_keeps_new_fields_in_raw_response_and_says_so(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer, contract: str, exit_code: int
) -> None:
    known = create_contacts(sandbox_server, {"tier": "gold"})
    assert archive(pipeline, sandbox_server, known).exit_code == ExitCode.OK
    new = create_contacts(sandbox_server, {"tier": "silver", "brand_new_field": "kept"})

    report = archive(pipeline, sandbox_server, new, schema_contract=contract)

    assert report.exit_code == exit_code
    assert report.held_back_fields == ["brand_new_field"]
    assert report.counts == {"archived": 1}
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name("contact_archives")
        with client.execute_query(f"SELECT * FROM {table} WHERE 1 = 0") as cursor:
            names = {col[0] for col in cursor.description}
    assert "brand_new_field" not in names
    raw = query(
        pipeline,
        f"SELECT raw_response, tier FROM {{dataset}}.contact_archives WHERE id = '{new[0]}'",
    )
    assert json.loads(raw[0][0])["brand_new_field"] == "kept"
    assert raw[0][1] == "silver"
