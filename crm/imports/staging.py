"""Staging of one import: temporary tables, key resolution and the SQL merge of a batch.

Each batch of good rows goes into a temporary table (COPY on PostgreSQL), its keys are
resolved against the stored customers, products and users, duplicates and unknown keys are
rejected, and the rest is merged into the target table in SQL (insert or update, unchanged
rows untouched). crm.imports.importer drives it a batch at a time.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import connection

from crm.imports import batches
from crm.imports.rows import FileSpec
from crm.models import Customer, Interaction, Product


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

    def __init__(self, kind: str, spec: FileSpec, written: tuple[str, ...], user_id,
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

    def analyze_target(self, cursor):
        """Refresh the planner's statistics of the target table (it grows as the import runs)."""
        if self.pg:
            cursor.execute(f"ANALYZE {self.target.table}")

    def load(self, cursor, batch):
        """Put one batch's good rows (an :class:`Batch`) in the staging table."""
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
                    table = table.set_column(at, "occurred_at", batches.pc.binary_join_element_wise(
                        table.column(at), "+00", ""))
                out = io.BytesIO()
                # pyarrow quotes every string and leaves NULLs empty: COPY's CSV format reads
                # "" as an empty string and an empty field as NULL.
                batches.pa_csv.write_csv(table, out, batches.pa_csv.WriteOptions(include_header=False))
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
                        row[i] = sqlite_value(row_names[i], row[i])
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
        return [(row_no, duplicate_reason(self.kind, value, first)) for row_no, value, first in cursor.fetchall()]

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
        defaults = insert_defaults(self.kind, t, self.written)
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



def duplicate_reason(kind: str, value: str, first: int) -> str:
    """Why a row whose key already came on row ``first`` of the file is rejected."""
    if value.startswith("h-") and kind == "interactions":
        return f"duplicate of row {first}: same content and no external_id to tell them apart"
    what = "external_id" if kind != "products" else "sku"
    return f"duplicate {what} {value!r}: already on row {first} of this file"


def insert_defaults(kind: str, target: _Target, written) -> dict:
    """Values for target columns the file does not provide (NOT NULL columns need one)."""
    defaults = {
        "customers": {"name": "", "email": "", "phone": "", "company": "", "country": "", "city": "",
                      "attributes": "{}"},
        "products": {"category": "", "description": "", "tags": "", "active": True, "attributes": "{}"},
        "interactions": {"order_ref": "", "channel": "", "notes": "", "attributes": "{}"},
    }[kind]
    provided = {target.mapping[c] for c in written}
    return {k: v for k, v in defaults.items() if k not in provided}


def sqlite_value(column, value):
    """A per-row staged value as SQLite stores it (times as naive UTC text, dates as ISO text)."""
    if column == "occurred_at":
        return value.replace(tzinfo=None).isoformat(sep=" ")
    if column == "signup_date" and value is not None:
        return value.isoformat()
    return value


def _dry_tables(cursor, create: bool):
    for table in _DRY_KEYS.values():
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
        if create:
            cursor.execute(f"CREATE TEMP TABLE {table} (key text PRIMARY KEY)")
