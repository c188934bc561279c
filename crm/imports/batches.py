"""A file's records a batch at a time: a vectorised fast path (pyarrow), the per-row path
(crm.imports.rows) for everything else and for every row the fast path flags.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import UTC, datetime

from crm import clock
from crm.imports.formats import FileFormat, _bad_bytes, _Lines, csv_reader, detect_format, utf8_stream
from crm.imports.headers import read_header
from crm.imports.rows import FileSpec
from crm.imports.values import _HOW, INTERACTION_TYPES, MAX_CELL_BYTES, Options, RowError, _json_str
from crm.limits import CUSTOMER, INTERACTION, PRODUCT, USERNAME

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
    check(_text_ok(col("customer_external_id"), CUSTOMER["external_id"], required=True))
    check(pc.is_in(col("type"), value_set=pa.array(sorted(INTERACTION_TYPES))))
    occurred_at = _fast_timestamps(_fast_local_dates(col("occurred_at"), options.date_format), check, tz)
    # Future-dated rows take the per-row path, which rejects them (crm.clock).
    check(pc.less_equal(occurred_at, clock.latest_allowed().strftime("%Y-%m-%d %H:%M:%S")))
    check(_text_ok(col("product_sku"), PRODUCT["sku"]))
    quantity = col("quantity")
    quantity_ok = pc.match_substring_regex(quantity, _FAST_QUANTITY)
    check(quantity_ok)
    quantity = pc.cast(pc.if_else(pc.and_(quantity_ok, pc.not_equal(quantity, "")), quantity, "1"), pa.int64())
    amount = _fast_decimal_comma(col("amount"))
    check(pc.match_substring_regex(amount, _FAST_MONEY))
    amount = pc.if_else(pc.equal(amount, ""), pa.scalar(None, pa.string()), amount)
    for name in ("order_ref", "channel"):
        check(_text_ok(col(name), INTERACTION[name]))
    check(pc.match_substring_regex(col("notes"), _OPTIONAL_TEXT))
    # Rows without an external_id are keyed by content (content_key), in the per-row path.
    check(_text_ok(col("external_id"), INTERACTION["external_id"], required=True))
    return {"external_id": col("external_id"), "customer_key": col("customer_external_id"), "type": col("type"),
            "occurred_at": occurred_at, "product_key": col("product_sku"), "quantity": quantity,
            "amount": amount, "order_ref": col("order_ref"), "channel": col("channel"), "notes": col("notes")}


def _fast_customers(col, check, n, options):
    check(_text_ok(col("external_id"), CUSTOMER["external_id"], required=True))
    email = col("email")
    check(pc.match_substring_regex(email, _FAST_EMAIL))
    check(pc.less_equal(pc.utf8_length(email), CUSTOMER["email"]))
    for name, length in (*((n, CUSTOMER[n]) for n in ("name", "phone", "company", "country", "city")),
                         ("owner", USERNAME)):
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
