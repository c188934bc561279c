"""CSV exports: cells that a spreadsheet would run as formulas are defused."""
import re

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def safe_cell(value):
    """Text a spreadsheet would evaluate (``=HYPERLINK(...)``, ``@SUM(...)``) gets a leading quote.

    Plain numbers such as ``-5`` or ``+3.2`` are left alone: a spreadsheet reads them as numbers.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.match(value):
        return "'" + value
    return value
