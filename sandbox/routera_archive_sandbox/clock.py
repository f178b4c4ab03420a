"""Timestamps in the one format Routera's examples show: UTC, milliseconds, a trailing Z.

Kept in one place so seeded data and live writes can never drift into two formats (a connector
that parses one of them must be able to parse every timestamp the sandbox emits).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def utc_now() -> datetime:
    """The current time, timezone-aware (the default clock of `SandboxState`)."""
    return datetime.now(UTC)


def iso_ms(moment: datetime) -> str:
    """`2026-05-01T10:00:00.000Z`: ISO 8601 in UTC, milliseconds, `Z` (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def parse_iso_ms(text: str) -> datetime:
    """The inverse of `iso_ms` (also accepts any ISO 8601 string Python understands)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def later_than(previous: str, now: datetime) -> str:
    """`now` as `iso_ms`, or 1 ms after `previous` when the clock is not past it.

    `updated_at` must move forward on every write even when two writes share a millisecond or the
    seeded data lies in the future of a skewed clock; a connector may rely on it for ordering.
    """
    candidate = iso_ms(now)
    if candidate > previous:  # same fixed-width format: string order is time order
        return candidate
    return iso_ms(parse_iso_ms(previous) + timedelta(milliseconds=1))
