"""CSV the product writes: every file goes through :func:`writer`, which defuses the cells a
spreadsheet would run as formulas (OWASP "CSV injection"). ``tests/test_csv_writers.py`` fails
on a ``csv.writer`` or ``csv.DictWriter`` anywhere else in crm/, ml/ or web/."""
import csv
import re

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def safe_cell(value):
    """Text a spreadsheet would evaluate (``=HYPERLINK(...)``, ``@SUM(...)``) gets a leading quote.

    Plain numbers such as ``-5`` or ``+3.2`` are left alone: a spreadsheet reads them as numbers,
    and a program reading the file back gets the number it was given.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.match(value):
        return "'" + value
    return value


class SafeWriter:
    """``csv.writer`` whose rows have every cell passed through :func:`safe_cell`."""

    def __init__(self, f, **fmtparams):
        self._writer = csv.writer(f, **fmtparams)

    def writerow(self, row):
        return self._writer.writerow([safe_cell(value) for value in row])

    def writerows(self, rows):
        for row in rows:
            self.writerow(row)


def writer(f, **fmtparams) -> SafeWriter:
    """The CSV writer of every file the product writes (exports, reports): ``csv.writer``'s
    arguments, formula-like text cells defused, numbers and empty cells as given."""
    return SafeWriter(f, **fmtparams)
