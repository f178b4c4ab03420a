"""The settings spec: every rule checked once (on_resolved), every message naming the key as a
user sets it, the credentials one identity, and the client's settings made from it whole."""

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routera_archive.config import (
    DatasetConfig,
    RouteraSourceConfig,
    as_resolved,
    resolve_dataset_config,
    resolve_source_config,
    settings_from_values,
)
from routera_archive.errors import ConfigurationError, one_line
from routera_archive.http.config import AccessToken, ClientConfig, ClientCredentials
from routera_archive.objects import ObjectType

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "static-TOKEN-value-7f3a"
CLIENT_ID = "client-id-42"
SECRET = "client-SECRET-value-9c1d"


def settings(**values: Any) -> RouteraSourceConfig:
    return settings_from_values(**{"access_token": TOKEN, **values})


@pytest.mark.parametrize(
    "base_url",
    ["not a url", "ftp://x", "http://", "", "api.routera.io", "https://:443", "https://h:99999"],
)
def test_base_urls_that_are_not_http_urls_are_refused(base_url: str) -> None:
    with pytest.raises(ConfigurationError, match="not an absolute http") as caught:
        settings(base_url=base_url)
    assert "SOURCES__ROUTERA__BASE_URL / [sources.routera] base_url" in str(caught.value)


def test_credentials_query_or_fragment_in_the_base_url_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="user name or password") as caught:
        settings(base_url="https://u:pw-in-url@h")
    assert "pw-in-url" not in str(caught.value)
    with pytest.raises(ConfigurationError, match="query or fragment"):
        settings(base_url="https://h/?x=1")


@pytest.mark.parametrize(
    "base_url", ["https://api.routera.io", "http://127.0.0.1:8080", "https://h.example/api/v1/"]
)
def test_http_urls_are_accepted(base_url: str) -> None:
    settings(base_url=base_url)
    settings_from_values(base_url=base_url, client_id=CLIENT_ID, client_secret=SECRET)


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_no_credentials_names_the_settings(blank: str | None) -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings_from_values(access_token=blank, client_id=blank, client_secret=blank)
    message = str(caught.value)
    assert "SOURCES__ROUTERA__ACCESS_TOKEN" in message
    assert "SOURCES__ROUTERA__CLIENT_ID" in message
    assert "SOURCES__ROUTERA__CLIENT_SECRET" in message


def test_half_an_oauth_pair_is_refused_without_quoting_it() -> None:
    with pytest.raises(ConfigurationError, match="client_id is set but client_secret is not"):
        settings_from_values(client_id=CLIENT_ID)
    with pytest.raises(ConfigurationError) as caught:
        settings_from_values(client_secret=SECRET)
    assert "client_secret is set but client_id is not" in str(caught.value)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("token", [f"{TOKEN}\n", f"Bearer {TOKEN}", f"{TOKEN}\x00", "tök"])
def test_tokens_that_cannot_be_a_header_are_refused(token: str) -> None:
    with pytest.raises(ConfigurationError, match="access_token contains") as caught:
        settings_from_values(access_token=token)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    "values",
    [
        {"client_id": CLIENT_ID, "client_secret": SECRET},
        {"client_id": CLIENT_ID},
        {"client_secret": SECRET},
    ],
)
def test_a_token_beside_any_oauth_setting_is_refused(values: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="keep only one") as caught:
        settings(**values)
    assert TOKEN not in str(caught.value)
    assert SECRET not in str(caught.value)


def test_the_credentials_are_one_typed_identity() -> None:
    assert settings().credentials == AccessToken(TOKEN)
    oauth = settings_from_values(client_id=CLIENT_ID, client_secret=SECRET)
    assert oauth.credentials == ClientCredentials(CLIENT_ID, SECRET)


