"""CSV rows -> clean tuples, or a rejection with its reason. No ORM here.

Each :class:`FileSpec` names a file's columns (README, "Import format") and turns one CSV
record into the tuple the importer stages in the database, or raises :class:`RowError` with
a reason a person can act on. Lookups that need the database (does this customer exist?)
happen in :mod:`crm.services`, in SQL, a batch at a time.

What spreadsheets export is taken as well as the contract's own format: the file's encoding
and delimiter are detected (:func:`detect_format`), other column names are mapped onto the
contract's (:func:`read_header`, :func:`suggest_mapping`), day-first or month-first dates are
read when the import declares them, and numbers may carry a decimal comma, thousands
separators and a currency symbol (:func:`parse_money`). A value that could mean two things is
rejected with its reason, never guessed.
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from itertools import islice

from crm import clock

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


@dataclass(frozen=True)
class FileSpec:
    """What one import file must and may hold, and how a row becomes a staged tuple.

    ``columns`` are the staged tuple's fields after the row number, in order; ``read``
    returns them. ``optional`` columns absent from a file are not written on update, so a
    file without an ``owner`` column keeps the owners already stored.
    """

    kind: str
    key: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    columns: tuple[str, ...]
    read: Callable[[dict, tuple[str, ...], _Row], tuple]
    always_written: tuple[str, ...] = field(default=())

    @property
    def known(self) -> tuple[str, ...]:
        return self.required + self.optional

    def parse(self, record: dict, extra: tuple[str, ...], tz) -> tuple:
        """The staged tuple of a record; RowError naming every bad field (optional ones too)."""
        return self.read(record, extra, _Row(Options(tz=tz), strict=True))

    def read_row(self, record: dict, extra: tuple[str, ...], options: Options) -> tuple[tuple, list, str | None]:
        """(staged tuple, warnings, skipped columns as ``,a,b,`` or None); RowError when the row
        cannot load. A bad optional field is skipped with a warning instead."""
        row = _Row(options, strict=False)
        values = self.read(record, extra, row)
        return values, row.warnings, row.keep

    def check_header(self, header: list[str]) -> tuple[str, ...]:
        """Return the extra columns; raise FileError when the header cannot be imported."""
        if not header or all(not name.strip() for name in header):
            raise FileError(f"{self.kind} file has no header row")
        names = [name.strip() for name in header]
        for name in names:
            if any("\udc80" <= ch <= "\udcff" for ch in name):
                raise FileError(f"{self.kind} file header is not valid text in the file's encoding")
            if "\x00" in name:  # every other byte NUL: UTF-16 text that was not recognised as such
                raise FileError(f"{self.kind} file header contains NUL bytes: save the file as UTF-8")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise FileError(f"{self.kind} file header repeats column(s): {', '.join(duplicates)}")
        missing = [name for name in self.required if name not in names]
        if missing:
            raise FileError(f"{self.kind} file is missing required column(s): {', '.join(missing)}")
        return tuple(name for name in names if name and name not in self.known)

    def written_columns(self, header: list[str]) -> tuple[str, ...]:
        """The staged columns this file provides (and so may change on update)."""
        names = {name.strip() for name in header}
        extra = self.check_header(header)
        out = []
        for column in self.columns:
            if column == "attributes":
                if extra:
                    out.append(column)
            elif column in self.always_written or column in names or source_of(column) in names:
                out.append(column)
        return tuple(out)


_SOURCES = {"owner_username": "owner", "customer_key": "customer_external_id", "product_key": "product_sku"}


def source_of(column: str) -> str:
    """The file's column name of a staged column."""
    return _SOURCES.get(column, column)


def _email(value: str) -> str:
    email = _text(value, "email", 254)
    if email and not _EMAIL.match(email):
        raise RowError(f"email is not an e-mail address ({email[:60]})")
    return email


def _read_customer(record: dict, extra: tuple[str, ...], row: _Row) -> tuple:
    get = record.get
    values = (
        row.required(_key, record["external_id"], "external_id", 100),
        row.optional("name", "", _text, get("name", ""), "name", 200),
        row.optional("email", "", _email, get("email", "")),
        row.optional("phone", "", _text, get("phone", ""), "phone", 50),
        row.optional("company", "", _text, get("company", ""), "company", 200),
        row.optional("country", "", _text, get("country", ""), "country", 100),
        row.optional("city", "", _text, get("city", ""), "city", 100),
        row.optional("signup_date", None, _date, get("signup_date", ""), "signup_date", row.options.date_format),
        row.optional("owner_username", "", _text, get("owner", ""), "owner", 150),
        _attributes(record, extra),
    )
    row.check()
    return values


def _tags(value: str) -> str:
    tags = ";".join(t for t in (s.strip() for s in value.split(";")) if t)
    if len(tags) > 500:
        raise RowError("tags are longer than 500 characters")
    return tags


def _read_product(record: dict, extra: tuple[str, ...], row: _Row) -> tuple:
    get = record.get
    values = (
        row.required(_key, record["sku"], "sku", 100),
        row.required(_key, record["name"], "name", 300),
        row.optional("category", "", _text, get("category", ""), "category", 200),
        row.optional("price", None, _decimal, get("price", ""), "price"),
        get("description", "").strip(),
        row.optional("tags", "", _tags, get("tags", "")),
        row.optional("active", True, _bool, get("active", ""), "active", True),
        _attributes(record, extra),
    )
    row.check()
    return values


