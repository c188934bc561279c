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


class Flavour:
    """How a CSV file is laid out for the program that opens it.

    ``plain``: comma-separated, decimal point, no byte-order mark: for scripts and re-imports.
    ``excel``: the same with a UTF-8 byte-order mark, without which Excel reads the file as the
    system's legacy code page ("MÃ¼ller" for "Müller"). ``excel-eu``: also ``;``-separated with a
    decimal comma, as Excel expects where the comma is the decimal mark (it would read "0.125" as
    125 or a date there). Lines end in CRLF in every flavour (``csv.writer``'s default, RFC 4180).
    """

    def __init__(self, name, *, bom=False, delimiter=",", decimal="."):
        self.name, self.bom, self.delimiter, self.decimal = name, bom, delimiter, decimal

    def number(self, value, decimals: int):
        """``value`` rounded to ``decimals`` places, as text with this flavour's decimal mark
        ("" for None); ``decimals=0`` writes a whole number."""
        if value is None:
            return ""
        text = f"{float(value):.{decimals}f}"
        if text.startswith("-") and not text.strip("-0."):  # -0.00: a tiny negative rounded away
            text = text[1:]
        return text.replace(".", self.decimal) if self.decimal != "." else text


FLAVOURS = {f.name: f for f in (Flavour("plain"), Flavour("excel", bom=True),
                                Flavour("excel-eu", bom=True, delimiter=";", decimal=","))}