@pytest.mark.parametrize(
    ("changes", "name"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"rps": -1}, "rps"),
        ({"rps": float("nan")}, "rps"),
        ({"rps": float("inf")}, "rps"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"read_timeout": 0}, "read_timeout"),
        ({"write_timeout": -1}, "write_timeout"),
        ({"pool_timeout": float("inf")}, "pool_timeout"),
        ({"max_retry_wait": -1}, "max_retry_wait"),
        ({"backoff_initial": -0.5}, "backoff_initial"),
        ({"backoff_max": float("nan")}, "backoff_max"),
        ({"token_refresh_margin": -1}, "token_refresh_margin"),
        ({"max_archives": -1}, "max_archives"),
        ({"max_share": 1.5}, "max_share"),
        ({"max_share": -0.1}, "max_share"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"queue_table": " "}, "queue_table"),
        ({"schema_contract": "strict"}, "schema_contract"),
        ({"redact_after_days": 0}, "redact_after_days"),
        ({"personal_fields": []}, "personal_fields"),
        ({"personal_fields": ["email", " "]}, "personal_fields"),
    ],
)
def test_bad_values_are_refused_naming_the_key_as_a_user_sets_it(
    changes: dict[str, Any], name: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings(**changes)
    assert f"SOURCES__ROUTERA__{name.upper()} / [sources.routera] {name}" in str(caught.value)


def test_values_from_the_environment_are_checked_the_same_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCES__ROUTERA__ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("SOURCES__ROUTERA__RPS", "-1")
    with pytest.raises(ConfigurationError, match=r"rps must be .*SOURCES__ROUTERA__RPS"):
        resolve_source_config()
    monkeypatch.setenv("SOURCES__ROUTERA__RPS", "fast")
    with pytest.raises(ConfigurationError) as caught:
        resolve_source_config()
    assert str(caught.value) == (
        "rps must be of type float, got 'fast'; set SOURCES__ROUTERA__RPS / [sources.routera] rps"
    )


def test_a_secret_that_cannot_be_read_is_never_quoted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCES__ROUTERA__ACCESS_TOKEN", f"{TOKEN}\n")
    with pytest.raises(ConfigurationError) as caught:
        resolve_source_config()
    assert TOKEN not in str(caught.value)


def test_explicit_values_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCES__ROUTERA__ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("SOURCES__ROUTERA__CONCURRENCY", "3")
    monkeypatch.setenv("SOURCES__ROUTERA__MAX_ATTEMPTS", "2")
    config = resolve_source_config(concurrency=7, rps=None)
    assert (config.concurrency, config.max_attempts, config.rps) == (7, 2, 50.0)


def test_the_dataset_settings_need_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCES__ROUTERA__QUEUE_TABLE", "to_archive")
    assert resolve_dataset_config().queue_table == "to_archive"
    assert resolve_dataset_config(queue_table="other").queue_table == "other"
    with pytest.raises(ConfigurationError, match="queue_table"):
        resolve_dataset_config(queue_table="")


def test_every_setting_of_the_client_comes_from_the_spec() -> None:
    """Nothing the client reads has a default of its own: a field added to ClientConfig but
    not made from the spec fails here."""
    config = settings(
        base_url="https://h.example",
        concurrency=3,
        rps=7.5,
        max_attempts=2,
        max_retry_wait=9,
        backoff_initial=0.1,
        backoff_max=4,
        connect_timeout=1,
        read_timeout=2,
        write_timeout=3,
        pool_timeout=4,
        call_deadline=6,
        max_body_bytes=70000,
        token_refresh_margin=5,
        properties=["lead_score", "Lead Source"],
    )
    client = config.client_config()
    # A flat list names contact fields (per type: `properties_by_type`).
    contacts = (ObjectType.CONTACTS, ("lead_score", "Lead Source"))
    made = {"credentials": config.credentials, "properties": (contacts,)}
    for field in dataclasses.fields(ClientConfig):
        expected = made[field.name] if field.name in made else getattr(config, field.name)
        assert getattr(client, field.name) == expected, field.name
    assert ClientConfig.from_wire(client.to_wire()) == client


def test_the_spec_defaults_are_the_documented_ones() -> None:
    """Every setting has a default a run can start with (credentials aside, `properties`,
    whose absence means "no snapshot", `redact_after_days`, "no retention", and
    `personal_fields`, "the default list")."""
    fields = RouteraSourceConfig.get_resolvable_fields()
    assert set(DatasetConfig.get_resolvable_fields()) <= set(fields)
    defaults = RouteraSourceConfig()
    unset = ("properties", "redact_after_days", "personal_fields")
    for name in fields:
        if name not in ("access_token", "client_id", "client_secret", *unset):
            assert getattr(defaults, name) is not None, name
    assert [getattr(defaults, name) for name in unset] == [None, None, None]
    assert defaults.redacted_fields == ("email", "first_name", "last_name", "phone")


@given(
    token=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1),
    oauth=st.booleans(),
)
def test_a_client_config_survives_the_pipe_to_the_call_worker(token: str, oauth: bool) -> None:
    values = {"client_id": "cid", "client_secret": token} if oauth else {"access_token": token}
    config = settings_from_values(**values).client_config()
    assert ClientConfig.from_wire(config.to_wire()) == config


