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
            if "\x00" in name:  # every other byte NUL: UTF-16 text, which would match no column
                raise FileError(f"{self.kind} file header contains NUL bytes: the file is not UTF-8 "
                                "(UTF-16?); save it as UTF-8")
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
    future = clock.future_reason(occurred_at, tz=tz)
    if future:
        raise RowError(future)
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


def read_header(reader, spec: FileSpec) -> list[str]:
    """Read and check the header row from a ``csv.reader``; FileError when it cannot be imported."""
    try:
        header = next(reader)
    except StopIteration:
        raise FileError(f"{spec.kind} file is empty") from None
    except csv.Error as exc:
        raise FileError(f"{spec.kind} file header cannot be read: {exc}") from None
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    spec.check_header(header)
    return header


# --- Batches: a vectorised fast path, the per-row path above for everything else -----------
#
# Per-row parsing costs ~20-30 µs a row, far over the import's budget (~4 µs a row next to
# the database's work). A batch of plain lines (no quotes, CR, NUL, blank lines or invalid
# UTF-8: one line = one record, so line numbers are positions) is parsed by pyarrow's CSV
# reader and checked column by column. The column checks are deliberately conservative: a
# row that passes them would pass ``spec.parse`` with the same values; every row they flag,
# and every batch that is not plain, goes through ``spec.parse``, so the rejection reasons,
# line numbers and staged values are those of the per-row path.

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

    ``rows`` are staged tuples ``(row_no, *spec.columns)`` from the per-row path; ``table``
    holds the fast path's staged rows as pyarrow columns (``row_no`` first, ``occurred_at``
    as UTC text ``YYYY-MM-DD HH:MM:SS``); ``rejected`` are ``(row_no, reason, raw)``.
    """

    rows_read: int
    rows: list
    rejected: list
    table: object = None
    raws: dict = field(default_factory=dict)
    _raw_table: object = None
    _first_row: int = 0

    def raw(self, row_no: int) -> list[str]:
        if row_no in self.raws:
            return self.raws[row_no]
        i = row_no - self._first_row
        return [column[i].as_py() for column in self._raw_table.columns]


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
        if (not prefix or b'"' in prefix or b"\r" in prefix or b"\x00" in prefix or b"\n\n" in prefix
                or prefix.startswith(b"\n")):
            return None
        return prefix

    def take(self, size: int):
        self.pos += size


def more_rows_than(binary, limit: int) -> bool:
    """Whether a CSV byte stream holds more than ``limit`` records after its header row.

    Records are counted as the import counts ``rows_read`` (blank lines are not records, an
    unreadable record is one). Counting line breaks bounds that from above at memory speed, so
    a file under the limit costs one pass of ``bytes.count``; only a file with more lines than
    the limit is parsed (a quoted cell may span lines), and only up to the limit.
    """
    breaks, previous = 0, b""
    for chunk in iter(lambda: binary.read(_Lines.CHUNK), b""):
        breaks += chunk.count(b"\n") + chunk.count(b"\r") - chunk.count(b"\r\n")
        if previous.endswith(b"\r") and chunk.startswith(b"\n"):
            breaks -= 1
        previous = chunk
    if breaks <= limit:  # the header takes a line; a last line may lack its break
        return False
    binary.seek(0)
    reader = csv.reader(_Lines(binary))
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


def read_batches(binary, spec: FileSpec, batch_size: int, tz=UTC):
    """Yield the header (list), then a :class:`Batch` per ``batch_size`` records of a binary stream.

    Raises FileError when the header cannot be imported, before any batch is yielded.
    """
    lines = _Lines(binary)
    reader = csv.reader(lines)
    header = read_header(reader, spec)
    extra = spec.check_header(header)
    names = [name.strip() for name in header]
    yield header
    fast = _FAST.get(spec.kind) if pa is not None else None
    line = reader.line_num + 1
    while True:
        prefix = lines.plain_prefix(batch_size) if fast is not None else None
        if prefix is not None:
            batch = _fast_batch(prefix, line, names, extra, spec, fast, tz)
            if batch is not None:
                lines.take(len(prefix))
                line += batch.rows_read
                reader = csv.reader(lines)  # line_num restarts; ``line`` carries the count
                yield batch
                continue
        batch, line = _slow_batch(reader, lines, line, batch_size, names, extra, spec, tz)
        if batch.rows_read == 0:
            return
        yield batch


HUGE_CELL = f"a cell is longer than {MAX_CELL_BYTES} characters"


def _csv_error_reason(exc: csv.Error) -> str:
    # The same reason whichever path read the row (the fast path checks the length itself).
    if str(exc).startswith("field larger than field limit"):
        return HUGE_CELL
    return f"unreadable CSV record: {exc}"


def _slow_batch(reader, lines, line, batch_size, names, extra, spec, tz):
    base = line - 1 - reader.line_num  # reader.line_num counts from where this reader started
    batch = Batch(0, [], [])
    width = len(names)
    parse = spec.parse
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
        try:
            batch.rows.append((start, *parse(dict(zip(names, raw)), extra, tz)))
            batch.raws[start] = raw
        except RowError as exc:
            batch.rejected.append((start, str(exc), raw))
    return batch, line


def _fast_batch(prefix, first_row, names, extra, spec, fast, tz):
    """Parse plain lines column-wise; None when pyarrow cannot read them as they are."""
    width = len(names)
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(prefix),
            read_options=pa_csv.ReadOptions(column_names=[f"c{i}" for i in range(width)],
                                            block_size=max(len(prefix) + 1, 1 << 20)),
            parse_options=pa_csv.ParseOptions(quote_char=False, double_quote=False, newlines_in_values=False,
                                              ignore_empty_lines=False),
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
    staged = fast(col, check, n, tz)
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
        raw = batch.raw(row)
        try:
            batch.rows.append((row, *spec.parse(dict(zip(names, raw)), extra, tz)))
            batch.raws[row] = raw
        except RowError as exc:
            batch.rejected.append((row, str(exc), raw))
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


def _fast_interactions(col, check, n, tz):
    check(_text_ok(col("customer_external_id"), 100, required=True))
    check(pc.is_in(col("type"), value_set=pa.array(sorted(INTERACTION_TYPES))))
    occurred_at = _fast_timestamps(col("occurred_at"), check, tz)
    # Future-dated rows take the per-row path, which rejects them (crm.clock).
    check(pc.less_equal(occurred_at, clock.latest_allowed().strftime("%Y-%m-%d %H:%M:%S")))
    check(_text_ok(col("product_sku"), 100))
    quantity = col("quantity")
    quantity_ok = pc.match_substring_regex(quantity, _FAST_QUANTITY)
    check(quantity_ok)
    quantity = pc.cast(pc.if_else(pc.and_(quantity_ok, pc.not_equal(quantity, "")), quantity, "1"), pa.int64())
    amount = col("amount")
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


def _fast_customers(col, check, n, tz):
    check(_text_ok(col("external_id"), 100, required=True))
    email = col("email")
    check(pc.match_substring_regex(email, _FAST_EMAIL))
    check(pc.less_equal(pc.utf8_length(email), 254))
    for name, length in (("name", 200), ("phone", 50), ("company", 200), ("country", 100), ("city", 100),
                         ("owner", 150)):
        check(_text_ok(col(name), length))
    signup = col("signup_date")
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
