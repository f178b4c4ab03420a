"""dlt's warning about the one expected key change of an upgraded dataset is not shown."""

import logging

import pytest

import routera_archive.dataset.loading  # noqa: F401  (installs the filter on dlt's logger)

DLT_WORDS = (
    "Column(s) ['\"object_type\"'] with hint primary_key are being added to existing table {}. "
    "Several hint types may not be added to existing tables."
)


def test_dlt_s_warning_for_custom_fields_key_is_dropped_and_others_are_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dlt_logger = logging.getLogger("dlt")
    with caplog.at_level(logging.WARNING, logger="dlt"):
        dlt_logger.warning(DLT_WORDS.format("custom_fields"))
        dlt_logger.warning(DLT_WORDS.format("contact_archives"))
        dlt_logger.warning(DLT_WORDS.format("custom_fields_of_mine"))
    assert [record.getMessage() for record in caplog.records] == [
        DLT_WORDS.format("contact_archives"),
        DLT_WORDS.format("custom_fields_of_mine"),
    ]
