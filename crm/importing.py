"""CSV rows -> clean tuples, or a rejection with its reason. No ORM here.

Each :class:`FileSpec` names a file's columns (README, "Import format") and turns one CSV
record into the tuple the importer stages in the database, or raises :class:`RowError` with
a reason a person can act on. Lookups that need the database (does this customer exist?)
happen in :mod:`crm.services`, in SQL, a batch at a time.
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

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


class RowError(ValueError):
    """A row that cannot be loaded; the message is the reason shown to the user."""


class FileError(ValueError):
    """A file that cannot be imported at all (unreadable, missing a required column)."""


def _text(value: str, column: str, max_length: int) -> str:
    value = value.strip()
    if len(value) > max_length:
        raise RowError(f"{column} is longer than {max_length} characters")
    return value


def _decimal(value: str, column: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    if value.startswith("-"):
        if re.fullmatch(r"-0*(\.0*)?", value):
            return "0"
        raise RowError(f"{column} is negative ({value})")
    match = _DECIMAL.match(value)
    if not match:
        raise RowError(f"{column} is not a number ({value[:40]})")
    whole, fraction = match.groups()
    fraction = (fraction or "").rstrip("0")
    if len(fraction) > 2:
        raise RowError(f"{column} has more than 2 decimal places ({value})")
    return f"{int(whole)}.{fraction.ljust(2, '0')}"


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


def _date(value: str, column: str) -> date | None:
    value = value.strip()
    if not value:
        return None
    try:
        if len(value) != 10:
            raise ValueError
        parsed = date.fromisoformat(value)
    except ValueError:
        raise RowError(f"{column} is not a date YYYY-MM-DD ({value[:40]})") from None
    if not 1900 <= parsed.year <= 2100:
        raise RowError(f"{column} is out of range ({value})")
    return parsed


def parse_timestamp(value: str, column: str = "occurred_at", tz=UTC) -> datetime:
    """Parse a contract date or datetime to an aware UTC datetime; naive values are in ``tz``."""
    value = value.strip()
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

    ``columns`` are the staged tuple's fields after the row number, in order; ``parse``
    returns them. ``optional`` columns absent from a file are not written on update, so a
    file without an ``owner`` column keeps the owners already stored.
    """

    kind: str
    key: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    columns: tuple[str, ...]
    parse: Callable[[dict, tuple[str, ...], object], tuple]
    always_written: tuple[str, ...] = field(default=())

    @property
    def known(self) -> tuple[str, ...]:
        return self.required + self.optional

    def check_header(self, header: list[str]) -> tuple[str, ...]:
        """Return the extra columns; raise FileError when the header cannot be imported."""
        if not header or all(not name.strip() for name in header):
            raise FileError(f"{self.kind} file has no header row")
        names = [name.strip() for name in header]
        for name in names:
            if any("\udc80" <= ch <= "\udcff" for ch in name):
                raise FileError(f"{self.kind} file header is not valid UTF-8")
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
            elif column in self.always_written or column in names or self._source_of(column) in names:
                out.append(column)
        return tuple(out)

    @staticmethod
    def _source_of(column: str) -> str:
        return {"owner_username": "owner", "customer_key": "customer_external_id", "product_key": "product_sku"}.get(
            column, column)


def _parse_customer(record: dict, extra: tuple[str, ...], tz) -> tuple:
    external_id = _text(record["external_id"], "external_id", 100)
    if not external_id:
        raise RowError("external_id is empty")
    email = _text(record.get("email", ""), "email", 254)
    if email and not _EMAIL.match(email):
        raise RowError(f"email is not an e-mail address ({email[:60]})")
    return (
        external_id,
        _text(record.get("name", ""), "name", 200),
        email,
        _text(record.get("phone", ""), "phone", 50),
        _text(record.get("company", ""), "company", 200),
        _text(record.get("country", ""), "country", 100),
        _text(record.get("city", ""), "city", 100),
        _date(record.get("signup_date", ""), "signup_date"),
        _text(record.get("owner", ""), "owner", 150),
        _attributes(record, extra),
    )


