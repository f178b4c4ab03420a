"""The scheduler examples take their destination, dataset and shard count from the
environment, not from constants (issue 16 item 2)."""

import pytest

from routera_archive.errors import ConfigurationError
from routera_archive_pipelines.schedules.common import ScheduleSettings


def test_defaults_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DESTINATION", "DATASET", "SHARDS"):
        monkeypatch.delenv(f"ROUTERA_ARCHIVE_{name}", raising=False)
    assert ScheduleSettings.from_environment() == ScheduleSettings("postgres", "routera_archive", 4)
    monkeypatch.setenv("ROUTERA_ARCHIVE_DESTINATION", "duckdb")
    monkeypatch.setenv("ROUTERA_ARCHIVE_DATASET", "crm_audit")
    monkeypatch.setenv("ROUTERA_ARCHIVE_SHARDS", "2")
    assert ScheduleSettings.from_environment() == ScheduleSettings("duckdb", "crm_audit", 2)


@pytest.mark.parametrize("shards", ["0", "-1", "two", "1.5", "257"])
def test_a_shard_count_that_cannot_work_is_refused(
    monkeypatch: pytest.MonkeyPatch, shards: str
) -> None:
    monkeypatch.setenv("ROUTERA_ARCHIVE_SHARDS", shards)
    with pytest.raises(ConfigurationError, match="ROUTERA_ARCHIVE_SHARDS"):
        ScheduleSettings.from_environment()