def content_key(parts: tuple) -> str:
    """A stable key for an interaction row that has no external_id (same content, same key)."""
    digest = hashlib.sha1("\x1f".join("" if p is None else str(p) for p in parts).encode(),
                          usedforsecurity=False).hexdigest()
    return f"h-{digest[:32]}"


def _type(value: str) -> str:
    kind = value.strip().lower()
    if kind not in INTERACTION_TYPES:
        raise RowError(f"type {value[:40]!r} is not one of {', '.join(sorted(INTERACTION_TYPES))}")
    return kind


def _past_timestamp(value: str, name: str, tz, date_format) -> datetime:
    """parse_timestamp, refusing a time in the future (crm.clock: only what happened is history)."""
    occurred_at = parse_timestamp(value, name, tz, date_format)
    future = clock.future_reason(occurred_at, tz=tz)
    if future:
        raise RowError(future)
    return occurred_at


def _read_interaction(record: dict, extra: tuple[str, ...], row: _Row) -> tuple:
    get = record.get
    customer_key = row.required(_key, record["customer_external_id"], "customer_external_id", 100)
    kind = row.required(_type, record["type"])
    occurred_at = row.required(_past_timestamp, record["occurred_at"], "occurred_at", row.options.tz,
                               row.options.date_format)
    product_key = row.optional("product_key", "", _text, get("product_sku", ""), "product_sku", 100)
    quantity = row.optional("quantity", 1, _quantity, get("quantity", ""))
    amount = row.optional("amount", None, _decimal, get("amount", ""), "amount")
    order_ref = row.optional("order_ref", "", _text, get("order_ref", ""), "order_ref", 100)
    channel = row.optional("channel", "", _text, get("channel", ""), "channel", 100)
    notes = get("notes", "").strip()
    attributes = _attributes(record, extra)
    # The row's key: a bad one cannot be skipped (the row would get another identity).
    external_id = row.required(_text, get("external_id", ""), "external_id", 100)
    row.check()
    if not external_id:
        external_id = content_key((customer_key, kind, occurred_at.isoformat(), product_key, quantity, amount,
                                   order_ref, channel, notes, attributes))
    return (external_id, customer_key, kind, occurred_at, product_key, quantity, amount, order_ref, channel,
            notes, attributes)


CUSTOMERS = FileSpec(
    kind="customers",
    key="external_id",
    required=("external_id",),
    optional=("name", "email", "phone", "company", "country", "city", "signup_date", "owner"),
    columns=("external_id", "name", "email", "phone", "company", "country", "city", "signup_date",
             "owner_username", "attributes"),
    read=_read_customer,
    always_written=("external_id",),
)
PRODUCTS = FileSpec(
    kind="products",
    key="sku",
    required=("sku", "name"),
    optional=("category", "price", "description", "tags", "active"),
    columns=("sku", "name", "category", "price", "description", "tags", "active", "attributes"),
    read=_read_product,
    always_written=("sku", "name"),
)
INTERACTIONS = FileSpec(
    kind="interactions",
    key="external_id",
    required=("customer_external_id", "type", "occurred_at"),
    optional=("product_sku", "quantity", "amount", "order_ref", "external_id", "channel", "notes"),
    columns=("external_id", "customer_key", "type", "occurred_at", "product_key", "quantity", "amount",
             "order_ref", "channel", "notes", "attributes"),
    read=_read_interaction,
    # A missing quantity column means quantity 1 (the contract's default), so it is always written.
    always_written=("external_id", "customer_key", "type", "occurred_at", "quantity"),
)
SPECS = {spec.kind: spec for spec in (CUSTOMERS, PRODUCTS, INTERACTIONS)}


# --- column mapping -----------------------------------------------------------------------------
#
# Other names for the contract's columns, as spreadsheets and other systems export them,
# compared after _normal() (lower case, letters and digits only: "E-mail" -> "email").

SYNONYMS = {
    "customers": {
        "external_id": ("id", "customerid", "customerno", "customernumber", "customercode", "clientid", "clientno",
                        "clientnumber", "accountid", "accountnumber", "contactid"),
        "name": ("fullname", "customername", "customer", "contactname", "clientname"),
        "email": ("emailaddress", "mail", "emails"),
        "phone": ("telephone", "tel", "phonenumber", "mobile", "mobilephone", "cell"),
        "company": ("companyname", "organisation", "organization", "business", "firm"),
        "country": ("countrycode", "nation"),
        "city": ("town", "locality"),
        "signup_date": ("signup", "signupdate", "signedup", "registered", "registrationdate", "joined",
                        "joindate", "customersince", "createdat", "created", "firstseen"),
        "owner": ("ownerusername", "salesrep", "rep", "accountowner", "accountmanager", "assignedto"),
    },
    "products": {
        "sku": ("id", "productid", "productcode", "itemcode", "itemid", "itemno", "articleno", "articlenumber",
                "code", "partnumber"),
        "name": ("productname", "title", "itemname", "product"),
        "category": ("productcategory", "group", "productgroup", "type"),
        "price": ("unitprice", "listprice", "priceeach", "cost"),
        "description": ("details", "longdescription"),
        "tags": ("keywords", "labels"),
        "active": ("isactive", "enabled", "available", "status"),
    },
    "interactions": {
        "customer_external_id": ("customerid", "customer", "customerno", "customernumber", "clientid",
                                 "clientno", "accountid", "customerexternalid"),
        "type": ("interactiontype", "eventtype", "event", "activity", "activitytype", "kind"),
        "occurred_at": ("date", "datetime", "timestamp", "time", "occurredat", "orderdate", "eventdate",
                        "activitydate", "when", "createdat"),
        "product_sku": ("sku", "productid", "productcode", "itemcode", "itemid", "product", "articleno"),
        "quantity": ("qty", "units", "count", "amountofitems"),
        "amount": ("total", "value", "revenue", "sales", "linetotal", "totalprice", "spend", "paid"),
        "order_ref": ("order", "orderid", "orderno", "ordernumber", "orderreference", "invoice", "invoiceno",
                      "invoicenumber", "transactionid"),
        "external_id": ("id", "interactionid", "eventid", "rowid", "lineid"),
        "channel": ("source", "medium"),
        "notes": ("note", "comment", "comments", "remarks", "description"),
    },
}