def _parse_product(record: dict, extra: tuple[str, ...], tz) -> tuple:
    sku = _text(record["sku"], "sku", 100)
    if not sku:
        raise RowError("sku is empty")
    name = _text(record["name"], "name", 300)
    if not name:
        raise RowError("name is empty")
    tags = ";".join(t for t in (s.strip() for s in record.get("tags", "").split(";")) if t)
    if len(tags) > 500:
        raise RowError("tags are longer than 500 characters")
    return (
        sku,
        name,
        _text(record.get("category", ""), "category", 200),
        _decimal(record.get("price", ""), "price"),
        record.get("description", "").strip(),
        tags,
        _bool(record.get("active", ""), "active", True),
        _attributes(record, extra),
    )


def content_key(parts: tuple) -> str:
    """A stable key for an interaction row that has no external_id (same content, same key)."""
    digest = hashlib.sha1("\x1f".join("" if p is None else str(p) for p in parts).encode(),
                          usedforsecurity=False).hexdigest()
    return f"h-{digest[:32]}"


def _parse_interaction(record: dict, extra: tuple[str, ...], tz) -> tuple:
    customer_key = _text(record["customer_external_id"], "customer_external_id", 100)
    if not customer_key:
        raise RowError("customer_external_id is empty")
    kind = record["type"].strip().lower()
    if kind not in INTERACTION_TYPES:
        raise RowError(f"type {record['type'][:40]!r} is not one of {', '.join(sorted(INTERACTION_TYPES))}")
    occurred_at = parse_timestamp(record["occurred_at"], tz=tz)
    product_key = _text(record.get("product_sku", ""), "product_sku", 100)
    quantity = _quantity(record.get("quantity", ""))
    amount = _decimal(record.get("amount", ""), "amount")
    order_ref = _text(record.get("order_ref", ""), "order_ref", 100)
    channel = _text(record.get("channel", ""), "channel", 100)
    notes = record.get("notes", "").strip()
    attributes = _attributes(record, extra)
    external_id = _text(record.get("external_id", ""), "external_id", 100)
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
    parse=_parse_customer,
    always_written=("external_id",),
)
PRODUCTS = FileSpec(
    kind="products",
    key="sku",
    required=("sku", "name"),
    optional=("category", "price", "description", "tags", "active"),
    columns=("sku", "name", "category", "price", "description", "tags", "active", "attributes"),
    parse=_parse_product,
    always_written=("sku", "name"),
)
INTERACTIONS = FileSpec(
    kind="interactions",
    key="external_id",
    required=("customer_external_id", "type", "occurred_at"),
    optional=("product_sku", "quantity", "amount", "order_ref", "external_id", "channel", "notes"),
    columns=("external_id", "customer_key", "type", "occurred_at", "product_key", "quantity", "amount",
             "order_ref", "channel", "notes", "attributes"),
    parse=_parse_interaction,
    # A missing quantity column means quantity 1 (the contract's default), so it is always written.
    always_written=("external_id", "customer_key", "type", "occurred_at", "quantity"),
)
SPECS = {spec.kind: spec for spec in (CUSTOMERS, PRODUCTS, INTERACTIONS)}


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


@dataclass
class ParsedRow:
    row: int              # the line of the file where the record starts (the header is line 1)
    values: tuple | None  # the staged tuple, or None when rejected
    raw: list[str]
    reason: str = ""


def read_rows(stream, spec: FileSpec, tz=UTC):
    """Yield a ParsedRow per record of an open text stream (opened with ``surrogateescape``).

    The first item yielded is the header's tuple of extra columns. Raises FileError when
    the header cannot be imported, before any row is yielded.
    """
    reader = csv.reader(stream)
    try:
        header = next(reader)
    except StopIteration:
        raise FileError(f"{spec.kind} file is empty") from None
    except csv.Error as exc:
        raise FileError(f"{spec.kind} file header cannot be read: {exc}") from None
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    extra = spec.check_header(header)
    names = [name.strip() for name in header]
    width = len(names)
    yield header
    parse = spec.parse
    line = reader.line_num + 1
    while True:
        try:
            raw = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield ParsedRow(line, None, [], f"unreadable CSV record: {exc}")
            line = reader.line_num + 1
            continue
        start, line = line, reader.line_num + 1
        if not raw:  # a blank line is not a record
            continue
        if len(raw) != width:
            yield ParsedRow(start, None, raw, f"expected {width} columns, found {len(raw)}")
            continue
        bad = _bad_bytes(raw)
        if bad:
            yield ParsedRow(start, None, raw, bad)
            continue
        record = dict(zip(names, raw))
        try:
            yield ParsedRow(start, parse(record, extra, tz), raw)
        except RowError as exc:
            yield ParsedRow(start, None, raw, str(exc))
