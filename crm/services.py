"""Writes of the CRM domain: imports, logging interactions, and the role groups.

The import is one service behind every door (the ``import_data`` command, the admin and web
upload, the API, ``seed_demo``). It streams each file in batches, validates them
(:mod:`crm.importing`: column-wise with pyarrow, row by row for what that flags), stages each
batch of good rows in a temporary table (COPY on PostgreSQL), resolves keys, finds the stored
rows and merges in SQL, one transaction per batch: a crash or Ctrl-C leaves whole batches
only, and re-running the same file completes it without duplicates. Figures: BENCHMARKS.md.
"""
from __future__ import annotations

import csv
import io
import logging
import os
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from crm import audit, clock, importing
from crm.heartbeat import Heartbeat, heartbeat_seconds, stale_after
from crm.models import AuditEvent, Customer, ImportFile, ImportRun, ImportSource, Interaction, Product

log = logging.getLogger(__name__)

ORDER = ("customers", "products", "interactions")


class ImportFailed(Exception):
    """The import could not run at all (missing file, unreadable header, missing column)."""


class BackgroundUnavailable(Exception):
    """The task queue (broker) cannot be reached. The work is saved and queued; it is sent when
    the broker is back (beat's sweep, or a worker starting up)."""


@dataclass(frozen=True)
class _Resolve:
    """A staged key column looked up in another table, a batch at a time."""

    key_column: str  # staged column holding the key
    table: str
    table_key: str
    reason: str  # {value} is the key
    required: bool  # unknown: reject the row (else skip the field with a warning)
    dry_keys: str = ""  # the temp table of keys a dry run would have created in ``table``


@dataclass(frozen=True)
class _Target:
    table: str
    key: str
    # staged column -> target column
    mapping: dict
    resolves: tuple
    has_updated_at: bool
    has_created_by: bool


_TARGETS = {
    "customers": _Target(
        table=Customer._meta.db_table, key="external_id",
        mapping={"external_id": "external_id", "name": "name", "email": "email", "phone": "phone",
                 "company": "company", "country": "country", "city": "city", "signup_date": "signup_date",
                 "owner_username": "owner_id", "attributes": "attributes"},
        resolves=(_Resolve("owner_username", get_user_model()._meta.db_table, "username",
                           "unknown owner {value!r}: no user with that username: field skipped", required=False),),
        has_updated_at=True, has_created_by=False,
    ),
    "products": _Target(
        table=Product._meta.db_table, key="sku",
        mapping={"sku": "sku", "name": "name", "category": "category", "price": "price",
                 "description": "description", "tags": "tags", "active": "active", "attributes": "attributes"},
        resolves=(), has_updated_at=True, has_created_by=False,
    ),
    "interactions": _Target(
        table=Interaction._meta.db_table, key="external_id",
        mapping={"external_id": "external_id", "customer_key": "customer_id", "type": "type",
                 "occurred_at": "occurred_at", "product_key": "product_id", "quantity": "quantity",
                 "amount": "amount", "order_ref": "order_ref", "channel": "channel", "notes": "notes",
                 "attributes": "attributes"},
        resolves=(_Resolve("customer_key", Customer._meta.db_table, "external_id",
                           "unknown customer {value!r}: not in this import's customers nor already stored",
                           required=True, dry_keys="crm_dry_customers"),
                  _Resolve("product_key", Product._meta.db_table, "sku",
                           "unknown product {value!r}: not in this import's products nor already stored: "
                           "field skipped", required=False, dry_keys="crm_dry_products")),
        has_updated_at=False, has_created_by=True,
    ),
}
# What a dry run would have created, so later files of the same dry run resolve against it.
_DRY_KEYS = {"customers": "crm_dry_customers", "products": "crm_dry_products"}

# Staging column types; the same names as crm.importing's FileSpec.columns.
_PG_TYPES = {"signup_date": "date", "price": "numeric", "active": "boolean", "occurred_at": "timestamptz",
             "quantity": "bigint", "amount": "numeric", "attributes": "jsonb"}
_SQLITE_TYPES = {"signup_date": "text", "price": "numeric", "active": "integer", "occurred_at": "text",
                 "quantity": "integer", "amount": "numeric", "attributes": "text"}


def _stage_name(kind):
    return f"crm_stage_{kind}"