def _normal(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^0-9a-z]", "", ascii_name.lower())


def suggest_mapping(spec: FileSpec, header: list[str], mapping: dict | None = None) -> dict:
    """Proposed ``{file column: contract column}`` for the columns that are not contract names.

    A proposal needs its contract column to be absent from the file (and from ``mapping``) and
    only one column of the file to look like it.
    """
    mapping = mapping or {}
    names = [name.strip() for name in header]
    taken = {mapping.get(name, name) for name in names}
    found: dict[str, list[str]] = {}
    synonyms = SYNONYMS.get(spec.kind, {})
    for name in names:
        if not name or name in spec.known or name in mapping:
            continue
        key = _normal(name)
        for column in spec.known:
            if key == _normal(column) or key in synonyms.get(column, ()):
                found.setdefault(column, []).append(name)
                break
    return {names_[0]: column for column, names_ in found.items() if len(names_) == 1 and column not in taken}


def check_mapping(spec: FileSpec, mapping: dict) -> dict:
    """A mapping's entries cleaned (names stripped, empty targets dropped); FileError for a target
    that is not one of the kind's columns."""
    out = {}
    for source, target in (mapping or {}).items():
        source, target = str(source).strip(), str(target or "").strip()
        if not source or not target:
            continue
        if target not in spec.known:
            raise FileError(f"the mapping of {spec.kind} files sends {source!r} to {target!r}, which is not one of "
                            f"their columns ({', '.join(spec.known)})")
        out[source] = target
    return out


@dataclass(frozen=True)
class Header:
    """A file's header read with a mapping: ``original`` names as in the file (stripped), ``names``
    the record keys (the contract's names where mapped), ``mapping`` what was applied
    (``{file column: contract column}``), ``suggested`` proposals for the other columns."""

    original: list
    names: list
    extra: tuple
    mapping: dict
    suggested: dict


def read_header(reader, spec: FileSpec, mapping: dict | None = None, apply_suggestions: bool = False) -> Header:
    """Read and check the header row from a ``csv.reader``; FileError when it cannot be imported.

    ``mapping``: ``{file column: contract column}``; ``apply_suggestions``: map the columns
    :func:`suggest_mapping` proposes as well (a dry run shows what they would give).
    """
    try:
        raw = next(reader)
    except StopIteration:
        raise FileError(f"{spec.kind} file is empty") from None
    except csv.Error as exc:
        raise FileError(f"{spec.kind} file header cannot be read: {exc}") from None
    if raw and raw[0].startswith("\ufeff"):
        raw[0] = raw[0][1:]
    original = [name.strip() for name in raw]
    mapping = {k: v for k, v in check_mapping(spec, mapping or {}).items() if k in original}
    suggested = suggest_mapping(spec, original, mapping)
    applied = {**suggested, **mapping} if apply_suggestions else mapping
    names = [applied.get(name, name) for name in original]
    for target in set(applied.values()):
        sources = [name for name in original if applied.get(name, name) == target]
        if len(sources) > 1:
            raise FileError(f"{spec.kind} file: columns {', '.join(map(repr, sources))} would all be {target}; "
                            "map only one of them")
    try:
        extra = spec.check_header(names)
    except FileError as exc:
        hints = [f"{name!r} looks like {column}" for name, column in suggested.items() if name not in applied]
        if hints and "missing required" in str(exc):
            raise FileError(f"{exc} ({'; '.join(hints)}: map it with a dry run on the upload page, the API's "
                            "mapping or import_data --mapping)") from None
        raise
    return Header(original=original, names=names, extra=extra, mapping={k: v for k, v in applied.items() if k != v},
                  suggested=suggested)


# Undecodable bytes arrive as lone surrogates (the file is read with ``surrogateescape``).
_BAD_CHARS = re.compile("[\udc80-\udcff\x00]")


def _bad_bytes(values) -> str | None:
    match = _BAD_CHARS.search("".join(values))
    if match is None:
        return None
    ch = match.group()
    if ch == "\x00":
        return "contains a NUL character"
    return f"not valid UTF-8 (byte 0x{ord(ch) - 0xDC00:02x})"


# --- what a file is: encoding and delimiter -----------------------------------------------------

DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_ENCODING_NAMES = {"utf-8": "UTF-8", "utf-16": "UTF-16", "utf-16-le": "UTF-16 LE", "utf-16-be": "UTF-16 BE",
                   "utf-32": "UTF-32",
                   "cp1252": "Windows-1252", "latin-1": "Latin-1 (ISO-8859-1)"}
_SAMPLE = 1 << 16  # bytes looked at for the delimiter and a mixed encoding: a few hundred rows


@dataclass(frozen=True)
class FileFormat:
    """How a file's bytes are read: ``encoding`` a Python codec name, ``bom`` whether it starts
    with a byte-order mark, ``delimiter`` one of DELIMITERS, ``note`` what the detection saw."""

    encoding: str = "utf-8"
    delimiter: str = ","
    bom: bool = False
    note: str = ""

    @property
    def encoding_label(self) -> str:
        label = _ENCODING_NAMES.get(self.encoding, self.encoding)
        return f"{label} with BOM" if self.bom else label

    @property
    def delimiter_label(self) -> str:
        return DELIMITERS.get(self.delimiter, repr(self.delimiter))

    def describe(self) -> str:
        """E.g. "Windows-1252, semicolon-delimited"."""
        return f"{self.encoding_label}, {self.delimiter_label}-delimited" + (f" ({self.note})" if self.note else "")


