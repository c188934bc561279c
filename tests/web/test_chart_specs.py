"""The chart specs' labels (web.views.common): names in lines that fit, the month not over marked."""
from datetime import date

import pytest

from web.views.common import LABEL_LINE_CHARS, month_axis, wrapped_label


@pytest.mark.parametrize(("name", "lines"), [
    ("Prospects / no purchases yet", ["Prospects / no", "purchases yet"]),
    ("At-risk valuable customers", ["At-risk valuable", "customers"]),
    ("Champions", "Champions"),
    ("Refund-prone high spenders (mostly Electronics)", ["Refund-prone", "high spenders", "(mostly", "Electronics)"]),
])
def test_wrapped_label_breaks_between_words_into_short_lines(name, lines):
    assert wrapped_label(name) == lines


def test_wrapped_label_keeps_a_long_word_whole_and_every_word():
    lines = wrapped_label("Supercalifragilisticexpialidocious buyers")
    assert lines == ["Supercalifragilisticexpialidocious", "buyers"]
    for name in ("Prospects / no purchases yet", "Steady mid-value customers (bigger baskets)"):
        got = wrapped_label(name)
        assert " ".join(got) == name and all(len(line) <= LABEL_LINE_CHARS for line in got)


def test_month_axis_marks_the_month_today_is_in():
    months = [date(2026, 10, 1), date(2026, 11, 1), date(2026, 12, 1)]
    assert month_axis(months, date(2026, 12, 3)) == (["Oct 2026", "Nov 2026", "Dec 2026 (to date)"], 2)


def test_month_axis_of_months_that_are_over_marks_none():
    months = [date(2026, 10, 1), date(2026, 11, 1)]
    assert month_axis(months, date(2027, 1, 1)) == (["Oct 2026", "Nov 2026"], None)