class _Stager:
    """Temporary tables of one import on one connection, and the SQL that merges a batch.

    ``dry_run``: the same checks and counts, but the merge writes nothing; the keys it would have
    created go to a temporary table that later files of the run resolve against.
    """

    def __init__(self, kind: str, spec: importing.FileSpec, written: tuple[str, ...], user_id,
                 dry_run: bool = False):
        self.kind, self.spec, self.written = kind, spec, written
        self.target = _TARGETS[kind]
        self.user_id = user_id
        self.dry_run = dry_run
        self.pg = connection.vendor == "postgresql"
        self.stage = _stage_name(kind)
        self.seen = f"crm_seen_{kind}"
        self.resolved = f"crm_resolved_{kind}"
        # Resolved keys (customer, product, owner) are joined in the merge, not copied into the
        # staging rows: an UPDATE of the staging table would rewrite every row of the batch.
        self.joins = [(i, r) for i, r in enumerate(self.target.resolves) if r.key_column in written]

    def create(self, cursor):
        types = _PG_TYPES if self.pg else _SQLITE_TYPES
        cols = ["row_no bigint"] + [f"{c} {types.get(c, 'text')}" for c in self.spec.columns] + ["keep text"]
        resolved = cols + [f"r{i} bigint" for i, _ in self.joins] + ["target_id bigint", "changed boolean"]
        if self.pg:
            # The "seen" keys of a 1M-row file outgrow the default 8 MB of local buffers; this only
            # takes effect before the session's first temporary table, so later imports keep it.
            cursor.execute("SET temp_buffers = '128MB'")
        else:
            # SQLite's default 2 MB page cache makes every random index insertion of a large
            # import a read from the OS; the cache is per connection and bounded, so memory stays
            # flat whatever the file size (64 + 32 MB here, which keeps a whole import process
            # under 500 MB even on a large, fragmented database). The default is restored in drop().
            cursor.execute("PRAGMA cache_size")
            self._cache_size = cursor.fetchone()[0]
            cursor.execute("PRAGMA cache_size = -65536")
            cursor.execute("PRAGMA temp.cache_size = -32768")  # the "seen" keys of the whole file
        self.drop(cursor)
        cursor.execute(f"CREATE TEMP TABLE {self.stage} ({', '.join(cols)})")
        cursor.execute(f"CREATE TEMP TABLE {self.resolved} ({', '.join(resolved)})")
        cursor.execute(f"CREATE TEMP TABLE {self.seen} (key text PRIMARY KEY, row_no bigint)")

    def drop(self, cursor):
        for table in (self.stage, self.resolved, self.seen):
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
        if not self.pg and getattr(self, "_cache_size", None) is not None:
            cursor.execute(f"PRAGMA cache_size = {int(self._cache_size)}")
            cursor.execute(f"PRAGMA temp.cache_size = {int(self._cache_size)}")
            self._cache_size = None

    def _sqlite_value(self, column, value):
        if column == "occurred_at":
            return value.replace(tzinfo=None).isoformat(sep=" ")
        if column == "signup_date" and value is not None:
            return value.isoformat()
        return value

    def analyze_target(self, cursor):
        """Refresh the planner's statistics of the target table (it grows as the import runs)."""
        if self.pg:
            cursor.execute(f"ANALYZE {self.target.table}")

    def load(self, cursor, batch):
        """Put one batch's good rows (an :class:`importing.Batch`) in the staging table."""
        names = ["row_no", *self.spec.columns]
        row_names = [*names, "keep"]  # per-row tuples end with the columns a warning skipped
        table = batch.table if batch.table is not None and batch.table.num_rows else None
        if self.pg:
            # TRUNCATE, not DELETE: deleted rows would stay as dead tuples that every later
            # batch's scans of the staging table wade through.
            cursor.execute(f"TRUNCATE {self.stage}")
            raw = cursor.cursor if hasattr(cursor, "cursor") else cursor
            if table is not None:
                if "occurred_at" in table.column_names:
                    at = table.column_names.index("occurred_at")
                    table = table.set_column(at, "occurred_at", importing.pc.binary_join_element_wise(
                        table.column(at), "+00", ""))
                out = io.BytesIO()
                # pyarrow quotes every string and leaves NULLs empty: COPY's CSV format reads
                # "" as an empty string and an empty field as NULL.
                importing.pa_csv.write_csv(table, out, importing.pa_csv.WriteOptions(include_header=False))
                with raw.copy(f"COPY {self.stage} ({', '.join(names)}) FROM STDIN (FORMAT csv)") as copy:
                    copy.write(out.getbuffer())
            if batch.rows:
                with raw.copy(f"COPY {self.stage} ({', '.join(row_names)}) FROM STDIN") as copy:
                    for row in batch.rows:
                        copy.write_row(row)
            # No ANALYZE of the staging table (it cost ~10% of a batch): with hash and merge joins
            # off the planner probes the target's unique index per staged row whatever the
            # statistics say, and that is right because a batch is small next to the stored
            # table; the cost model would prefer hashing the whole table once the batch is a few
            # percent of it, which makes each batch cost O(table size).
            cursor.execute("SET LOCAL work_mem = '64MB'")
            cursor.execute("SET LOCAL enable_hashjoin = off")
            cursor.execute("SET LOCAL enable_mergejoin = off")
            # Safe to lose on a crash: a server crash forgets at most the last few commits
            # (never half a batch), and re-running the import re-creates them idempotently;
            # ImportRun records the run as unfinished. It saves a WAL flush per batch.
            cursor.execute("SET LOCAL synchronous_commit = off")
            return len(batch.rows) + (table.num_rows if table is not None else 0)
        cursor.execute(f"DELETE FROM {self.stage}")
        if table is not None:
            marks = ", ".join(["%s"] * len(names))
            cursor.executemany(f"INSERT INTO {self.stage} ({', '.join(names)}) VALUES ({marks})",
                               zip(*(column.to_pylist() for column in table.columns)))
        if batch.rows:
            conv = [i for i, c in enumerate(row_names) if c in ("occurred_at", "signup_date")]
            rows = batch.rows
            if conv:
                def fix(row):
                    row = list(row)
                    for i in conv:
                        row[i] = self._sqlite_value(row_names[i], row[i])
                    return row
                rows = [fix(r) for r in rows]
            marks = ", ".join(["%s"] * len(row_names))
            cursor.executemany(f"INSERT INTO {self.stage} ({', '.join(row_names)}) VALUES ({marks})", rows)
        return len(batch.rows) + (table.num_rows if table is not None else 0)

    def reject_duplicates(self, cursor, staged: int):
        """Rows whose key already came earlier in this file: [(row_no, reason)]."""
        key = self.spec.key
        ignore = "" if self.pg else "OR IGNORE "
        conflict = " ON CONFLICT (key) DO NOTHING" if self.pg else ""
        cursor.execute(
            f"INSERT {ignore}INTO {self.seen} (key, row_no) SELECT {key}, MIN(row_no) FROM {self.stage} "
            f"GROUP BY {key}{conflict}"
        )
        if cursor.rowcount == staged:  # every key is new to the file: no duplicate to look for
            return []
        cursor.execute(
            f"SELECT s.row_no, s.{key}, seen.row_no FROM {self.stage} s JOIN {self.seen} seen ON seen.key = s.{key} "
            f"WHERE seen.row_no <> s.row_no"
        )
        what = "external_id" if self.kind != "products" else "sku"
        out = []
        for row_no, value, first in cursor.fetchall():
            if value.startswith("h-") and self.kind == "interactions":
                reason = f"duplicate of row {first}: same content and no external_id to tell them apart"
            else:
                reason = f"duplicate {what} {value!r}: already on row {first} of this file"
            out.append((row_no, reason))
        return out

    def _ref(self, i, resolve):
        """The SQL of a resolved id in resolve()'s join (-1: a key a dry run would have created)."""
        if self.dry_run and resolve.dry_keys:
            return f"COALESCE(r{i}.id, CASE WHEN d{i}.key IS NOT NULL THEN -1 END)"
        return f"r{i}.id"

    def _kept(self, column, keep_sql):
        """SQL: true when a warning skipped ``column`` of the row (``keep_sql``: its keep column)."""
        find = "strpos" if self.pg else "instr"
        return f"{find}(COALESCE({keep_sql}, ''), ',{column},') > 0"

    def resolve(self, cursor, skips_fields: bool = False):
        """Join the batch once to everything the merge needs: resolved ids, the stored row, changed?

        One pass over the customer, product, owner and target indexes; the rejection of
        unknown keys and the UPDATE and INSERT then read this table alone. On a re-import of
        unchanged rows nothing else touches the target table. A field skipped by a warning (an
        unknown owner or product, or ``keep``) does not count as a change.
        """
        t = self.target
        cursor.execute(f"DELETE FROM {self.resolved}")
        written = [c for c in self.written if c != self.spec.key]
        distinct = "IS DISTINCT FROM" if self.pg else "IS NOT"
        refs = {r.key_column: (i, r, self._ref(i, r)) for i, r in self.joins}
        terms = []
        for c in written:
            if c in refs:
                i, r, ref = refs[c]
                term = f"t.{t.mapping[c]} {distinct} {ref}"
                if not r.required:
                    term = f"(NOT (s.{c} <> '' AND {ref} IS NULL) AND {term})"
            else:
                term = f"t.{t.mapping[c]} {distinct} s.{c}"
            if skips_fields:
                term = f"(NOT {self._kept(c, 's.keep')} AND {term})"
            terms.append(term)
        changed = " OR ".join(terms) or "1 = 0"
        columns = ["row_no", *self.spec.columns, "keep"]
        joins = ""
        for i, r in self.joins:
            joins += f" LEFT JOIN {r.table} r{i} ON r{i}.{r.table_key} = s.{r.key_column}"
            if self.dry_run and r.dry_keys:
                joins += f" LEFT JOIN {r.dry_keys} d{i} ON d{i}.key = s.{r.key_column}"
        cursor.execute(
            f"INSERT INTO {self.resolved} SELECT {', '.join(f's.{c}' for c in columns)}"
            f"{''.join(', ' + ref for _i, _r, ref in refs.values())}, t.id, t.id IS NOT NULL AND ({changed}) "
            f"FROM {self.stage} s{joins} LEFT JOIN {t.table} t ON t.{t.key} = s.{self.spec.key}"
        )

    def unresolved(self, cursor):
        """Rows whose customer, product or owner key is unknown: ([(row_no, reason)] rejected,
        [(row_no, reason)] loading with that field skipped)."""
        rejected, warned = [], []
        for i, r in self.joins:
            cursor.execute(f"SELECT row_no, {r.key_column} FROM {self.resolved} "
                           f"WHERE {r.key_column} <> '' AND r{i} IS NULL")
            found = [(row_no, r.reason.format(value=value)) for row_no, value in cursor.fetchall()]
            (rejected if r.required else warned).extend(found)
        return rejected, warned

    def delete_rows(self, cursor, row_numbers, table=None):
        if not row_numbers:
            return
        numbers = sorted(set(row_numbers))
        for start in range(0, len(numbers), 500):
            chunk = numbers[start:start + 500]
            cursor.execute(f"DELETE FROM {table or self.stage} WHERE row_no IN ({', '.join(['%s'] * len(chunk))})",
                           chunk)

    def _source(self, column):
        """The SQL expression, over the resolved table ``r``, that gives a staged column's target value."""
        for i, r in self.joins:
            if r.key_column == column:
                return f"r.r{i}"
        return f"r.{column}"

    def _update_value(self, column, skips_fields):
        """The UPDATE's value of a column: the stored one where a warning skipped the field."""
        t = self.target
        value = self._source(column)
        stored = f"{t.table}.{t.mapping[column]}"
        for i, r in self.joins:
            if r.key_column == column and not r.required:
                value = f"CASE WHEN r.{column} <> '' AND r.r{i} IS NULL THEN {stored} ELSE {value} END"
        if skips_fields:
            value = f"CASE WHEN {self._kept(column, 'r.keep')} THEN {stored} ELSE {value} END"
        return value

    def merge(self, cursor, now, skips_fields: bool = False):
        """Update changed stored rows, insert new ones; return (created, updated).

        A dry run counts them instead, and notes the keys it would have created.
        """
        t = self.target
        cursor.execute(f"SELECT SUM(CASE WHEN changed THEN 1 ELSE 0 END), "
                       f"SUM(CASE WHEN target_id IS NULL THEN 1 ELSE 0 END) FROM {self.resolved}")
        to_update, to_insert = (n or 0 for n in cursor.fetchone())
        if self.dry_run:
            if self.kind in _DRY_KEYS and to_insert:
                ignore = "" if self.pg else "OR IGNORE "
                conflict = " ON CONFLICT (key) DO NOTHING" if self.pg else ""
                cursor.execute(f"INSERT {ignore}INTO {_DRY_KEYS[self.kind]} (key) SELECT {self.spec.key} "
                               f"FROM {self.resolved} WHERE target_id IS NULL{conflict}")
            return to_insert, to_update
        written = [c for c in self.written if c != self.spec.key]
        now_value = now if self.pg else now.replace(tzinfo=None).isoformat(sep=" ")
        updated = created = 0
        if written and to_update:
            sets = [f"{t.mapping[c]} = {self._update_value(c, skips_fields)}" for c in written]
            if t.has_updated_at:
                sets.append("updated_at = %s")
            cursor.execute(
                f"UPDATE {t.table} SET {', '.join(sets)} FROM {self.resolved} r "
                f"WHERE {t.table}.id = r.target_id AND r.changed",
                [now_value] if t.has_updated_at else [],
            )
            updated = max(cursor.rowcount, 0)
        if not to_insert:
            return created, updated
        columns = [t.mapping[c] for c in self.written]
        values = [self._source(c) for c in self.written]
        params = []
        defaults = self._insert_defaults()
        for column, value in defaults.items():
            columns.append(column)
            values.append("%s")
            params.append(value)
        columns.append("created_at")
        values.append("%s")
        params.append(now_value)
        if t.has_updated_at:
            columns.append("updated_at")
            values.append("%s")
            params.append(now_value)
        if t.has_created_by:
            columns.append("created_by_id")
            values.append("%s")
            params.append(self.user_id)
        # File order, not (customer, occurred_at): files usually come sorted by key or time, and
        # file order keeps the pk and the three external_id indexes appending at their right edge;
        # sorting by customer measured no faster (noisy) and scatters those four.
        order = "r.row_no"
        cursor.execute(
            f"INSERT INTO {t.table} ({', '.join(columns)}) SELECT {', '.join(values)} FROM {self.resolved} r "
            # A concurrent import may have stored a key since resolve(): the unique index skips
            # it. ("WHERE ... " before ON CONFLICT also resolves SQLite's parsing ambiguity.)
            f"WHERE r.target_id IS NULL ORDER BY {order} ON CONFLICT ({t.key}) DO NOTHING",
            params,
        )
        created = max(cursor.rowcount, 0)
        return created, updated

    def _insert_defaults(self):
        """Values for target columns the file does not provide (NOT NULL columns need one)."""
        defaults = {
            "customers": {"name": "", "email": "", "phone": "", "company": "", "country": "", "city": "",
                          "attributes": "{}"},
            "products": {"category": "", "description": "", "tags": "", "active": True, "attributes": "{}"},
            "interactions": {"order_ref": "", "channel": "", "notes": "", "attributes": "{}"},
        }[self.kind]
        provided = {self.target.mapping[c] for c in self.written}
        return {k: v for k, v in defaults.items() if k not in provided}