def detect_encoding(binary) -> tuple[str, bool, str]:
    """(codec, has a BOM, note) of a byte stream; reads it to the end and seeks back to 0.

    Rules, in order (README, "Import format"):
    - a byte-order mark decides (UTF-8, UTF-16, UTF-32);
    - mostly-NUL bytes are UTF-16 without a mark (Latin-script text), the NULs' side giving the
      byte order;
    - a file that is valid UTF-8 throughout is UTF-8 (one pass at memory speed, so a legacy
      byte on row 900,000 is still seen);
    - a file with more valid UTF-8 multi-byte characters than invalid bytes (in the 64 KB around
      its first invalid byte) is UTF-8 with some bad rows, each rejected with its reason, rather
      than every good row garbled;
    - anything else is a legacy single-byte file: Windows-1252, what spreadsheets write in
      Western Europe and the Americas, or Latin-1 when a byte undefined in Windows-1252 occurs
      (the two differ only in 0x80-0x9F, control characters in Latin-1).

    Statistical detection (charset-normalizer) was measured and not used: on short files of
    names it chose Latin-1 or nothing over Windows-1252 for most files, and unrestricted it read
    "Lefèvre" as Central European "Lefčvre" and random Latin names as Big5 or Shift-JIS.
    """
    binary.seek(0)
    head = binary.read(_SAMPLE)
    binary.seek(0)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8", True, ""
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16: FF FE starts both
        return "utf-32", True, ""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", True, ""
    start = head[:4096]
    if start and start.count(0) * 10 >= len(start) * 3:
        odd = start[1::2].count(0)
        return ("utf-16-le" if odd >= start[0::2].count(0) else "utf-16-be"), False, ""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0
    try:
        for chunk in iter(lambda: binary.read(1 << 20), b""):
            decoder.decode(chunk)
            offset += len(chunk)
        decoder.decode(b"", final=True)
        return "utf-8", False, ""
    except UnicodeDecodeError as exc:
        bad_at = offset + exc.start
    finally:
        binary.seek(0)
    binary.seek(max(0, bad_at - _SAMPLE // 2))
    text = binary.read(_SAMPLE).decode("utf-8", "surrogateescape")
    invalid = sum(1 for ch in text if "\udc80" <= ch <= "\udcff")
    multibyte = sum(1 for ch in text if ch > "\x7f") - invalid
    binary.seek(0)
    if multibyte >= invalid:
        return "utf-8", False, "some rows are not valid UTF-8"
    undefined = re.compile(b"[\x81\x8d\x8f\x90\x9d]")  # no character in Windows-1252
    latin1 = any(undefined.search(chunk) for chunk in iter(lambda: binary.read(1 << 20), b""))
    binary.seek(0)
    return ("latin-1" if latin1 else "cp1252"), False, ""


class Transcoded:
    """A byte stream of another encoding, read as UTF-8 bytes (what csv and pyarrow take).

    ``tell()`` is the position in the original bytes (the import's progress).
    """

    CHUNK = 1 << 20

    def __init__(self, binary, encoding: str):
        self.binary, self.encoding = binary, encoding
        self._decoder = codecs.getincrementaldecoder(encoding)("replace")
        self._done = False

    def read(self, size: int = -1) -> bytes:
        """At least one character's bytes, or b"" at the end (callers read until b"")."""
        text = ""
        while not text and not self._done:
            data = self.binary.read(self.CHUNK if size is None or size < 0 else max(size, 4))
            text = self._decoder.decode(data, final=not data)
            self._done = not data
        return text.encode("utf-8", "surrogateescape")

    def tell(self) -> int:
        return self.binary.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        if (offset, whence) != (0, 0):
            raise io.UnsupportedOperation("a transcoded stream only seeks back to its start")
        self._decoder.reset()
        self._done = False
        return self.binary.seek(0)


def utf8_stream(binary, encoding: str):
    """``binary`` as UTF-8 bytes: itself when it is UTF-8 already."""
    return binary if encoding == "utf-8" else Transcoded(binary, encoding)


def detect_delimiter(text: str) -> str:
    """The delimiter of a file's first lines (decoded text): the candidate that splits the header
    into the most columns that the next records repeat; a comma when none splits it."""
    best, best_score = ",", (0.0, 0)
    for delimiter in DELIMITERS:
        try:
            records = [r for r in islice(csv.reader(io.StringIO(text), delimiter=delimiter), 101) if r]
        except csv.Error:
            continue
        if len(records) > 2 and not text.endswith(("\n", "\r")):
            records = records[:-1]  # the sample may cut its last record
        if not records or len(records[0]) < 2:
            continue
        width = len(records[0])
        rows = records[1:]
        consistent = sum(len(r) == width for r in rows) / len(rows) if rows else 1.0
        score = (consistent, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def detect_format(binary, delimiter: str | None = None) -> FileFormat:
    """The encoding and delimiter of a CSV byte stream (seeks back to 0)."""
    encoding, bom, note = detect_encoding(binary)
    if delimiter is None:
        stream = utf8_stream(binary, encoding)
        sample = stream.read(_SAMPLE)
        stream.seek(0)
        delimiter = detect_delimiter(sample.removeprefix(codecs.BOM_UTF8).decode("utf-8", "replace"))
    binary.seek(0)
    return FileFormat(encoding=encoding, delimiter=delimiter, bom=bom, note=note)


# --- Batches: a vectorised fast path, the per-row path above for everything else -----------
#
# Per-row parsing costs ~20-30 µs a row, far over the import's budget (~4 µs a row next to
# the database's work). A batch of plain lines (no quotes, lone CR, NUL, blank lines or invalid
# UTF-8: one line = one record, so line numbers are positions) is parsed by pyarrow's CSV
# reader and checked column by column. The column checks are deliberately conservative: a
# row that passes them would pass ``spec.read_row`` with the same values and no warning;
# every row they flag, and every batch that is not plain, goes through ``spec.read_row``, so
# the rejection reasons, warnings, line numbers and staged values are those of the per-row path.

try:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pa_csv
except ImportError:  # pragma: no cover - the per-row path is complete on its own
    pa = None

# Printable ASCII, no space: a value that starts and ends with one of these is unchanged by
# str.strip() (RE2's \s is ASCII-only, so it cannot stand in for Python's).
_ENDS = "[!-~]"
_OPTIONAL_TEXT = f"^(?:{_ENDS}(?:.*{_ENDS})?)?$"
_REQUIRED_TEXT = f"^{_ENDS}(?:.*{_ENDS})?$"
_FAST_TIMESTAMP = r"^(?:19\d\d|20\d\d|2100)-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d)?)?$"
_FAST_DATE = r"^(?:(?:19\d\d|20\d\d|2100)-\d\d-\d\d)?$"
_FAST_QUANTITY = r"^\d{0,9}$"  # 9 digits always fit the 2**31 - 1 cap
_FAST_MONEY = r"^(?:(?:0|[1-9]\d{0,11})(?:\.\d{1,2})?)?$"
_FAST_EMAIL = r"^(?:[!-?A-~]+@[!-?A-~]+\.[!-?A-~]+)?$"  # ASCII only: \s and [^@] agree there


@dataclass
class Batch:
    """One transaction's worth of records.

    ``rows`` are staged tuples ``(row_no, *spec.columns, keep)`` from the per-row path (``keep``:
    the columns a warning skipped, see :class:`_Row`); ``table`` holds the fast path's staged
    rows as pyarrow columns (``row_no`` first, ``occurred_at`` as UTC text ``YYYY-MM-DD
    HH:MM:SS``); ``rejected`` are ``(row_no, reason, raw)``; ``warnings`` ``{row_no: [reason]}``
    of rows that load with a field skipped.
    """

    rows_read: int
    rows: list
    rejected: list
    table: object = None
    raws: dict = field(default_factory=dict)
    warnings: dict = field(default_factory=dict)
    _raw_table: object = None
    _first_row: int = 0

    def raw(self, row_no: int) -> list[str]:
        if row_no in self.raws:
            return self.raws[row_no]
        i = row_no - self._first_row
        return [column[i].as_py() for column in self._raw_table.columns]

    @property
    def skips_fields(self) -> bool:
        """Whether a row of the batch loads with a field skipped (the merge then keeps stored values)."""
        return any(row[-1] is not None for row in self.rows)

    def add_row(self, row_no: int, spec: FileSpec, names, raw, extra, options: Options):
        """Read one record with the per-row path into the batch."""
        try:
            values, warnings, keep = spec.read_row(dict(zip(names, raw)), extra, options)
        except RowError as exc:
            self.rejected.append((row_no, str(exc), raw))
            return
        self.rows.append((row_no, *values, keep))
        self.raws[row_no] = raw
        if warnings:
            self.warnings[row_no] = warnings


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


class _Lines:
    """Lines of a binary stream as ``open(newline="")`` yields them (ending in \\n, \\r\\n or \\r).

    Keeps a read position in its buffer rather than slicing it, so a line costs its length.
    """

    CHUNK = 1 << 20

    def __init__(self, binary):
        self.binary, self.buf, self.pos, self.eof, self.started = binary, b"", 0, False, False
        self.lines = []  # decoded, not yet read, in reverse order

    def fill(self) -> bool:
        if self.eof:
            return False
        data = self.binary.read(self.CHUNK)
        if not data:
            self.eof = True
            return False
        if not self.started:
            # A byte-order mark is not part of the first column's name, even when that name is
            # quoted (after the mark, csv.reader would not see the opening quote).
            self.started = True
            data = data.removeprefix(b"\xef\xbb\xbf")
        self.buf, self.pos = self.buf[self.pos:] + data, 0
        return True

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self.lines:
            return self.lines.pop()
        while True:
            last = self.buf.rfind(b"\n", self.pos)
            if last >= 0:
                end = last + 1
                break
            if not self.fill():
                if self.pos >= len(self.buf):
                    raise StopIteration
                end = len(self.buf)
                break
        # Decode and split everything up to the last \n at once (a line at a time in Python
        # costs more than the csv module's parsing); a line never splits a UTF-8 sequence.
        text, self.pos = self.buf[self.pos:end].decode("utf-8", "surrogateescape"), end
        self.lines = _LINE.findall(text)
        self.lines.reverse()
        return self.lines.pop()

    def _unread(self):
        """Give back the decoded lines csv.reader has not asked for."""
        if self.lines:
            self.pos -= sum(len(line.encode("utf-8", "surrogateescape")) for line in self.lines)
            self.lines = []

    def plain_prefix(self, count: int):
        """The next ``count`` lines as bytes when they are plain (see above), else None."""
        self._unread()
        while self.buf.count(b"\n", self.pos) < count and self.fill():
            pass
        positions = np.flatnonzero(np.frombuffer(self.buf, dtype=np.uint8, offset=self.pos) == 10)
        if len(positions) >= count:
            cut = int(positions[count - 1]) + 1
        elif self.eof:
            cut = len(self.buf) - self.pos
        else:
            return None
        prefix = self.buf[self.pos:self.pos + cut]
        if (not prefix or b'"' in prefix or b"\x00" in prefix or b"\n\n" in prefix or prefix.startswith(b"\n")):
            return None
        if b"\r" in prefix:
            # Windows line ends (what spreadsheets write) are plain too when every line has one:
            # pyarrow and csv then agree on the lines. A lone CR is a line break to csv only.
            crlf = prefix.count(b"\r\n")
            if (crlf != prefix.count(b"\r") or crlf != prefix.count(b"\n") or b"\n\r\n" in prefix
                    or prefix.startswith(b"\r\n")):
                return None
        return prefix

    def take(self, size: int):
        self.pos += size


def more_rows_than(binary, limit: int, fmt: FileFormat | None = None) -> bool:
    """Whether a CSV byte stream holds more than ``limit`` records after its header row.

    Records are counted as the import counts ``rows_read`` (blank lines are not records, an
    unreadable record is one). Counting line breaks bounds that from above at memory speed, so
    a file under the limit costs one pass of ``bytes.count``; only a file with more lines than
    the limit is parsed (a quoted cell may span lines), and only up to the limit. ``fmt``: the
    file's format (its encoding and delimiter), UTF-8 and commas when not given. Reads from the
    start of the stream.
    """
    fmt = fmt or FileFormat()
    binary.seek(0)
    binary = utf8_stream(binary, fmt.encoding)
    breaks, previous = 0, b""
    for chunk in iter(lambda: binary.read(_Lines.CHUNK), b""):
        breaks += chunk.count(b"\n") + chunk.count(b"\r") - chunk.count(b"\r\n")
        if previous.endswith(b"\r") and chunk.startswith(b"\n"):
            breaks -= 1
        previous = chunk
    if breaks <= limit:  # the header takes a line; a last line may lack its break
        return False
    binary.seek(0)
    reader = csv.reader(_Lines(binary), delimiter=fmt.delimiter)
    records = 0
    while records <= limit + 1:  # the header and one row over the limit are enough
        try:
            raw = next(reader)
        except StopIteration:
            break
        except csv.Error:
            raw = [""]
        if raw:
            records += 1
    return records - 1 > limit  # the first record is the header


def csv_reader(lines, fmt: FileFormat):
    return csv.reader(lines, delimiter=fmt.delimiter)


def read_batches(binary, spec: FileSpec, batch_size: int, options: Options | None = None,
                 fmt: FileFormat | None = None, mapping: dict | None = None, apply_suggestions: bool = False):
    """Yield the :class:`Header`, then a :class:`Batch` per ``batch_size`` records of a binary stream.

    ``fmt``: the file's encoding and delimiter (detected when not given); ``mapping`` and
    ``apply_suggestions``: see :func:`read_header`. Raises FileError when the header cannot be
    imported, before any batch is yielded.
    """
    options = options or Options()
    fmt = fmt or detect_format(binary)
    lines = _Lines(utf8_stream(binary, fmt.encoding))
    reader = csv_reader(lines, fmt)
    header = read_header(reader, spec, mapping, apply_suggestions)
    names, extra = header.names, header.extra
    yield header
    fast = _FAST.get(spec.kind) if pa is not None else None
    line = reader.line_num + 1
    while True:
        prefix = lines.plain_prefix(batch_size) if fast is not None else None
        if prefix is not None:
            batch = _fast_batch(prefix, line, names, extra, spec, fast, options, fmt.delimiter)
            if batch is not None:
                lines.take(len(prefix))
                line += batch.rows_read
                reader = csv_reader(lines, fmt)  # line_num restarts; ``line`` carries the count
                yield batch
                continue
        batch, line = _slow_batch(reader, lines, line, batch_size, names, extra, spec, options)
        if batch.rows_read == 0:
            return
        yield batch


HUGE_CELL = f"a cell is longer than {MAX_CELL_BYTES} characters"


def _csv_error_reason(exc: csv.Error) -> str:
    # The same reason whichever path read the row (the fast path checks the length itself).
    if str(exc).startswith("field larger than field limit"):
        return HUGE_CELL
    return f"unreadable CSV record: {exc}"


def _slow_batch(reader, lines, line, batch_size, names, extra, spec, options):
    base = line - 1 - reader.line_num  # reader.line_num counts from where this reader started
    batch = Batch(0, [], [])
    width = len(names)
    while batch.rows_read < batch_size:
        try:
            raw = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            batch.rows_read += 1
            batch.rejected.append((line, _csv_error_reason(exc), []))
            line = base + reader.line_num + 1
            continue
        start, line = line, base + reader.line_num + 1
        if not raw:  # a blank line is not a record
            continue
        batch.rows_read += 1
        if len(raw) != width:
            batch.rejected.append((start, f"expected {width} columns, found {len(raw)}", raw))
            continue
        bad = _bad_bytes(raw)
        if bad:
            batch.rejected.append((start, bad, raw))
            continue
        batch.add_row(start, spec, names, raw, extra, options)
    return batch, line


def _fast_batch(prefix, first_row, names, extra, spec, fast, options, delimiter):
    """Parse plain lines column-wise; None when pyarrow cannot read them as they are."""
    width = len(names)
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(prefix),
            read_options=pa_csv.ReadOptions(column_names=[f"c{i}" for i in range(width)],
                                            block_size=max(len(prefix) + 1, 1 << 20)),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter, quote_char=False, double_quote=False,
                                              newlines_in_values=False, ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(column_types={f"c{i}": pa.string() for i in range(width)},
                                                  strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowException):  # a wrong column count, invalid UTF-8, ...
        return None
    table = table.combine_chunks()
    n = table.num_rows
    columns = {name: table.column(i).chunk(0) if table.column(i).num_chunks else pa.array([], pa.string())
               for i, name in enumerate(names) if name}
    empty = pa.array([""] * n, pa.string()) if n else pa.array([], pa.string())
    ok = np.ones(n, dtype=bool)

    def col(name):
        return columns.get(name, empty)

    def check(mask):
        nonlocal ok
        ok &= np.asarray(mask.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)

    # csv.reader refuses a cell over MAX_CELL_BYTES characters; refuse it here too, so whether a
    # row loads does not depend on the other rows of its batch (and its cell is not copied into
    # the rejected rows' file, which csv.reader must read back).
    huge = np.zeros(n, dtype=bool)
    for i in range(width):
        if table.column(i).num_chunks:
            huge |= np.asarray(pc.greater(pc.utf8_length(table.column(i).chunk(0)), MAX_CELL_BYTES)
                               .fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    ok &= ~huge
    staged = fast(col, check, n, options)
    row_no = pa.array(np.arange(first_row, first_row + n, dtype=np.int64))
    if extra:
        attributes = _fast_attributes([col(name) for name in extra], extra)
    else:
        attributes = pa.array(["{}"] * n, pa.string())
    staged["attributes"] = attributes
    batch = Batch(n, [], [], _raw_table=table, _first_row=first_row)
    keep = pa.array(ok)
    batch.table = pa.table({"row_no": row_no.filter(keep),
                            **{name: staged[name].filter(keep) for name in spec.columns}})
    flagged = np.flatnonzero(~ok)
    for i in flagged.tolist():
        row = first_row + i
        if huge[i]:
            batch.rejected.append((row, HUGE_CELL, []))
            continue
        batch.add_row(row, spec, names, batch.raw(row), extra, options)
    return batch


def _fast_attributes(arrays, extra):
    values = [a.to_pylist() for a in arrays]
    keys = [_json_str(name) + ": " for name in extra]
    return pa.array(["{" + ", ".join(k + _json_str(v) for k, v in zip(keys, row) if v != "") + "}"
                     for row in zip(*values)], pa.string())


def _text_ok(array, max_length, required=False):
    shape = pc.match_substring_regex(array, _REQUIRED_TEXT if required else _OPTIONAL_TEXT)
    return pc.and_(shape, pc.less_equal(pc.utf8_length(array), max_length))


def _fast_timestamps(array, check, tz):
    """UTC text ``YYYY-MM-DD HH:MM:SS`` of naive ISO values (flagging the others)."""
    shape = pc.match_substring_regex(array, _FAST_TIMESTAMP)
    check(shape)
    # Flagged values are replaced by a valid one; their rows take the per-row path anyway.
    cleaned = pc.if_else(shape, array, "2000-01-01")
    try:
        parsed = pc.cast(cleaned, pa.timestamp("s"))
    except pa.ArrowInvalid:  # an impossible date (2023-02-29, 24:00): find it value by value
        good = []
        for value in cleaned.to_pylist():
            try:
                datetime.fromisoformat(value)
                good.append(True)
            except ValueError:
                good.append(False)
        good = pa.array(good)
        check(good)
        parsed = pc.cast(pc.if_else(good, cleaned, "2000-01-01"), pa.timestamp("s"))
    if tz is UTC or getattr(tz, "key", None) == "UTC":
        return pc.strftime(parsed, "%Y-%m-%d %H:%M:%S")
    # Local wall-clock times: converted as parse_timestamp does (fold=0), value by value.
    return pa.array([d.replace(tzinfo=tz).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
                     for d in parsed.to_pylist()], pa.string())


def _fast_local_dates(array, date_format):
    """Day-first or month-first dates (and times) rewritten as ISO text, as _local_date reads them;
    other values unchanged (the ISO checks then pass or flag them). Mixed separators, 12-hour
    times and impossible dates are left for the per-row path to explain."""
    if date_format not in _HOW:
        return array
    parts = pc.extract_regex(array, pattern=_FAST_LOCAL)
    matched = pc.is_valid(parts)
    field = {name: pc.struct_field(parts, name) for name in ("a", "s1", "b", "s2", "y", "h", "mi", "se")}
    day, month = (field["a"], field["b"]) if date_format == "dmy" else (field["b"], field["a"])
    iso = pc.binary_join_element_wise(field["y"], pc.utf8_lpad(month, 2, "0"), pc.utf8_lpad(day, 2, "0"), "-")
    clock = pc.binary_join_element_wise(pc.utf8_lpad(field["h"], 2, "0"), field["mi"], ":")
    clock = pc.if_else(pc.equal(field["se"], ""), clock, pc.binary_join_element_wise(clock, field["se"], ":"))
    iso = pc.if_else(pc.equal(field["h"], ""), iso, pc.binary_join_element_wise(iso, clock, " "))
    use = pc.and_(matched, pc.equal(field["s1"], field["s2"])).fill_null(False)
    return pc.if_else(use, iso, array)


def _fast_decimal_comma(array):
    """12,5 and 12,50 as 12.5 and 12.50 (parse_money's reading of a lone comma before 1-2 digits)."""
    comma = pc.match_substring_regex(array, r"^\d{1,12},\d{1,2}$")
    return pc.if_else(comma, pc.replace_substring(array, ",", "."), array)


_FAST_LOCAL = (r"^(?P<a>\d{1,2})(?P<s1>[/.\-])(?P<b>\d{1,2})(?P<s2>[/.\-])(?P<y>\d{4})"
               r"(?:[ T](?P<h>\d{1,2}):(?P<mi>\d\d)(?::(?P<se>\d\d))?)?$")


def _fast_interactions(col, check, n, options):
    tz = options.tz
    check(_text_ok(col("customer_external_id"), 100, required=True))
    check(pc.is_in(col("type"), value_set=pa.array(sorted(INTERACTION_TYPES))))
    occurred_at = _fast_timestamps(_fast_local_dates(col("occurred_at"), options.date_format), check, tz)
    # Future-dated rows take the per-row path, which rejects them (crm.clock).
    check(pc.less_equal(occurred_at, clock.latest_allowed().strftime("%Y-%m-%d %H:%M:%S")))
    check(_text_ok(col("product_sku"), 100))
    quantity = col("quantity")
    quantity_ok = pc.match_substring_regex(quantity, _FAST_QUANTITY)
    check(quantity_ok)
    quantity = pc.cast(pc.if_else(pc.and_(quantity_ok, pc.not_equal(quantity, "")), quantity, "1"), pa.int64())
    amount = _fast_decimal_comma(col("amount"))
    check(pc.match_substring_regex(amount, _FAST_MONEY))
    amount = pc.if_else(pc.equal(amount, ""), pa.scalar(None, pa.string()), amount)
    for name in ("order_ref", "channel"):
        check(_text_ok(col(name), 100))
    check(pc.match_substring_regex(col("notes"), _OPTIONAL_TEXT))
    # Rows without an external_id are keyed by content (content_key), in the per-row path.
    check(_text_ok(col("external_id"), 100, required=True))
    return {"external_id": col("external_id"), "customer_key": col("customer_external_id"), "type": col("type"),
            "occurred_at": occurred_at, "product_key": col("product_sku"), "quantity": quantity,
            "amount": amount, "order_ref": col("order_ref"), "channel": col("channel"), "notes": col("notes")}


def _fast_customers(col, check, n, options):
    check(_text_ok(col("external_id"), 100, required=True))
    email = col("email")
    check(pc.match_substring_regex(email, _FAST_EMAIL))
    check(pc.less_equal(pc.utf8_length(email), 254))
    for name, length in (("name", 200), ("phone", 50), ("company", 200), ("country", 100), ("city", 100),
                         ("owner", 150)):
        check(_text_ok(col(name), length))
    signup = _fast_local_dates(col("signup_date"), options.date_format)
    shape = pc.match_substring_regex(signup, _FAST_DATE)
    check(shape)
    signup = pc.if_else(pc.and_(shape, pc.not_equal(signup, "")), signup, pa.scalar(None, pa.string()))
    try:
        pc.cast(signup, pa.date32())
    except pa.ArrowInvalid:  # an impossible date: flag the batch's dates for the per-row path
        check(pc.equal(col("signup_date"), ""))
    return {"external_id": col("external_id"), "name": col("name"), "email": email, "phone": col("phone"),
            "company": col("company"), "country": col("country"), "city": col("city"), "signup_date": signup,
            "owner_username": col("owner")}


_FAST = {"interactions": _fast_interactions, "customers": _fast_customers}