def test_no_repr_shows_a_secret() -> None:
    for config in (
        settings().client_config(),
        settings_from_values(client_id=CLIENT_ID, client_secret=SECRET).client_config(),
    ):
        assert TOKEN not in repr(config) and SECRET not in repr(config)


def documented_settings(readme: str) -> set[str]:
    """The names in the first column of the table under "### Settings"."""
    section = readme.split("### Settings", 1)[1]
    table = section[section.index("| setting |") :].split("\n\n", 1)[0]
    names: set[str] = set()
    for line in table.splitlines()[2:]:
        names.update(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    return names


def test_every_setting_is_in_the_readme_and_the_example_config() -> None:
    fields = set(RouteraSourceConfig.get_resolvable_fields())
    assert documented_settings((ROOT / "README.md").read_text(encoding="utf-8")) == fields
    example = (ROOT / ".dlt" / "config.toml").read_text(encoding="utf-8")
    listed = set(re.findall(r"^#? ?([a-z_]+) = ", example, re.MULTILINE)) - {"log_level"}
    assert listed == fields - {"access_token", "client_id", "client_secret"}


def test_the_package_s_public_names_are_the_ones_it_lists() -> None:
    import routera_archive

    for name in routera_archive.__all__:
        assert getattr(routera_archive, name) is not None, name
    assert sorted(routera_archive.__all__) == sorted(["__version__", *routera_archive._PUBLIC])


def test_only_our_own_keys_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """dlt's own lookup also reads `SOURCES__RPS` and a bare `RPS` or `BASE_URL`, which a
    container often sets for something else; only `[sources.routera]` (and dlt's longest form,
    `[sources.routera.routera]`) may count."""
    monkeypatch.setenv("SOURCES__ROUTERA__ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("BASE_URL", "http://decoy.invalid")
    monkeypatch.setenv("RPS", "999")
    monkeypatch.setenv("SOURCES__CONCURRENCY", "99")
    monkeypatch.setenv("SOURCES__ROUTERA__ROUTERA__MAX_ATTEMPTS", "2")
    config = resolve_source_config()
    assert (config.base_url, config.rps, config.concurrency) == (
        "https://api.routera.io",
        50.0,
        16,
    )
    assert config.max_attempts == 2


def test_a_secret_in_config_toml_is_refused_naming_where_it_belongs(tmp_path: Path) -> None:
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text(
        f'[sources.routera]\naccess_token = "{TOKEN}"\n', encoding="utf-8"
    )
    code = "from routera_archive.config import resolve_source_config; resolve_source_config()"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SOURCES__")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "access_token is a secret and cannot be read from config.toml" in last
    assert TOKEN not in done.stderr


@pytest.mark.parametrize(
    ("name", "value"), [("concurrency", 0), ("rps", -3), ("rps", "abc"), ("call_worker", 1)]
)
def test_a_value_changed_in_code_after_resolution_is_checked_again(name: str, value: Any) -> None:
    config = settings()
    setattr(config, name, value)
    with pytest.raises(ConfigurationError, match=name):
        as_resolved(config)


def test_an_unresolved_spec_is_resolved_the_one_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its values count as defaults, as dlt's source treats one: the environment still fills
    what it does not set, and wins where both do."""
    monkeypatch.setenv("SOURCES__ROUTERA__ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("SOURCES__ROUTERA__MAX_ATTEMPTS", "2")
    config = as_resolved(RouteraSourceConfig(rps=10, max_attempts=4))
    assert (config.rps, config.max_attempts, config.credentials) == (10, 2, AccessToken(TOKEN))


@pytest.mark.parametrize(
    "base_url",
    ["http://user:s3cretPW@host:99999", "http://user:s3cretPW@", "https://h/?api_key=s3cretPW"],
)
def test_a_refused_base_url_is_quoted_without_what_may_be_a_secret(base_url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings(base_url=base_url)
    assert "s3cretPW" not in str(caught.value)


def test_one_line_keeps_what_a_line_ending_in_a_colon_announces() -> None:
    assert one_line("Invalid configuration in secrets.toml:\n  Key 'x' already exists\n\nmore") == (
        "Invalid configuration in secrets.toml: Key 'x' already exists"
    )
    assert one_line("first\nsecond") == "first"
    assert one_line("x" * 500, limit=10) == "xxxxxxxxx…"