def _dry_tables(cursor, create: bool):
    for table in _DRY_KEYS.values():
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
        if create:
            cursor.execute(f"CREATE TEMP TABLE {table} (key text PRIMARY KEY)")


REJECTED, WARNING = "rejected", "warning"


class _Rejects:
    """The NAME.rejected.csv of one file: its rejected rows and the rows that loaded with a
    warning (``outcome``), with every reason; written only when there is one."""

    def __init__(self, path: Path, header: list[str]):
        self.path, self.header = path, header
        self.count = self.warned = 0
        self._file = None
        self._writer = None
        if path.exists():
            path.unlink()

    def add(self, row: int, outcome: str, reason: str, raw: list[str]):
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", newline="", encoding="utf-8", errors="backslashreplace")
            self._writer = csv.writer(self._file)
            self._writer.writerow(["row", "outcome", "reason", *self.header])
        self._writer.writerow([row, outcome, reason, *raw])
        if outcome == REJECTED:
            self.count += 1
        else:
            self.warned += 1

    def close(self):
        if self._file is not None:
            self._file.close()


def rejected_path_for(path: Path, rejected_dir: Path | None = None, dry_run: bool = False) -> Path:
    """Where a file's rejected rows go: NAME.rejected.csv (a dry run's: NAME.dry-run.rejected.csv,
    so it never replaces the report of a real import)."""
    name = path.name[:-4] if path.name.lower().endswith(".csv") else path.name
    return (rejected_dir or path.parent) / f"{name}{'.dry-run' if dry_run else ''}.rejected.csv"


def row_limit_message(kind: str) -> str:
    return (f"the {kind} file has more than {settings.IMPORT_MAX_ROWS:,} rows, the limit (IMPORT_MAX_ROWS); "
            "split it into smaller files")


@dataclass
class _Checked:
    """One file of an import after its header was read (or failed to be)."""

    kind: str
    path: Path
    name: str  # what messages call it: the file's own name, never a server path
    fmt: importing.FileFormat | None = None
    header: importing.Header | None = None
    raw_header: list | None = None
    error: str = ""


def _check_file(kind: str, path: Path, name: str, mapping: dict, apply_suggestions: bool) -> _Checked:
    checked = _Checked(kind, path, name)
    spec = importing.SPECS[kind]
    if not path.exists():
        checked.error = f"{kind} file {name} does not exist"
        return checked
    if not path.is_file():
        checked.error = f"{kind} file {name} is not a file"
        return checked
    try:
        with open(path, "rb") as binary:
            checked.fmt = fmt = importing.detect_format(binary)
            lines = importing._Lines(importing.utf8_stream(binary, fmt.encoding))
            reader = importing.csv_reader(lines, fmt)
            try:
                checked.header = importing.read_header(reader, spec, mapping, apply_suggestions)
            except importing.FileError as exc:
                checked.error = f"{kind} file {name} ({fmt.describe()}): {exc}"
                binary.seek(0)
                first = next(importing.csv_reader(importing._Lines(importing.utf8_stream(binary, fmt.encoding)),
                                                  fmt), [])
                checked.raw_header = [c.strip().lstrip("\ufeff") for c in first]
                return checked
            binary.seek(0)
            if importing.more_rows_than(binary, settings.IMPORT_MAX_ROWS, fmt):
                checked.error = f"{kind} file {name}: {row_limit_message(kind)}"
    except (OSError, csv.Error) as exc:
        checked.error = f"{kind} file {name} cannot be read: {getattr(exc, 'strerror', None) or exc}"
    return checked


def source_settings(source_name: str) -> ImportSource | None:
    """The saved mapping and date format of an upload source, or None."""
    return ImportSource.objects.filter(name=source_name).first() if source_name else None


def save_source(name: str, *, mapping: dict, date_format: str, user=None) -> ImportSource:
    """Save (or replace) an upload source's column mapping and date format."""
    source, _ = ImportSource.objects.update_or_create(
        name=name, defaults={"mapping": {k: v for k, v in mapping.items() if v}, "date_format": date_format,
                             "updated_by": user})
    return source


def _mappings(run: ImportRun) -> tuple[dict, str]:
    """The column mapping per kind and the date format an import uses: what it asks for, else
    what its source saved, else none and ISO."""
    saved = source_settings(run.source_name)
    mapping = {kind: dict((saved.mapping if saved else {}).get(kind, {})) for kind in ORDER}
    for kind, asked in (run.mapping or {}).items():
        if kind in mapping and isinstance(asked, dict):
            mapping[kind] = {str(k): str(v) for k, v in asked.items()}
    date_format = run.date_format or (saved.date_format if saved else "") or "iso"
    return mapping, date_format


def _check_files(run: ImportRun, files: dict, names: dict, mapping: dict) -> dict:
    """Read every file's format and header before anything is written, and record them on the
    run's ImportFile rows: {kind: _Checked}. Raises ImportFailed naming every file's problem."""
    checked = {}
    for kind, path in files.items():
        try:
            importing.check_mapping(importing.SPECS[kind], mapping.get(kind, {}))
        except importing.FileError as exc:
            checked[kind] = _Checked(kind, path, names[kind], error=str(exc))
            continue
        checked[kind] = _check_file(kind, path, names[kind], mapping.get(kind, {}), apply_suggestions=run.dry_run)
    for c in checked.values():
        ImportFile.objects.update_or_create(run=run, kind=c.kind, defaults=dict(
            filename=c.name[:500], path=str(c.path), error=c.error,
            encoding=c.fmt.encoding_label if c.fmt else "", delimiter=c.fmt.delimiter_label if c.fmt else "",
            header=c.header.original if c.header else (c.raw_header or []),
            column_mapping=c.header.mapping if c.header else {},
            suggested_mapping=c.header.suggested if c.header else _suggest(c)))
    errors = [c.error for c in checked.values() if c.error]
    if errors:
        fine = [c.name for c in checked.values() if not c.error]
        tail = (f" The other file(s) ({', '.join(fine)}) are fine, but nothing was imported: fix the file above and "
                "import them together again." if fine else " Nothing was imported.")
        raise ImportFailed("; ".join(errors) + "." + tail)
    return checked


def _suggest(c: _Checked) -> dict:
    return importing.suggest_mapping(importing.SPECS[c.kind], c.raw_header) if c.raw_header else {}


