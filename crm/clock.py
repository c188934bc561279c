"""The clock is a fact: history holds only what has already happened.

One rule for every door that writes an interaction (the log form, the API's single and bulk
writes, the CSV import): a timestamp later than now, beyond :data:`FUTURE_TOLERANCE`, is
refused with :func:`future_reason`'s sentence. A meeting planned for next week is not an
interaction yet; it belongs in a follow-up. One such row used to move every model's "data up
to" date years ahead (see ml.data.latest_interaction_day, which also never looks past now).

No ORM here: crm.importing (which has no database access) calls it row by row.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

# Clocks of the systems that send us data drift; five minutes is the skew Kerberos tolerates by
# default, ample for machines kept on time and far too short to admit a planned meeting.
FUTURE_TOLERANCE = timedelta(minutes=5)


def now() -> datetime:
    """The current instant, aware, in UTC (the one place the rule reads the clock, so tests can pin it)."""
    return datetime.now(UTC)


def latest_allowed(at: datetime | None = None) -> datetime:
    """The latest instant an interaction may carry: now plus the clock-skew tolerance (aware, UTC)."""
    return (at or now()) + FUTURE_TOLERANCE


def is_future(occurred_at: datetime, at: datetime | None = None) -> bool:
    """Whether an aware timestamp is later than :func:`latest_allowed`."""
    return occurred_at > latest_allowed(at)


def future_reason(occurred_at: datetime, *, column: str = "occurred_at", tz=None, at: datetime | None = None) -> str | None:
    """The sentence every door refuses a future-dated interaction with, or None when it is not in the future.

    ``occurred_at``: an aware datetime. ``column``: the name the sentence starts with ("" for
    none, where a form shows it under its own label). ``tz``: the zone the value is shown in
    (default the site's ``TIME_ZONE``). The same words at the log form, the API and the import's rejected
    rows, so a user meets one rule, whichever door they used.
    """
    if not is_future(occurred_at, at):
        return None
    if tz is None:
        from django.utils import timezone  # settings are read at call time, not when crm.importing loads

        tz = timezone.get_default_timezone()
    shown = occurred_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
    return (f"{column} {shown}".strip() + " is in the future: only what has already happened can be recorded "
            "(a planned call or meeting is a follow-up, not an interaction)")
