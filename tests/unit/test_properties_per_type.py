"""`properties` per object type (issue 14): the shapes a user writes (a flat list is still the
contacts', a table keyed by type names each type's), refused shapes named as a user sets them,
a snapshot for every type with names, each type's first call checking its own names, and the
share check held per type."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from routera_archive.config import (
    RouteraSourceConfig,
    resolve_source_config,
    settings_from_values,
    with_contact_properties,
)
from routera_archive.errors import ConfigurationError
from routera_archive.models import ArchiveRequest, Status
from routera_archive.objects import ObjectType
from routera_archive.run.guardrails import Account, probe_accounts, share_verdict
from routera_archive.run.result import RunReport
from tests.unit.test_archiver import Harness, contact, json_response

TOKEN = "static-TOKEN-value-7f3a"
C, CO, D = ObjectType.CONTACTS, ObjectType.COMPANIES, ObjectType.DEALS


def settings(**values: Any) -> RouteraSourceConfig:
    return settings_from_values(**{"access_token": TOKEN, **values})


# --- the shapes --------------------------------------------------------------------------------


def test_a_flat_list_still_names_the_contacts_fields() -> None:
    config = settings(properties=["lead_score", "Lead Source"])
    assert config.properties_by_type == {C: ("lead_score", "Lead Source")}
    client = config.client_config()
    assert client.properties_of(C) == ("lead_score", "Lead Source")
    assert client.properties_of(CO) == ()


def test_a_table_names_each_type_s_fields() -> None:
    config = settings(properties={"companies": ["tier"], "contacts": ["lead_score"], "deals": []})
    # In the types' order; a type with an empty list has none (no snapshot).
    assert config.properties_by_type == {C: ("lead_score",), CO: ("tier",)}
    client = config.client_config()
    assert (client.properties_of(CO), client.properties_of(D)) == (("tier",), ())
    assert type(client).from_wire(client.to_wire()) == client
    hash(client)  # still a value: the pairs keep it hashable


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ('{"companies": ["tier", "HQ Country"]}', {CO: ("tier", "HQ Country")}),
        ('["lead_score"]', {C: ("lead_score",)}),
    ],
)
def test_the_environment_takes_a_json_object_or_a_json_list(
    monkeypatch: pytest.MonkeyPatch, env: str, expected: dict[ObjectType, tuple[str, ...]]
) -> None:
    monkeypatch.setenv("SOURCES__ROUTERA__ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("SOURCES__ROUTERA__PROPERTIES", env)
    assert resolve_source_config().properties_by_type == expected


def test_the_toml_table_and_the_toml_list_are_read(tmp_path: Path) -> None:
    """As a user writes them in .dlt/config.toml (dlt reads the files at start: a process)."""
    code = (
        "from routera_archive.config import resolve_source_config as r; "
        "print({k.value: v for k, v in r().properties_by_type.items()})"
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SOURCES__")}
    environment["SOURCES__ROUTERA__ACCESS_TOKEN"] = TOKEN
    said = []
    for toml in (
        '[sources.routera.properties]\ncontacts = ["lead_score"]\ncompanies = ["tier"]\n',
        '[sources.routera]\nproperties = ["lead_score"]\n',
    ):
        (tmp_path / ".dlt").mkdir(exist_ok=True)
        (tmp_path / ".dlt" / "config.toml").write_text(toml, encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        said.append(done.stdout.strip())
    assert said == [
        "{'contacts': ('lead_score',), 'companies': ('tier',)}",
        "{'contacts': ('lead_score',)}",
    ]


@pytest.mark.parametrize("key", ["company", "Companies", "routers", " deals"])
def test_a_key_that_names_no_type_is_a_configuration_error_naming_it(key: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        settings(properties={"contacts": ["lead_score"], key: ["tier"]})
    assert f"properties has a key {key!r} that names no object type" in str(refused.value)
    assert "contacts, companies, deals, tickets" in str(refused.value)
    assert refused.value.exit_code == 2


@pytest.mark.parametrize(
    ("names", "problem"),
    [
        (["tier", "tier"], "properties.companies names 'tier' twice"),
        (["a,b"], "properties.companies holds 'a,b': a name cannot hold a comma"),
        ([" tier"], "properties.companies holds ' tier': a name without spaces"),
        ("tier", "properties must be a list of contact field names"),
    ],
)
def test_a_type_s_names_are_checked_as_the_contacts_are(names: Any, problem: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        settings(properties={"companies": names})
    assert problem in str(refused.value)
    assert "[sources.routera.properties] companies" in str(refused.value)


@pytest.mark.parametrize("given", ["lead_score", 3, {"companies": "tier"}, '{"x": 1}'])
def test_a_shape_that_is_neither_is_refused_saying_which_shapes_there_are(given: Any) -> None:
    with pytest.raises(ConfigurationError, match="or a table of lists by object type"):
        settings(properties=given)


def test_the_cli_s_contact_names_keep_the_other_types_names() -> None:
    configured = settings(properties={"contacts": ["old"], "companies": ["tier"]})
    assert with_contact_properties(configured, ["lead_score"]) == {
        "contacts": ["lead_score"],
        "companies": ["tier"],
    }
    assert with_contact_properties(settings(), ["lead_score"]) == ["lead_score"]


# --- snapshots of every type with names --------------------------------------------------------


def company(object_id: str = "x1", **fields: Any) -> dict[str, Any]:
    body = contact(object_id, company_name="Acme")
    del body["first_name"]
    return {**body, **fields}


def test_a_company_with_names_set_is_read_with_them_before_its_delete() -> None:
    h = Harness(properties={"companies": ["tier"], "contacts": ["lead_score"]})
    active = company(archived=False, tier="gold")
    del active["archived_by"]
    get = h.router.get("/companies/x1").mock(return_value=json_response(200, json.dumps(active)))
    delete = h.router.delete("/companies/x1").mock(
        return_value=json_response(200, json.dumps(company()))
    )

    outcome = h.archive(ArchiveRequest(request_id="r1", object_type=CO, object_id="x1"))

    assert outcome.status is Status.ARCHIVED, outcome.error
    assert outcome.record_source == "snapshot+delete"
    assert outcome.record is not None and outcome.record["tier"] == "gold"
    assert outcome.snapshot_response == json.dumps(active)
    # The company's own names, never the contacts'.
    assert get.calls.last.request.url.params["properties"] == "tier"
    assert get.call_count == 1 and delete.call_count == 1


# --- each type's first call, and the share check per type --------------------------------------


def listing(count: int) -> dict[str, Any]:
    return {"data": [], "pagination": {"limit": 1, "offset": 0, "count": count}}


def test_each_type_to_call_is_listed_once_with_its_own_names() -> None:
    h = Harness(properties={"contacts": ["lead_score"], "companies": ["tier"]})
    contacts = h.router.get("/contacts").respond(200, json=listing(40))
    companies = h.router.get("/companies").respond(200, json=listing(8))
    deals = h.router.get("/deals").respond(200, json=listing(5))

    accounts = h.run(
        lambda c: probe_accounts(c.list_objects, {C: 3, CO: 2, D: 0}, dict(h.config.properties))
    )

    assert accounts == {C: Account(40), CO: Account(8)}
    assert contacts.calls.last.request.url.params["properties"] == "lead_score"
    assert companies.calls.last.request.url.params["properties"] == "tier"
    assert contacts.call_count == companies.call_count == 1
    assert not deals.called  # nothing of the type to call: not asked


def test_a_company_name_routera_refuses_stops_the_probes_naming_the_type() -> None:
    h = Harness(properties={"contacts": ["lead_score"], "companies": ["nope"]})
    h.router.get("/contacts").respond(200, json=listing(40))
    h.router.get("/companies").respond(
        400, json={"message": "Unknown properties: nope", "error": True}
    )

    with pytest.raises(ConfigurationError) as refused:
        h.run(lambda c: probe_accounts(c.list_objects, {C: 1, CO: 1}, dict(h.config.properties)))

    said = str(refused.value)
    assert "Routera refused the properties setting (nope) for companies" in said
    assert "GET /companies answered 400: Unknown properties: nope" in said
    assert "[sources.routera.properties] companies" in said
    assert refused.value.exit_code == 2


def test_the_share_check_refuses_a_type_over_its_share_listing_every_type() -> None:
    config = settings(max_share=0.5)
    accounts = {C: Account(40), CO: Account(4)}

    verdict = share_verdict(config, accounts, {C: 3, CO: 3}, force=False)

    assert verdict == (
        "refused: this run would archive 3 of 4 active companies, more than max_share 50% "
        "(by type: contacts 3 to call of 40 active, companies 3 to call of 4 active)"
    )
    assert share_verdict(config, accounts, {C: 3, CO: 3}, force=True) is None
    # The same counts all held to the contacts' figure would have passed (6 of 40).
    assert share_verdict(config, accounts, {C: 3, CO: 2}, force=False) is None


def test_one_type_s_unreadable_figure_refuses_naming_it() -> None:
    accounts = {C: Account(40), CO: Account(None, "GET /companies answered 403: no")}
    verdict = share_verdict(settings(), accounts, {C: 1, CO: 1}, force=False)
    assert verdict == (
        "refused: the number of active companies cannot be read (GET /companies answered "
        "403: no), so the max_share check cannot pass"
    )


def test_a_contacts_only_refusal_reads_as_it_did() -> None:
    verdict = share_verdict(settings(), {C: Account(40)}, {C: 30}, force=False)
    assert (
        verdict
        == "refused: this run would archive 30 of 40 active contacts, more than max_share 50%"
    )


# --- notes per type ----------------------------------------------------------------------------


def test_notes_name_each_type_s_own_setting() -> None:
    report = RunReport("run", "run", datetime.now(UTC), "https://api.test", "duckdb", "ds")
    report.note_record(dict.fromkeys(CO.default_properties, "x"), CO)
    report.note_record({**dict.fromkeys(C.default_properties, "x"), "lead_score": 3}, C)
    report.note_record({**dict.fromkeys(D.default_properties, "x"), "amount": 3}, D)

    report.note_properties({C: ("lead_score",), D: ("amount", "next_step")})

    assert report.notes == [
        "the company answers held only Routera's default properties (1 records, no custom "
        "field): set `properties.companies` to the custom fields to keep "
        "([sources.routera.properties] companies), and each company is read with them before "
        "its DELETE",
        "no deal record of this run held 'next_step' of `properties.deals`: check each is a "
        "deal field's internal name (in Routera's field settings)",
    ]
