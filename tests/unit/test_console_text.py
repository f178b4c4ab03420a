"""What the CLI prints of untrusted text (a reason, an API's words): never markup, never a
known secret, and never a control character a terminal would act on (found by review: an
ESC in `redact --reason` reached the terminal)."""

from io import StringIO

from rich.console import Console

from routera_archive.dataset.redact import Redaction, RedactionRequest, RowChange
from routera_archive_pipelines.console import _plain, print_redactions


def test_control_characters_are_shown_escaped_and_tabs_and_newlines_kept() -> None:
    text = _plain("a\x1b[31mred\rb\tc\n", ("\x9b2J[bold]x", "red")).plain
    assert text == "a\\x1b[31mred\\x0db\tc\n\\x9b2J[bold]x"


def test_a_hostile_reason_is_printed_as_text() -> None:
    out = StringIO()
    item = Redaction(
        "r1",
        True,
        RedactionRequest(contact_ids=("c1",), reason="\x1b]0;owned\x07[red]GDPR"),
        changes=[RowChange("contact_archives", "id", "c1", {"email": None})],
    )
    print_redactions(Console(file=out, force_terminal=False, width=200), [item])
    printed = out.getvalue()
    assert "\x1b" not in printed and "\x07" not in printed
    assert "\\x1b]0;owned\\x07[red]GDPR" in printed


def test_the_last_verify_tile_says_when_the_chain_has_grown_since() -> None:
    from routera_archive_pipelines.report_render import _verdict

    head = [{"chain_seq": 5, "chain_sha256": "b" * 64}]
    assert _verdict([], head) is None
    assert _verdict([{"intact": True, "head": "b" * 64, "links": 5}], head) == "intact"
    assert _verdict([{"intact": True, "head": "a" * 64, "links": 3}], head) == (
        "intact at link 3 (now 5)"
    )
    assert _verdict([{"intact": False, "head": "b" * 64, "links": 5}], head) == "NOT intact"


def test_evidence_on_the_terminal_shows_a_hostile_id_as_text() -> None:
    from datetime import UTC, datetime

    from routera_archive.audit.evidence import Evidence
    from routera_archive_pipelines.evidence_render import print_evidence

    out = StringIO()
    found = Evidence({"request_id": "\x1b]0;owned\x07[red]r"}, "ds", "duckdb", datetime.now(UTC))
    found.notes.append("no request for \x1b[2J this subject")
    print_evidence(Console(file=out, force_terminal=False, width=200), found)
    printed = out.getvalue()
    assert "\x1b" not in printed and "\x07" not in printed
    assert "\\x1b]0;owned\\x07[red]r" in printed