def import_files(files: dict, *, user=None, source: str = "command", run: ImportRun | None = None,
                 rejected_dir: Path | None = None, progress=None, batch_size: int | None = None,
                 names: dict | None = None, dry_run: bool = False, date_format: str = "", mapping: dict | None = None,
                 source_name: str = "") -> ImportRun:
    """Import up to three CSV files: ``{"customers": path, "products": path, "interactions": path}``.

    Customers and products go first, so interactions may refer to them. Each file's encoding and
    delimiter are detected; ``mapping`` (``{kind: {file column: contract column}}``) and the
    saved mapping of ``source_name`` rename columns; ``date_format`` ("iso", "dmy", "mdy")
    says how non-ISO dates read. Each file's rejected rows and rows with warnings go to
    ``NAME.rejected.csv`` (next to the file, or in ``rejected_dir``) with their line number and
    every reason; good rows load. ``dry_run``: everything is read and checked and counted, the
    mapping's suggestions applied, but no data is written. ``names``: what messages call each
    file (default: the file's name). Returns the finished :class:`ImportRun`, whose files carry
    the counts. Raises :class:`ImportFailed`, having written no data, when a file is missing or
    its header unusable. ``progress(run, file_result)`` is called after each batch. When ``run``
    is given (a saved upload), its own dry run, date format, source and mapping are used.
    """
    files = {kind: Path(files[kind]) for kind in ORDER if files.get(kind)}
    names = {kind: (names or {}).get(kind) or path.name for kind, path in files.items()}
    if not files:
        raise ImportFailed("no file given: name at least one of customers, products, interactions")
    if run is None:
        # Runs in this process: marked dispatched so the sweep never hands it to a worker too.
        run = ImportRun.objects.create(user=user, source=source, dispatched_at=timezone.now(), dry_run=dry_run,
                                       date_format=date_format, source_name=source_name, mapping=mapping or {})
    mappings, date_format = _mappings(run)
    ImportRun.objects.filter(pk=run.pk).update(date_format=date_format)
    run.refresh_from_db()
    try:
        if date_format not in importing.DATE_FORMATS:
            raise ImportFailed(f"date format {date_format!r} is not one of {', '.join(importing.DATE_FORMATS)}")
        checked = _check_files(run, files, names, mappings)
    except ImportFailed as exc:
        ImportRun.objects.filter(pk=run.pk).update(status=ImportRun.Status.FAILED, error=str(exc),
                                                   finished_at=timezone.now())
        run.refresh_from_db()
        raise
    if run.source_name and not run.dry_run:
        # The whole mapping asked for (or saved) per kind: entries for columns this file lacks stay.
        save_source(run.source_name, mapping={kind: importing.check_mapping(importing.SPECS[kind], m)
                                              for kind, m in mappings.items()}, date_format=date_format, user=run.user)
    total = sum(path.stat().st_size for path in files.values())
    ImportRun.objects.filter(pk=run.pk).update(status=ImportRun.Status.RUNNING, started_at=timezone.now(),
                                               heartbeat_at=timezone.now(), bytes_total=total, error="")
    run.refresh_from_db()
    options = importing.Options(tz=timezone.get_default_timezone(), date_format=date_format)
    done_before = 0
    try:
        if run.dry_run:
            with connection.cursor() as cursor:
                _dry_tables(cursor, create=True)
        for c in checked.values():
            _import_one(run, c, options, rejected_dir, progress, batch_size or settings.IMPORT_BATCH_SIZE, done_before)
            done_before += c.path.stat().st_size
    except BaseException as exc:
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else _without_paths(exc, checked)
        with transaction.atomic():
            ImportRun.objects.filter(pk=run.pk).update(
                status=ImportRun.Status.FAILED, error=f"stopped part-way ({reason}); every finished batch is stored, "
                "re-run the same import to complete it" if not run.dry_run else f"the dry run stopped ({reason})",
                finished_at=timezone.now())
            if not run.dry_run:
                _audit_import(run, "stopped part-way")
        run.refresh_from_db()
        raise
    finally:
        if run.dry_run:
            try:
                with connection.cursor() as cursor:
                    _dry_tables(cursor, create=False)
            except Exception:  # the connection may be the reason we are here; temp tables die with it
                log.debug("could not drop the dry run's tables", exc_info=True)
    if not run.dry_run and run.files.filter(kind=ImportFile.Kind.INTERACTIONS).exclude(created=0, updated=0).exists():
        ImportRun.objects.filter(pk=run.pk).update(stage="updating customers' last purchase",
                                                   heartbeat_at=timezone.now())
        refresh_last_purchase()
    clean = not run.files.exclude(rejected=0, warned=0).exists()
    with transaction.atomic():
        ImportRun.objects.filter(pk=run.pk).update(
            status=ImportRun.Status.SUCCEEDED if clean else ImportRun.Status.PARTIAL, stage="done",
            bytes_done=total, finished_at=timezone.now())
        if not run.dry_run:
            _audit_import(run, "finished")
    run.refresh_from_db()
    schedule_retrain_after_import(run)
    return run


def _without_paths(exc: BaseException, checked: dict) -> str:
    """An unexpected error for the run's record, with the files' server paths replaced by their names."""
    text = f"{type(exc).__name__}: {exc}"
    for c in checked.values():
        text = text.replace(str(c.path), c.name).replace(str(c.path.parent), "…")
    return text


def _audit_import(run: ImportRun, outcome: str) -> None:
    """One audit event per import run (its batches commit on their own): counts per file, no rows."""
    audit.record(AuditEvent.Action.IMPORT, user=run.user, object_type="import", object_id=run.pk,
                 summary=f"import {run.pk} {outcome}: {summary(run)}"[:500])


PREVIEW_ROWS = 10  # the first records of each file, as read, on the run's page


def _import_one(run, checked: _Checked, options, rejected_dir, progress, batch_size, done_before):
    kind, path, header = checked.kind, checked.path, checked.header
    spec = importing.SPECS[kind]
    result = ImportFile.objects.get(run=run, kind=kind)
    written = spec.written_columns(header.names)
    rejects = _Rejects(rejected_path_for(path, rejected_dir, dry_run=run.dry_run), header.original)
    stager = _Stager(kind, spec, written, run.user_id, dry_run=run.dry_run)
    started = time.monotonic()
    binary = open(path, "rb")
    counts = {"rows_read": 0, "created": 0, "updated": 0}
    preview = []
    try:
        with connection.cursor() as cursor:
            stager.create(cursor)
        batches = importing.read_batches(binary, spec, batch_size, options, checked.fmt, header.mapping)
        next(batches)  # the header, checked already
        for number, batch in enumerate(batches):
            counts["rows_read"] += batch.rows_read
            bad, warned = [], []
            if batch.rows or (batch.table is not None and batch.table.num_rows):
                if number % 10 == 0:
                    with connection.cursor() as cursor:
                        stager.analyze_target(cursor)
                skips = batch.skips_fields
                with transaction.atomic(), connection.cursor() as cursor:
                    staged = stager.load(cursor, batch)
                    bad = stager.reject_duplicates(cursor, staged)
                    stager.delete_rows(cursor, [r for r, _ in bad])
                    stager.resolve(cursor, skips)
                    unresolved, warned = stager.unresolved(cursor)
                    stager.delete_rows(cursor, [r for r, _ in unresolved], stager.resolved)
                    created, updated = stager.merge(cursor, timezone.now(), skips)
                bad += unresolved
                counts["created"] += created
                counts["updated"] += updated
            reported = _report(batch, bad, warned)
            for row_no, outcome, reason, raw in reported:
                rejects.add(row_no, outcome, reason, raw)
            if len(preview) < PREVIEW_ROWS:
                preview += _preview(spec, written, batch, reported, options, PREVIEW_ROWS - len(preview))
                ImportFile.objects.filter(pk=result.pk).update(preview=preview)
            _record_progress(run, result, counts, rejects, started, done_before + binary.tell(), progress)
        _record_progress(run, result, counts, rejects, started, done_before + os.path.getsize(path), progress)
    finally:
        binary.close()
        rejects.close()
        try:
            with connection.cursor() as cursor:
                stager.drop(cursor)
        except Exception:  # the connection may be the reason we are here; temp tables die with it
            log.debug("could not drop staging tables", exc_info=True)
    ImportFile.objects.filter(pk=result.pk).update(
        rejected_path=str(rejects.path) if rejects.count or rejects.warned else "",
        seconds=time.monotonic() - started)
    result.refresh_from_db()
    return result


def _report(batch, bad, warned):
    """The batch's rows to report, in row order: (row_no, outcome, every reason, raw cells).

    A row rejected in SQL (a duplicate key, an unknown customer) carries the warnings its
    fields had too; a row that loaded with warnings is reported as a warning.
    """
    warnings = {row: list(reasons) for row, reasons in batch.warnings.items()}
    for row_no, reason in warned:
        warnings.setdefault(row_no, []).append(reason)
    rejected = {}
    for row_no, reason in bad:
        rejected.setdefault(row_no, []).append(reason)
    out = [(row_no, REJECTED, reason, raw) for row_no, reason, raw in batch.rejected]
    for row_no, reasons in rejected.items():
        out.append((row_no, REJECTED, "; ".join(reasons + warnings.pop(row_no, [])), batch.raw(row_no)))
    for row_no, reasons in warnings.items():
        out.append((row_no, WARNING, "; ".join(reasons), batch.raw(row_no)))
    return sorted(out, key=lambda item: item[0])


