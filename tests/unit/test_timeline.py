"""The marks a run leaves for the benchmark's breakdown (routera_archive.timeline)."""

import json
from pathlib import Path

import pytest

from routera_archive import timeline


@pytest.fixture(autouse=True)
def _fresh_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timeline, "_file", None)
    monkeypatch.setattr(timeline, "_process", "run")


def test_a_mark_is_one_json_line_in_the_named_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "marks.jsonl"
    monkeypatch.setenv(timeline.ENV, str(path))
    timeline.mark("locked")
    timeline.name_process("worker")
    timeline.mark("imported")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["process"], line["name"]) for line in lines] == [
        ("run", "locked"),
        ("worker", "imported"),
    ]
    assert lines[0]["t"] <= lines[1]["t"]


def test_without_the_variable_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(timeline.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    timeline.mark("locked")
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_file_never_stops_a_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(timeline.ENV, str(tmp_path / "no such folder" / "marks.jsonl"))
    timeline.mark("locked")  # no error
