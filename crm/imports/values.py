"""Cell values of an import row: text, keys, money, quantities, dates, timestamps, booleans.

Each parser takes one cell's text and returns the clean value or raises :class:`RowError`
with a reason a person can act on. :class:`_Row` gathers the problems of one row while
crm.imports.rows reads its fields. A value that could mean two things is rejected with its
reason, never guessed. No ORM here.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo

INTERACTION_TYPES = frozenset(("purchase", "refund", "view", "email", "call", "meeting", "support", "note"))

# Cells are capped well above any real value but low enough that one malformed cell (a
# runaway quote swallowing the rest of the file) is rejected instead of loaded.
MAX_CELL_BYTES = 1_000_000
csv.field_size_limit(MAX_CELL_BYTES)

_DECIMAL = re.compile(r"^\+?(\d{1,12})(?:\.(\d+))?$")
_INTEGER = re.compile(r"^\+?(\d{1,10})(?:\.0*)?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}

DATE_FORMATS = {
    "iso": "ISO only (2024-12-31)",
    "dmy": "day first (31/12/2024)",
    "mdy": "month first (12/31/2024)",
}


class RowError(ValueError):
    """A row that cannot be loaded; the message is the reason shown to the user."""


class FileError(ValueError):
    """A file that cannot be imported at all (unreadable, missing a required column)."""


@dataclass(frozen=True)
class Options:
    """How an import reads its values: naive times are in ``tz``; ``date_format`` is one of
    DATE_FORMATS (ISO dates are always read)."""

    tz: tzinfo = UTC
    date_format: str = "iso"


class _Row:
    """The problems of one row while its fields are read.

    A required field's problem rejects the row; so does an optional field's in ``strict`` mode
    (the API's bulk door). Otherwise an optional field's problem skips that field (a new record
    gets it empty, a stored one keeps its value) with a warning, and the row loads. Every
    problem of the row is reported, not only the first.
    """

    def __init__(self, options: Options, strict: bool):
        self.options, self.strict = options, strict
        self.errors, self.warnings, self.skipped = [], [], []

    def required(self, parse, *args):
        try:
            return parse(*args)
        except RowError as exc:
            self.errors.append(str(exc))
            return None

    def optional(self, column: str, empty, parse, *args):
        """``column``: the staged column to leave unwritten when the value is bad."""
        try:
            return parse(*args)
        except RowError as exc:
            if self.strict:
                self.errors.append(str(exc))
            else:
                self.warnings.append(f"{exc}: field skipped")
                self.skipped.append(column)
            return empty

    def check(self):
        if self.errors:
            raise RowError("; ".join(self.errors + self.warnings))

    @property
    def keep(self) -> str | None:
        """The staged columns not to write, as ``,a,b,`` (what the merge's SQL looks for), or None."""
        return "," + ",".join(self.skipped) + "," if self.skipped else None


def _text(value: str, column: str, max_length: int) -> str:
    value = value.strip()
    if len(value) > max_length:
        raise RowError(f"{column} is longer than {max_length} characters")
    return value


def _key(value: str, column: str, max_length: int) -> str:
    value = _text(value, column, max_length)
    if not value:
        raise RowError(f"{column} is empty")
    return value


# --- numbers ----------------------------------------------------------------------------------
#
# Rules (README, "Import format"), applied to each value on its own:
# - a currency symbol (€ $ £ ¥ ₹) or a three-letter code (EUR, USD, ...) before or after the
#   number is dropped, with the spaces around it;
# - spaces (also non-breaking ones) and apostrophes between digits are thousands separators;
# - with both "." and ",", the last one is the decimal separator and the other groups thousands
#   (1.234,50 and 1,234.50 are both 1234.50);
# - one kind of separator appearing more than once groups thousands (1,234,567);
# - one separator appearing once is the decimal separator (12,50 and 12.5), except a comma with
#   exactly three digits after it and one to three (not zero-led) before it (1,234): that is a
#   thousands separator in one convention and a decimal comma in the other, so the value is
#   rejected as ambiguous. A point stays the contract's decimal point (12.500 is 12.50);
# - thousands groups have three digits; money has at most 2 decimal places.
_CURRENCY = r"(?:[€$£¥₹]|[A-Z]{3})"
_MONEY = re.compile(rf"^(?P<sign1>[+-]?)\s*(?:{_CURRENCY}\s*)?(?P<sign2>[+-]?)(?P<number>[\d.,' \u00a0\u202f]+?)"
                    rf"\s*(?:{_CURRENCY})?$")
_GROUPED = re.compile(r"^\d{1,3}(?:(?P<sep>[ '\u00a0\u202f,.])\d{3})(?:(?P=sep)\d{3})*$")


def parse_money(value: str, column: str) -> str | None:
    """A money or price cell -> a plain decimal string with 2 places ("1234.50"), None when empty.

    Raises RowError for a negative, ambiguous or malformed value (see the rules above).
    """
    value = value.strip()
    if not value:
        return None
    match = _MONEY.match(value)
    if not match:
        raise RowError(f"{column} is not a number ({value[:40]})")
    number = match.group("number").strip()
    sign = match.group("sign1") or match.group("sign2")
    whole, fraction = _split_number(number, value, column)
    if sign == "-":
        if int(whole or "0") == 0 and not fraction.strip("0"):
            return "0"
        raise RowError(f"{column} is negative ({value})")
    if len(whole) > 12:
        raise RowError(f"{column} is not a number ({value[:40]})")
    fraction = fraction.rstrip("0")
    if len(fraction) > 2:
        raise RowError(f"{column} has more than 2 decimal places ({value})")
    return f"{int(whole)}.{fraction.ljust(2, '0')}"


def _split_number(number: str, value: str, column: str) -> tuple[str, str]:
    """(whole digits, fraction digits) of a number written with separators."""
    bad = RowError(f"{column} is not a number ({value[:40]})")
    if number.isdigit():
        return number, ""
    last = max(number.rfind("."), number.rfind(","))
    if last < 0:  # spaces or apostrophes only: thousands
        if not _GROUPED.match(number):
            raise bad
        return re.sub(r"\D", "", number), ""
    decimal = number[last]
    head, tail = number[:last], number[last + 1:]
    if not tail.isdigit() or not head:
        raise bad
    if decimal in head:  # the same mark more than once: thousands only (1,234,567)
        if not _GROUPED.match(number):
            raise bad
        return re.sub(r"\D", "", number), ""
    if head.isdigit():
        # A point is the contract's decimal point (12.500 is 12.50, as it always was); a lone
        # comma before three digits is a thousands separator in one convention, a decimal
        # comma in the other.
        if decimal == "," and len(tail) == 3 and len(head) <= 3 and not head.startswith("0"):
            raise RowError(f"{column} {value} is ambiguous: the comma could separate thousands or decimals; "
                           f"write {head}{tail}, {head}.{tail} or {head},{tail}0")
        return head, tail
    if not _GROUPED.match(head):
        raise bad
    return re.sub(r"\D", "", head), tail


def _decimal(value: str, column: str) -> str | None:
    return parse_money(value, column)


def _quantity(value: str) -> int:
    value = value.strip()
    if not value:
        return 1
    match = _INTEGER.match(value)
    if not match:
        if value.startswith("-") and re.fullmatch(r"-\d+(\.0*)?", value):
            raise RowError(f"quantity is negative ({value})")
        raise RowError(f"quantity is not a whole number ({value[:40]})")
    number = int(match.group(1))
    if number > 2_147_483_647:
        raise RowError(f"quantity is too large ({value})")
    return number


# --- dates ------------------------------------------------------------------------------------

_LOCAL_DATE = re.compile(r"^(\d{1,2})([/.\-])(\d{1,2})\2(\d{2,4})"
                         r"(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s*([AaPp])\.?[Mm]\.?)?)?$")
_HOW = {"dmy": "day/month/year", "mdy": "month/day/year"}


def _local_date(value: str, column: str, date_format: str) -> datetime | None:
    """A day-first or month-first date (and time) as a naive datetime; None when it is not one."""
    match = _LOCAL_DATE.match(value)
    if not match:
        return None
    first, _sep, second, year, hour, minute, second_, half = match.groups()
    if date_format not in _HOW:
        raise RowError(f"{column} {value} is not an ISO date (YYYY-MM-DD): declare the file's date format "
                       "(day first or month first) to read it")
    if len(year) != 4:
        raise RowError(f"{column} {value} has a two-digit year: write the year in full")
    day, month = (first, second) if date_format == "dmy" else (second, first)
    hours = int(hour or 0)
    if half:
        if not 1 <= hours <= 12:
            raise RowError(f"{column} {value} is not a valid time")
        hours = hours % 12 + (12 if half.lower() == "p" else 0)
    try:
        return datetime(int(year), int(month), int(day), hours, int(minute or 0), int(second_ or 0))
    except ValueError:
        raise RowError(f"{column} {value} is not a valid {_HOW[date_format]} date") from None


def _date(value: str, column: str, date_format: str = "iso") -> date | None:
    value = value.strip()
    if not value:
        return None
    local = _local_date(value, column, date_format)
    if local is not None:
        if local.time() != datetime.min.time():
            raise RowError(f"{column} is a date, without a time ({value[:40]})")
        parsed = local.date()
    else:
        try:
            if len(value) != 10:
                raise ValueError
            parsed = date.fromisoformat(value)
        except ValueError:
            raise RowError(f"{column} is not a date YYYY-MM-DD ({value[:40]})") from None
    if not 1900 <= parsed.year <= 2100:
        raise RowError(f"{column} is out of range ({value})")
    return parsed


def parse_timestamp(value: str, column: str = "occurred_at", tz=UTC, date_format: str = "iso") -> datetime:
    """Parse a date or datetime to an aware UTC datetime; naive values are in ``tz``.

    ISO always; ``date_format`` "dmy" or "mdy" also reads 31/12/2024 [14:30[:00]] (or with . or -).
    """
    value = value.strip()
    parsed = _local_date(value, column, date_format)
    if parsed is None:
        if len(value) < 10 or (len(value) > 10 and value[10] not in "T "):
            raise RowError(f"{column} is not an ISO date or datetime ({value[:40]})")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise RowError(f"{column} is not an ISO date or datetime ({value[:40]})") from None
    if not 1900 <= parsed.year <= 2100:
        raise RowError(f"{column} is out of range ({value})")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(UTC)


def _bool(value: str, column: str, default: bool) -> bool:
    value = value.strip().lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise RowError(f"{column} must be true or false ({value[:40]})")


_json_str = json.encoder.encode_basestring_ascii  # the C encoder json.dumps itself uses


def _attributes(record: dict, extra: tuple[str, ...]) -> str:
    """The extra columns as JSON, byte-identical to ``json.dumps`` (so re-imports compare equal)."""
    if not extra:
        return "{}"
    return "{" + ", ".join(f"{_json_str(name)}: {_json_str(record[name])}" for name in extra
                           if record[name] != "") + "}"