def _preview(spec, written, batch, reported, options, limit):
    """The batch's first ``limit`` records as read: [{"row", "outcome", "values", "reason"}]."""
    problems = {row_no: (outcome, reason) for row_no, outcome, reason, _raw in reported}
    rows = {}
    for row in batch.rows:
        if len(rows) >= limit:
            break
        rows[row[0]] = dict(zip(spec.columns, row[1:-1]))
    if batch.table is not None and batch.table.num_rows:
        head = batch.table.slice(0, limit).to_pylist()
        for row in head:
            rows[row.pop("row_no")] = row
    for row_no, *_rest in reported[:limit]:
        rows.setdefault(row_no, None)
    out = []
    for row_no in sorted(rows)[:limit]:
        outcome, reason = problems.get(row_no, ("ok", ""))
        values = rows[row_no]
        if values is None or outcome == REJECTED:
            shown = {}
        else:
            shown = {importing.source_of(c): _shown(c, values.get(c), options) for c in written if c != "attributes"}
            if "attributes" in written:
                shown["attributes"] = values.get("attributes") or "{}"
        out.append({"row": row_no, "outcome": outcome, "values": shown, "reason": reason})
    return out


def _shown(column, value, options):
    """A staged value as text for the preview (times in TIME_ZONE, as a person entered them)."""
    if value is None:
        return ""
    if column == "occurred_at":
        if isinstance(value, str):  # the fast path's UTC text
            value = datetime.fromisoformat(value).replace(tzinfo=UTC)
        return value.astimezone(options.tz).isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _record_progress(run, result, counts, rejects, started, bytes_done, progress):
    unchanged = counts["rows_read"] - rejects.count - counts["created"] - counts["updated"]
    ImportFile.objects.filter(pk=result.pk).update(
        rows_read=counts["rows_read"], created=counts["created"], updated=counts["updated"],
        unchanged=max(unchanged, 0), rejected=rejects.count, warned=rejects.warned,
        seconds=time.monotonic() - started)
    ImportRun.objects.filter(pk=run.pk).update(
        stage=f"{'checking' if run.dry_run else 'importing'} {result.kind}", bytes_done=bytes_done,
        heartbeat_at=timezone.now(), rows_done=_rows_done(run, result, counts))
    if progress is not None:
        result.refresh_from_db()
        run.refresh_from_db()
        progress(run, result)


def _rows_done(run, result, counts):
    earlier = sum(f.rows_read for f in run.files.exclude(pk=result.pk))
    return earlier + counts["rows_read"]


def save_uploads(uploads: dict, *, user=None, source: str = "upload", in_process: bool = False,
                 dry_run: bool = False, date_format: str = "", source_name: str = "",
                 mapping: dict | None = None) -> ImportRun:
    """Store uploaded files under MEDIA_ROOT/imports/<run id>/ and create their queued ImportRun.

    ``in_process``: the caller imports them itself, so no worker must be sent the run. The
    other options are import_files()'s.
    """
    run = ImportRun.objects.create(user=user, source=source, status=ImportRun.Status.QUEUED,
                                   dispatched_at=timezone.now() if in_process else None, dry_run=dry_run,
                                   date_format=date_format, source_name=source_name, mapping=mapping or {})
    folder = Path(settings.MEDIA_ROOT) / "imports" / str(run.pk)
    folder.mkdir(parents=True, exist_ok=True)
    for kind in ORDER:
        upload = uploads.get(kind)
        if not upload:
            continue
        target = folder / f"{kind}.csv"
        with open(target, "wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
        ImportFile.objects.create(run=run, kind=kind, filename=Path(upload.name).name[:500], path=str(target))
    return run


def run_saved_import(run_id: int, progress=None) -> ImportRun:
    """Import the files saved for a queued ImportRun (the background half of an upload)."""
    run = ImportRun.objects.get(pk=run_id)
    files = {f.kind: f.path for f in run.files.all()}
    names = {f.kind: f.filename for f in run.files.all()}
    run.files.all().delete()  # recreated with their counts by import_files
    return import_files(files, run=run, rejected_dir=Path(settings.MEDIA_ROOT) / "imports" / str(run.pk),
                        progress=progress, names=names)


def import_uploads(uploads: dict, *, user=None, source: str = "upload", **options) -> ImportRun:
    """Save uploaded files and import them now, in this process (options: import_files()'s)."""
    run = save_uploads(uploads, user=user, source=source, in_process=True, **options)
    return run_saved_import(run.pk)


def import_checked(run_id: int, *, user=None, mapping: dict | None = None, date_format: str | None = None,
                   source_name: str | None = None, dry_run: bool = False, source: str | None = None) -> ImportRun:
    """A new queued import of the files a dry run checked (after the mapping was confirmed or
    changed): the files are copied, so the dry run keeps its own record. ``dry_run``: check
    again instead. The caller dispatches it (see enqueue_checked)."""
    checked = ImportRun.objects.get(pk=run_id)
    run = ImportRun.objects.create(
        user=user, source=source or checked.source, status=ImportRun.Status.QUEUED, dry_run=dry_run,
        date_format=checked.date_format if date_format is None else date_format,
        source_name=checked.source_name if source_name is None else source_name,
        mapping=checked.mapping if mapping is None else mapping)
    folder = Path(settings.MEDIA_ROOT) / "imports" / str(run.pk)
    folder.mkdir(parents=True, exist_ok=True)
    for f in checked.files.all():
        if not f.path or not Path(f.path).is_file():
            continue
        target = folder / f"{f.kind}.csv"
        shutil.copyfile(f.path, target)
        ImportFile.objects.create(run=run, kind=f.kind, filename=f.filename, path=str(target))
    return run


def summary(run: ImportRun) -> str:
    parts = [f"{f.kind}: {f.created} created, {f.updated} updated, {f.unchanged} unchanged, {f.rejected} rejected"
             + (f", {f.warned} with warnings" if f.warned else "") for f in run.files.all()]
    return "; ".join(parts) or "nothing imported"


def ensure_sales_reps(usernames) -> list:
    """Create (if missing) users with the sales rep role; they own the demo's accounts."""
    from django.contrib.auth.models import Group

    from crm.models import ROLE_SALES_REP

    group, _ = Group.objects.get_or_create(name=ROLE_SALES_REP)
    User = get_user_model()
    users = []
    for username in usernames:
        user, created = User.objects.get_or_create(username=username, defaults={"first_name": username.title()})
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        user.groups.add(group)
        users.append(user)
    return users


# An import is tried this many times in all (worker deaths included) before it is marked failed.
IMPORT_MAX_ATTEMPTS = 3
# Only saved uploads can be handed to another worker; a command's files may live on its machine only.
REQUEUABLE_SOURCES = ("upload", "api")


def run_queued_import(run_id: int) -> ImportRun | None:
    """Claim a queued ImportRun, or a running one whose worker died (stale heartbeat), and run it.

    The claim is a conditional UPDATE, so a redelivered task whose import already finished does
    nothing. Re-running a half-done import is safe: every batch is an idempotent upsert.
    """
    claimed = ImportRun.objects.filter(
        Q(status=ImportRun.Status.QUEUED) | Q(status=ImportRun.Status.RUNNING, heartbeat_at__lt=timezone.now() - stale_after()),
        pk=run_id, attempts__lt=IMPORT_MAX_ATTEMPTS,
    ).update(status=ImportRun.Status.RUNNING, heartbeat_at=timezone.now(), attempts=F("attempts") + 1)
    if not claimed:
        return None
    try:
        with Heartbeat(ImportRun, run_id, heartbeat_seconds()):
            return run_saved_import(run_id)
    except ImportFailed:
        return ImportRun.objects.get(pk=run_id)


def sweep_stale_imports() -> dict:
    """Imports whose worker died (no heartbeat for ML_STALE_AFTER_SECONDS): queue saved uploads
    again for a worker, up to IMPORT_MAX_ATTEMPTS; fail the others with what to do."""
    stale = timezone.now() - stale_after()
    requeued, failed = [], []
    running = ImportRun.objects.filter(status=ImportRun.Status.RUNNING, heartbeat_at__lt=stale)
    for pk, source, attempts in running.order_by("pk").values_list("pk", "source", "attempts"):
        still_stale = ImportRun.objects.filter(pk=pk, status=ImportRun.Status.RUNNING, heartbeat_at__lt=stale)
        if source in REQUEUABLE_SOURCES and attempts < IMPORT_MAX_ATTEMPTS:
            if still_stale.update(status=ImportRun.Status.QUEUED, dispatched_at=None,
                                  stage="worker lost; queued again"):
                requeued.append(pk)
        elif still_stale.update(status=ImportRun.Status.FAILED, finished_at=timezone.now(),
                                error=f"the import stopped part-way (its process stopped responding, attempt {attempts}); "
                                      "rows of finished batches are stored: re-run the same import to complete it"):
            failed.append(pk)
    return {"requeued": requeued, "failed": failed}


def enqueue_import(uploads: dict, *, user=None, source: str = "upload", **options) -> ImportRun:
    """Save uploads and hand the import (or dry run) to a worker once this transaction commits.

    ``options``: save_uploads()'s (dry_run, date_format, source_name, mapping). Raises
    :class:`BackgroundUnavailable` (outside a transaction) when the broker cannot be reached:
    the run stays queued with its files and is sent when the broker is back.
    """
    run = save_uploads(uploads, user=user, source=source, **options)
    _dispatch_import(run)
    return run


def enqueue_checked(run_id: int, **options) -> ImportRun:
    """Queue the import (or another dry run) of the files a dry run checked: import_checked()'s
    options; BackgroundUnavailable as enqueue_import()."""
    run = import_checked(run_id, **options)
    _dispatch_import(run)
    return run


def _dispatch_import(run: ImportRun) -> None:
    from crm.tasks import run_import_task  # tasks import this module

    what = f"{'dry run' if run.dry_run else 'import'} #{run.pk}"
    dispatch_on_commit(run_import_task, ImportRun, run.pk, what)


def dispatch(task, model, pk: int) -> bool:
    """Send ``task(pk)`` for a queued ImportRun or TrainingRun, once; False when the broker is unreachable.

    ``dispatched_at`` is claimed with a conditional UPDATE first, so a request, the sweep and a
    starting worker racing for the same row send one message between them; a failed send clears
    it again so the row is picked up later. The publish retry policy (settings) keeps a failed
    send to a few seconds.
    """
    from kombu.exceptions import OperationalError as BrokerUnreachable

    claimed = model.objects.filter(pk=pk, status="queued", dispatched_at__isnull=True).update(
        dispatched_at=timezone.now())
    if not claimed:
        return True  # sent already by someone else, or no longer waiting for a worker
    try:
        task.apply_async(args=[pk])
    except BrokerUnreachable as exc:
        model.objects.filter(pk=pk).update(dispatched_at=None)
        log.warning("broker unreachable, %s #%s stays queued until it is back: %s", model.__name__, pk, exc)
        return False
    return True


def dispatch_on_commit(task, model, pk: int, what: str) -> None:
    """Dispatch when the current transaction commits.

    Outside a transaction (every web and API request: no ATOMIC_REQUESTS) Django runs the hook at
    once, so the caller learns here that the broker is down and can tell the user; inside one,
    a failed send is only logged and the sweep sends it later.
    """
    sent = []
    transaction.on_commit(lambda: sent.append(dispatch(task, model, pk)))
    if sent == [False]:
        raise BackgroundUnavailable(
            f"Background work is unavailable right now (the task queue cannot be reached). {what.capitalize()} "
            "is saved and queued; it starts automatically when the queue is back.")


def redispatch_after() -> timedelta:
    """A queued row sent this long ago without being started may have lost its message (a worker
    killed while holding it, a broker restarted without persistence): it is sent again. A
    duplicate message is harmless (the claim is conditional), so the only cost of a short wait is
    a no-op task now and then."""
    return 5 * stale_after()


def release_overdue(model, pks) -> None:
    """Clear ``dispatched_at`` of queued rows sent longer than redispatch_after() ago, so the
    next dispatch sends them again."""
    model.objects.filter(pk__in=list(pks), status="queued",
                         dispatched_at__lt=timezone.now() - redispatch_after()).update(dispatched_at=None)


def dispatch_pending_imports() -> list[int]:
    """Send the queued imports whose task never reached the broker, or whose message looks lost;
    returns the ids sent."""
    from crm.tasks import run_import_task

    queued = ImportRun.objects.filter(status=ImportRun.Status.QUEUED)
    release_overdue(ImportRun, queued.values_list("pk", flat=True))
    pending = queued.filter(dispatched_at__isnull=True).order_by("pk")
    sent = []
    for pk in pending.values_list("pk", flat=True):
        if not dispatch(run_import_task, ImportRun, pk):
            break  # the broker is still down: the rest wait for the next sweep
        sent.append(pk)
    return sent


def schedule_retrain_after_import(run: ImportRun) -> list:
    """Queue a retrain of every model after an import that changed data (RETRAIN_AFTER_IMPORT)."""
    if (not settings.RETRAIN_AFTER_IMPORT or run.dry_run
            or run.status not in (ImportRun.Status.SUCCEEDED, ImportRun.Status.PARTIAL)):
        return []
    if not any(f.created or f.updated for f in run.files.all()):
        return []
    from ml.services import request_retrain_all  # ml builds on crm, not the other way round

    return request_retrain_all(user=run.user, trigger="import")


def refresh_last_purchase(customer_ids=None) -> None:
    """Recompute ``Customer.last_purchase_at`` from the stored purchases.

    ``customer_ids``: only these customers (a correlated subquery each: meant for a few);
    None: every customer, from one grouped scan of the purchases joined back in a single
    UPDATE (a correlated subquery per customer takes minutes at 100,000 customers).
    Called after imports and when a purchase is logged or erased.
    """
    customers, interactions = Customer._meta.db_table, Interaction._meta.db_table
    with connection.cursor() as cursor:
        if customer_ids is None:
            cursor.execute(
                f"UPDATE {customers} SET last_purchase_at = t.last FROM (SELECT customer_id, MAX(occurred_at) AS last "
                f"FROM {interactions} WHERE type = 'purchase' GROUP BY customer_id) t "
                f"WHERE t.customer_id = {customers}.id AND ({customers}.last_purchase_at IS NULL "
                f"OR {customers}.last_purchase_at <> t.last)")
            return
        sql = (f"UPDATE {customers} SET last_purchase_at = (SELECT MAX(i.occurred_at) FROM {interactions} i "
               f"WHERE i.customer_id = {customers}.id AND i.type = 'purchase')")
        ids = sorted(set(customer_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            cursor.execute(sql + f" WHERE id IN ({', '.join(['%s'] * len(chunk))})", chunk)


class NotAllowed(Exception):
    """The user may not do this to this customer (row-level rule)."""


def log_interaction(*, user, customer: Customer, type: str, occurred_at=None, notes: str = "", channel: str = "",
                    product: Product | None = None, quantity: int = 1, amount=None, order_ref: str = "",
                    external_id: str = "") -> Interaction:
    """Record a call, e-mail, meeting, note (or any interaction) on a customer the user may see."""
    import uuid

    from crm.selectors import visible_customers

    if not visible_customers(user).filter(pk=customer.pk).exists():
        raise NotAllowed("you cannot log interactions on this customer")
    occurred_at = occurred_at or timezone.now()
    _check_not_future(occurred_at)
    with transaction.atomic():
        interaction = Interaction(
            external_id=external_id or f"web-{uuid.uuid4().hex}", customer=customer, type=type,
            occurred_at=occurred_at, notes=notes, channel=channel, product=product,
            quantity=quantity, amount=amount, order_ref=order_ref, created_by=user)
        interaction.full_clean()
        interaction.save()
        if type == Interaction.Type.PURCHASE:
            refresh_last_purchase([customer.pk])
        _audit_interaction(AuditEvent.Action.CREATE, user, interaction, f"type {interaction.type}")
    return interaction


# --- REST API writes (issue 6): the same rules as the pages, one transaction per use case ----------

class InUse(Exception):
    """The object is still referred to (e.g. a product with interactions) and cannot be deleted."""


def _check_owner(user, owner) -> None:
    from crm.selectors import sees_all_customers

    if owner is not None and owner != user and not sees_all_customers(user):
        raise NotAllowed("a sales rep can assign an account only to themselves or leave it unassigned")


def _check_visible(user, customer: Customer, message: str) -> None:
    from crm.selectors import visible_customers

    if not visible_customers(user).filter(pk=customer.pk).exists():
        raise NotAllowed(message)


def _check_manager(user, message: str) -> None:
    from crm.selectors import is_manager

    if not is_manager(user):
        raise NotAllowed(message)


def _save(instance, fields: dict):
    for name, value in fields.items():
        setattr(instance, name, value)
    instance.full_clean()
    instance.save()
    return instance


def _audit(action, user, object_type, instance, what, customer_id=None):
    """The audit event of a single-object change; ``what`` names fields, never their values."""
    audit.record(action, user=user, object_type=object_type, object_id=instance.pk, customer_id=customer_id,
                 summary=f"{object_type} {instance.pk} {action}d" + (f": {what}" if what else ""))


def _audit_interaction(action, user, interaction, what=""):
    audit.record(action, user=user, object_type="interaction", object_id=interaction.pk,
                 customer_id=interaction.customer_id,
                 summary=f"interaction {interaction.pk} of customer {interaction.customer_id} {action}d"
                         + (f": {what}" if what else ""))


def create_customer(*, user, **fields) -> Customer:
    """Create a customer; a sales rep may own it or leave it unassigned, not give it to another rep."""
    _check_owner(user, fields.get("owner"))
    with transaction.atomic():
        customer = _save(Customer(), fields)
        _audit(AuditEvent.Action.CREATE, user, "customer", customer, "", customer.pk)
        return customer


def update_customer(*, user, customer: Customer, **fields) -> Customer:
    """Change a customer the user may see; a sales rep cannot hand it to another rep."""
    _check_visible(user, customer, "you cannot change this customer")
    if "owner" in fields and fields["owner"] != customer.owner:
        _check_owner(user, fields["owner"])
    with transaction.atomic():
        changed = audit.changed_fields(customer, fields)
        _save(customer, fields)
        _audit(AuditEvent.Action.UPDATE, user, "customer", customer,
               f"fields {', '.join(changed)}" if changed else "no field changed", customer.pk)
        return customer


def delete_customer(*, user, customer: Customer) -> None:
    """Erase a customer with their interactions and insights (managers and admins only)."""
    _check_manager(user, "only managers can delete customers")
    with transaction.atomic():
        pk = customer.pk
        customer.delete()
        customer.pk = pk
        _audit(AuditEvent.Action.DELETE, user, "customer", customer, "with interactions and insights", pk)


def create_product(*, user, **fields) -> Product:
    _check_manager(user, "only managers can add products")
    with transaction.atomic():
        product = _save(Product(), fields)
        _audit(AuditEvent.Action.CREATE, user, "product", product, "")
        return product


def update_product(*, user, product: Product, **fields) -> Product:
    _check_manager(user, "only managers can change products")
    with transaction.atomic():
        changed = audit.changed_fields(product, fields)
        _save(product, fields)
        _audit(AuditEvent.Action.UPDATE, user, "product", product,
               f"fields {', '.join(changed)}" if changed else "no field changed")
        return product


def delete_product(*, user, product: Product) -> None:
    """Delete a product nobody bought or viewed; one with interactions is refused (:class:`InUse`)."""
    from django.db.models import ProtectedError

    _check_manager(user, "only managers can delete products")
    try:
        with transaction.atomic():
            pk = product.pk
            product.delete()
            product.pk = pk
            _audit(AuditEvent.Action.DELETE, user, "product", product, "")
    except ProtectedError:
        raise InUse(f"product {product.sku!r} has interactions; mark it inactive instead") from None


def _check_not_future(occurred_at) -> None:
    """Refuse a future-dated interaction (crm.clock) as a validation error of ``occurred_at``."""
    from django.core.exceptions import ValidationError

    reason = clock.future_reason(occurred_at)
    if reason:
        raise ValidationError({"occurred_at": reason})


def _check_interaction_editable(user, interaction: Interaction) -> None:
    from crm.selectors import can_change_interaction

    _check_visible(user, interaction.customer, "you cannot change this customer's interactions")
    if not can_change_interaction(user, interaction):
        raise NotAllowed("a sales rep can change only the interactions they logged")


def update_interaction(*, user, interaction: Interaction, **fields) -> Interaction:
    """Change an interaction (managers: any visible one; reps: the ones they logged). A new
    ``occurred_at`` in the future is refused (crm.clock), like at every door that logs one."""
    _check_interaction_editable(user, interaction)
    if fields.get("occurred_at") is not None:
        _check_not_future(fields["occurred_at"])
    with transaction.atomic():
        changed = audit.changed_fields(interaction, fields)
        _save(interaction, fields)
        refresh_last_purchase([interaction.customer_id])
        _audit_interaction(AuditEvent.Action.UPDATE, user, interaction,
                           f"fields {', '.join(changed)}" if changed else "no field changed")
    return interaction


def delete_interaction(*, user, interaction: Interaction) -> None:
    """Delete an interaction (managers: any visible one; reps: the ones they logged), audited."""
    _check_interaction_editable(user, interaction)
    with transaction.atomic():
        customer_id, pk = interaction.customer_id, interaction.pk
        interaction.delete()
        refresh_last_purchase([customer_id])
        interaction.pk = pk
        _audit_interaction(AuditEvent.Action.DELETE, user, interaction)


class MergeRefused(Exception):
    """The customers cannot be merged as asked (the same one twice, an erased or vanished one)."""


# Profile fields a merge fills on the kept customer when it has none and a duplicate has one.
MERGE_FILLED_FIELDS = ("name", "email", "phone", "company", "country", "city")


def merge_customers(*, user, keep: Customer, duplicates) -> dict:
    """Merge duplicate customers into ``keep`` (managers and admins); returns what moved: {label: rows}.

    In one transaction: every interaction and suggestion feedback of the duplicates moves to the
    kept customer (feedback is one current status per suggestion: where both have one, the most
    recent stays), as does any other row that refers to them; their segment, forecast,
    suggestion and prospect rows of past runs are dropped (they describe a customer that no
    longer exists; the next retrain scores the merged history). The kept customer's empty
    profile fields are filled from the duplicates, the earliest sign-up date and an owner are
    kept, an objection to profiling by either stands, and each duplicate's profile is kept in
    its ``attributes["merged_customers"]`` (nothing typed is lost). The duplicates' rows are
    then deleted rather than kept as tombstones: a tombstone would hold the same personal data
    twice and show in every list, count, export and training frame unless each learned to skip
    it. One audit event names the ids and counts. Raises :class:`MergeRefused`, NotAllowed.
    """
    # The merge carries what the models wrote about a customer (an ml table, as crm.privacy's
    # erasure does): feedback is the salespeople's work and must follow the customer.
    from ml.models import CustomerSegment, Forecast, Prospect, Suggestion, SuggestionFeedback

    _check_manager(user, "only managers can merge customers")
    ids = sorted({c.pk for c in duplicates} - {keep.pk})
    if not ids:
        raise MergeRefused("choose at least one other customer to merge into the one you keep")
    with transaction.atomic():
        rows = Customer.objects.select_for_update().in_bulk([keep.pk, *ids])
        if len(rows) != len(ids) + 1:
            raise MergeRefused("one of these customers no longer exists; reload the page")
        if any(c.erased_at for c in rows.values()):
            raise MergeRefused("an erased customer cannot be merged")
        kept, others = rows[keep.pk], [rows[pk] for pk in ids]
        moved = {"interactions": Interaction.objects.filter(customer_id__in=ids).update(customer_id=kept.pk)}

        feedback = list(SuggestionFeedback.objects.filter(customer_id__in=[kept.pk, *ids])
                        .order_by("-updated_at", "-id").values_list("pk", "product_id", "kind"))
        latest, superseded = set(), []
        for pk, product_id, kind in feedback:
            if (product_id, kind) in latest:
                superseded.append(pk)
            latest.add((product_id, kind))
        SuggestionFeedback.objects.filter(pk__in=superseded).delete()
        moved["suggestion feedback"] = SuggestionFeedback.objects.filter(customer_id__in=ids).update(
            customer_id=kept.pk)
        moved["suggestion feedback superseded"] = len(superseded)
        dropped = 0
        for model in (CustomerSegment, Forecast, Suggestion, Prospect):
            dropped += model.objects.filter(customer_id__in=ids).delete()[0]
        moved["insight rows of past runs dropped"] = dropped
        # Anything else that refers to a customer (a table added later) moves too, never cascades away.
        handled = {Interaction, SuggestionFeedback, CustomerSegment, Forecast, Suggestion, Prospect}
        for relation in Customer._meta.get_fields(include_hidden=True):  # hidden: related_name="+" too
            if relation.one_to_many and relation.auto_created and relation.related_model not in handled:
                name = relation.field.name
                moved[relation.related_model._meta.verbose_name_plural] = (
                    relation.related_model._base_manager.filter(**{f"{name}_id__in": ids}).update(**{name: kept}))

        filled = _merge_profile(kept, others)
        Customer.objects.filter(pk__in=ids).delete()
        refresh_last_purchase([kept.pk])
        counts = ", ".join(f"{n} {label}" for label, n in moved.items() if n)
        audit.record(AuditEvent.Action.MERGE, user=user, object_type="customer", object_id=kept.pk,
                     customer_id=kept.pk,
                     summary=f"customers {', '.join(map(str, ids))} merged into customer {kept.pk}: "
                             f"{counts or 'nothing to move'}; fields filled: {', '.join(filled) or 'none'}")
    keep.refresh_from_db()
    return moved


def _merge_profile(kept: Customer, others: list) -> list[str]:
    """Fill the kept customer's profile from the duplicates (see merge_customers); the names of the fields filled."""
    filled = []
    for name in MERGE_FILLED_FIELDS:
        if not getattr(kept, name):
            value = next((getattr(o, name) for o in others if getattr(o, name)), "")
            if value:
                setattr(kept, name, value)
                filled.append(name)
    dates = [d for d in [kept.signup_date, *(o.signup_date for o in others)] if d]
    if dates and kept.signup_date != min(dates):
        kept.signup_date = min(dates)
        filled.append("signup_date")
    if kept.owner_id is None:
        kept.owner_id = next((o.owner_id for o in others if o.owner_id), None)
        if kept.owner_id:
            filled.append("owner")
    if not kept.no_profiling and any(o.no_profiling for o in others):
        kept.no_profiling = True
        filled.append("no_profiling")
    attributes = {}
    for other in others:
        attributes.update(other.attributes or {})
    attributes.update(kept.attributes or {})
    merged = list((kept.attributes or {}).get("merged_customers") or [])
    now = timezone.now().isoformat()
    for other in others:
        merged.extend((other.attributes or {}).get("merged_customers") or [])
        merged.append({"id": other.pk, "external_id": other.external_id,
                       **{name: getattr(other, name) for name in MERGE_FILLED_FIELDS},
                       "signup_date": other.signup_date.isoformat() if other.signup_date else None,
                       "owner": other.owner.get_username() if other.owner else None, "merged_at": now})
    attributes["merged_customers"] = merged
    kept.attributes = attributes
    kept.save()
    return filled


def issue_token(user):
    """The user's API token (created on first request); revoke it with :func:`revoke_token`."""
    from rest_framework.authtoken.models import Token

    token, _ = Token.objects.get_or_create(user=user)
    return token


def revoke_token(user) -> bool:
    from rest_framework.authtoken.models import Token

    return Token.objects.filter(user=user).delete()[0] > 0


class TokenExists(Exception):
    """The user already has an API token; its key is not handed out again (regenerate instead)."""


def create_token(user):
    """A new API token for a user who has none (the account page shows its key once).

    Unlike :func:`issue_token` it never returns an existing key: a page that shows a key only
    right after creating it must not reveal an older one. Raises :class:`TokenExists`.
    """
    from django.db import IntegrityError
    from rest_framework.authtoken.models import Token

    try:
        with transaction.atomic():
            return Token.objects.create(user=user)
    except IntegrityError:  # one token per user (a concurrent request may have just made it)
        raise TokenExists("you already have an API token") from None


def regenerate_token(user):
    """Replace the user's API token (or create one): the old key stops working at once."""
    from rest_framework.authtoken.models import Token

    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        return Token.objects.create(user=user)


# Items accepted by one bulk request: large enough for a day's sync from a shop system, small
# enough that the request (validation, one transaction) stays within a few seconds.
MAX_BULK_ITEMS = 10_000
BULK_FIELDS = ("customer_external_id", "type", "occurred_at", "product_sku", "quantity", "amount", "order_ref",
               "external_id", "channel", "notes")
# Keys per IN (...) lookup: well under SQLite's bound-parameter limit.
_LOOKUP_CHUNK = 900


@dataclass
class BulkResult:
    created: int
    updated: int
    unchanged: int
    errors: list  # [{"index", "field", "message"}], in index order


def _bulk_record(item) -> dict:
    """One API item -> the CSV record crm.importing parses (every value a string)."""
    if not isinstance(item, dict):
        raise importing.RowError("item is not an object")
    unknown = sorted(set(item) - set(BULK_FIELDS) - {"attributes"})
    if unknown:
        raise importing.RowError(f"{unknown[0]} is not a field of an interaction")
    record = {}
    for name in BULK_FIELDS:
        value = item.get(name)
        if value is None:
            value = ""
        elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise importing.RowError(f"{name} must be a string or a number")
        value = str(value)
        if "\x00" in value:
            raise importing.RowError(f"{name} contains a NUL character")
        record[name] = value
    return record


def _bulk_attributes(item: dict) -> dict:
    attributes = item.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise importing.RowError("attributes must be an object")
    if "\\u0000" in _json_text(attributes):
        raise importing.RowError("attributes contains a NUL character")
    return attributes


def _json_text(value) -> str:
    import json

    return json.dumps(value, sort_keys=True)


def _in_chunks(queryset_for, keys):
    keys = list(keys)
    for start in range(0, len(keys), _LOOKUP_CHUNK):
        yield from queryset_for(keys[start:start + _LOOKUP_CHUNK])


def upsert_interactions(*, user, items: list) -> BulkResult:
    """Create or update up to MAX_BULK_ITEMS interactions keyed on ``external_id`` (the API's bulk door).

    ``items``: dicts with the interactions.csv columns (contract section 1) and an optional
    ``attributes`` object. Each item is validated like an import row (crm.importing); an item
    without ``external_id`` gets the import's content key, so posting the same items again
    changes nothing. Bad items (invalid values, a customer the user cannot see, an unknown
    product, a key repeated in the request or owned by an interaction the user cannot see)
    come back with their index and reason; the good ones are written in one transaction with
    bulk INSERT ... ON CONFLICT UPDATE. Unchanged items are not written.
    """
    from decimal import Decimal

    from crm.selectors import visible_customers

    if len(items) > MAX_BULK_ITEMS:
        raise ValueError(f"at most {MAX_BULK_ITEMS} items per request")
    tz = timezone.get_default_timezone()
    errors, rows, first_of = [], {}, {}

    def reject(index, message, field=None):
        if field is None:
            head = message.split(" ", 1)[0]
            field = head if head in BULK_FIELDS or head == "attributes" else None
        errors.append({"index": index, "field": field, "message": message})

    for index, item in enumerate(items):
        try:
            row = importing.INTERACTIONS.parse(_bulk_record(item), (), tz)
            attributes = _bulk_attributes(item)
        except importing.RowError as exc:
            reject(index, str(exc))
            continue
        if row[0] in first_of:
            reject(index, f"external_id {row[0]!r} is already used by item {first_of[row[0]]} of this request",
                   "external_id")
            continue
        first_of[row[0]] = index
        rows[index] = (row, attributes)

    customers = dict(_in_chunks(lambda keys: visible_customers(user).filter(external_id__in=keys).values_list(
        "external_id", "id"), {row[1] for row, _ in rows.values()}))
    products = dict(_in_chunks(lambda keys: Product.objects.filter(sku__in=keys).values_list("sku", "id"),
                               {row[4] for row, _ in rows.values() if row[4]}))
    stored_columns = ("external_id", "customer_id", "type", "occurred_at", "product_id", "quantity", "amount",
                      "order_ref", "channel", "notes", "attributes")
    stored = {r[0]: r for r in _in_chunks(lambda keys: Interaction.objects.filter(external_id__in=keys).values_list(
        *stored_columns), first_of)}
    visible_owners = set(_in_chunks(lambda ids: visible_customers(user).filter(pk__in=ids).values_list(
        "id", flat=True), {r[1] for r in stored.values()}))

    write, created, unchanged, touched = [], 0, 0, set()
    for index, (row, attributes) in sorted(rows.items()):
        external_id, customer_key, kind, occurred_at, product_key, quantity, amount, order_ref, channel, notes, _ = row
        if customer_key not in customers:
            reject(index, f"unknown customer {customer_key!r}: no customer with that external_id that you can see",
                   "customer_external_id")
            continue
        if product_key and product_key not in products:
            reject(index, f"unknown product {product_key!r}: no product with that sku", "product_sku")
            continue
        values = (external_id, customers[customer_key], kind, occurred_at, products.get(product_key), quantity,
                  None if amount is None else Decimal(amount), order_ref, channel, notes, attributes)
        previous = stored.get(external_id)
        if previous is not None:
            if previous[1] not in visible_owners:
                reject(index, f"external_id {external_id!r} belongs to an interaction you cannot see", "external_id")
                continue
            if previous == values:
                unchanged += 1
                continue
            touched.add(previous[1])
        else:
            created += 1
        touched.add(values[1])
        write.append(values)
    with transaction.atomic():
        _upsert_interaction_rows(stored_columns, write, user)
        if touched:
            refresh_last_purchase(touched)
        # One event per request, with counts: a 10,000-item batch is one use case, not 10,000.
        audit.record(AuditEvent.Action.BULK_UPSERT, user=user, object_type="interaction",
                     summary=f"{len(items)} items: {created} created, {len(write) - created} updated, "
                             f"{unchanged} unchanged, {len(errors)} rejected, {len(touched)} customers touched")
    errors.sort(key=lambda e: e["index"])
    return BulkResult(created=created, updated=len(write) - created, unchanged=unchanged, errors=errors)


def _upsert_interaction_rows(columns: tuple, rows: list, user) -> None:
    """INSERT ... ON CONFLICT (external_id) DO UPDATE with executemany: one statement text, values
    adapted once per cell (bulk_create's per-row model instances cost more than the database work)."""
    if not rows:
        return
    ops = connection.ops
    attributes_field = Interaction._meta.get_field("attributes")
    now = ops.adapt_datetimefield_value(timezone.now())
    table = Interaction._meta.db_table
    names = [*columns, "created_by_id", "created_at"]
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
    sql = (f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))}) "
           f"ON CONFLICT (external_id) DO UPDATE SET {updates}")
    params = [(external_id, customer_id, kind, ops.adapt_datetimefield_value(occurred_at), product_id, quantity,
               ops.adapt_decimalfield_value(amount, 14, 2), order_ref, channel, notes,
               attributes_field.get_db_prep_save(attributes, connection), user.pk, now)
              for (external_id, customer_id, kind, occurred_at, product_id, quantity, amount, order_ref, channel,
                   notes, attributes) in rows]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
