"""A first load at the database's own bulk speed.

When a file goes into an empty table (a company's first load of its customers, products or
history), the per-batch merge of crm.imports.staging has nothing to merge with, and most of its
cost is the database maintaining indexes and checking a foreign key per row. This path writes
the rows straight into the target table instead, the way PostgreSQL's manual ("Populating a
Database") advises, all in **one transaction**:

1. lock the target table (ACCESS EXCLUSIVE on PostgreSQL; SQLite's write lock), make sure it is
   still empty, and drop its secondary indexes, unique constraints and foreign keys (their
   definitions are read from the catalogue, so they come back exactly as the migrations made them);
2. per batch: resolve the customer, product and owner keys in the client from maps read once,
   reject duplicate keys and unknown customers with the same row numbers and reasons as the
   per-batch path (the same NAME.rejected.csv), and COPY the good rows straight into the table
   (SQLite: one prepared INSERT, executemany);
3. rebuild the indexes and unique constraints in one sort each, add each foreign key back
   ``NOT VALID`` and ``VALIDATE`` it in one pass (SQLite: ``PRAGMA foreign_key_check``), ANALYZE.

A failed or killed load rolls back whole: the table is empty again, indexes and constraints
intact, and re-running the import starts it over. Readers never see a half-built table: on
PostgreSQL they wait on the lock for the load's duration (BENCHMARKS.md, "Import": about 10 s
per million rows here), and dropping and re-adding a foreign key also locks the referenced table
(customers, products, users) for that time; on SQLite (WAL) readers keep reading the empty table
until the commit. Everything else (a table that already holds rows, a dry run) takes the
per-batch path.
"""
from __future__ import annotations

import io
import logging

from django.conf import settings
from django.db import connection

from crm.imports import batches
from crm.imports.rows import FileSpec
from crm.imports.staging import _TARGETS, duplicate_reason, insert_defaults, sqlite_value

log = logging.getLogger(__name__)


class NotEmpty(Exception):
    """The target table gained rows before the lock was taken: the per-batch path must run."""


def applies(kind: str, dry_run: bool) -> bool:
    """Whether a file of ``kind`` takes the bulk path: IMPORT_BULK_LOAD on, not a dry run, and
    the target table empty (checked again under the lock by :meth:`BulkLoad.begin`)."""
    if dry_run or not settings.IMPORT_BULK_LOAD:
        return False
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {_TARGETS[kind].table} LIMIT 1")
        return cursor.fetchone() is None


class _Schema:
    """The secondary indexes, unique constraints and foreign keys of one table: dropped before the
    load and rebuilt after it, from the definitions the catalogue gives."""

    def __init__(self, table: str):
        self.table = table
        self.pg = connection.vendor == "postgresql"
        self.indexes: list[tuple[str, str]] = []  # (name, CREATE INDEX ...)
        self.constraints: list[tuple[str, str, str]] = []  # (name, type u|f, definition)

    def drop(self, cursor):
        q = connection.ops.quote_name
        if self.pg:
            cursor.execute("SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
                           "WHERE conrelid = %s::regclass AND contype IN ('u', 'f') ORDER BY conname", [self.table])
            self.constraints = cursor.fetchall()
            cursor.execute(
                "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE i.indrelid = %s::regclass AND NOT i.indisprimary AND NOT EXISTS "
                "(SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid) "
                "ORDER BY c.relname", [self.table])
            self.indexes = cursor.fetchall()
            for name, _type, _definition in self.constraints:
                cursor.execute(f"ALTER TABLE {q(self.table)} DROP CONSTRAINT {q(name)}")
        else:
            # Foreign keys are part of SQLite's table definition; they are checked at the end.
            cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = %s "
                           "AND sql IS NOT NULL ORDER BY name", [self.table])
            self.indexes = cursor.fetchall()
        for name, _definition in self.indexes:
            cursor.execute(f"DROP INDEX {q(name)}")

    def rebuild(self, cursor):
        q = connection.ops.quote_name
        if self.pg:
            # One sort per index, in memory for a million rows (the default 64 MB spills to disk).
            cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
        for _name, definition in self.indexes:
            cursor.execute(definition)
        if not self.pg:
            return
        for name, kind, definition in self.constraints:
            if kind == "u":
                cursor.execute(f"ALTER TABLE {q(self.table)} ADD CONSTRAINT {q(name)} {definition}")
        for name, kind, definition in self.constraints:
            if kind == "f":
                # NOT VALID then VALIDATE: the rows are checked by one join, not one lookup per row.
                cursor.execute(f"ALTER TABLE {q(self.table)} ADD CONSTRAINT {q(name)} {definition} NOT VALID")
                cursor.execute(f"ALTER TABLE {q(self.table)} VALIDATE CONSTRAINT {q(name)}")


def _key_map(table: str, key: str) -> dict:
    """``{key: id}`` of a table the file's rows refer to (customers, products, users), read once."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {key}, id FROM {table}")
        return dict(cursor.fetchall())


class BulkLoad:
    """One file's first load into its empty table (see the module's docstring). Use inside one
    ``transaction.atomic()``: :meth:`begin`, :meth:`write` per batch, :meth:`finish`."""

    def __init__(self, kind: str, spec: FileSpec, written: tuple[str, ...], user_id):
        self.kind, self.spec, self.written = kind, spec, written
        self.target = _TARGETS[kind]
        self.user_id = user_id
        self.pg = connection.vendor == "postgresql"
        self.schema = _Schema(self.target.table)
        self.seen: dict = {}  # key -> the row it was first on (duplicates within the file)
        self.resolves = [r for r in self.target.resolves if r.key_column in written]
        self.maps: dict = {}  # key column -> {key: id}
        self.arrays: dict = {}  # key column -> (keys, ids) as pyarrow arrays, for the fast path
        self.defaults = insert_defaults(kind, self.target, written)
        self.columns = [self.target.mapping[c] for c in written] + list(self.defaults) + ["created_at"]
        if self.target.has_updated_at:
            self.columns.append("updated_at")
        if self.target.has_created_by:
            self.columns.append("created_by_id")

    def begin(self, cursor):
        table = self.target.table
        self.caller_transaction = connection.in_atomic_block and len(connection.atomic_blocks) > 1
        if self.pg and self.caller_transaction:
            # Inside a caller's transaction, its deferred foreign-key checks may be pending, and
            # PostgreSQL refuses to ALTER a table with pending trigger events: run them now (and
            # make the keys deferred again in finish(), as Django creates them).
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        if self.pg:
            cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        cursor.execute(f"SELECT 1 FROM {table} LIMIT 1")
        if cursor.fetchone() is not None:
            raise NotEmpty(table)
        if not self.pg:
            # BEGIN is deferred on SQLite: take the write lock now, so no other writer slips in.
            cursor.execute(f"DELETE FROM {table}")
        for r in self.resolves:
            self.maps[r.key_column] = _key_map(r.table, r.table_key)
        self.schema.drop(cursor)

    def _constants(self, now) -> list:
        values = list(self.defaults.values())
        stamp = now.isoformat() if self.pg else now.replace(tzinfo=None).isoformat(sep=" ")
        values.append(stamp)
        if self.target.has_updated_at:
            values.append(stamp)
        if self.target.has_created_by:
            values.append(self.user_id)
        return values

    def _duplicates(self, pairs) -> list:
        """[(row_no, reason)] of the (row_no, key) pairs, in file order, whose key came earlier in the file."""
        bad = []
        seen = self.seen
        for row_no, key in pairs:
            first = seen.setdefault(key, row_no)
            if first != row_no:
                bad.append((row_no, duplicate_reason(self.kind, key, first)))
        return bad

    def _unknown(self, resolve, row_no, value, keep, i, bad, warned):
        """A key that matches no stored row: the row is rejected (customer) or loads without it."""
        if not keep[i]:
            return
        (bad if resolve.required else warned).append((row_no, resolve.reason.format(value=value)))
        if resolve.required:
            keep[i] = False

    def _check(self, row_nos: list, repeated: set, refs: dict):
        """The keys of the per-row path's rows: (keep flags, [(row_no, reason)] rejected,
        [(row_no, reason)] warned, {key_column: [resolved id]}); ``repeated``: duplicate rows."""
        keep = [row_no not in repeated for row_no in row_nos]
        bad, warned, ids = [], [], {}
        for r in self.resolves:
            known = self.maps[r.key_column]
            out = ids[r.key_column] = []
            for i, value in enumerate(refs[r.key_column]):
                found = known.get(value) if value else None
                out.append(found)
                if found is None and value:
                    self._unknown(r, row_nos[i], value, keep, i, bad, warned)
        return keep, bad, warned, ids

    def _check_table(self, table, repeated: set):
        """_check for the fast path's pyarrow columns: keys resolved column-wise, in C++."""
        pa, pc = batches.pa, batches.pc
        row_nos = table.column("row_no").to_pylist()
        keep = [row_no not in repeated for row_no in row_nos] if repeated else [True] * len(row_nos)
        bad, warned, ids = [], [], {}
        for r in self.resolves:
            if r.key_column not in self.arrays:
                known = self.maps[r.key_column]
                self.arrays[r.key_column] = (pa.array(list(known), type=pa.string()),
                                             pa.array(list(known.values()), type=pa.int64()))
            keys, values = self.arrays[r.key_column]
            column = table.column(r.key_column)
            found = pc.index_in(column, value_set=keys)
            ids[r.key_column] = pc.take(values, found)
            unknown = pc.and_(pc.is_null(found), pc.invert(pc.fill_null(pc.equal(column, ""), True)))
            if pc.any(unknown).as_py():
                for i in pc.indices_nonzero(unknown).to_pylist():
                    self._unknown(r, row_nos[i], column[i].as_py(), keep, i, bad, warned)
        return keep, bad, warned, ids

    def write(self, cursor, batch, now) -> tuple[list, list, int]:
        """Check and write one batch: ([(row_no, reason)] rejected, [(row_no, reason)] warned, rows written)."""
        warned, written = [], 0
        table = batch.table if batch.table is not None and batch.table.num_rows else None
        # Duplicates in file order across the batch's two parts (the per-row path takes the rows
        # the fast path flagged, wherever they are in the batch): the first occurrence loads.
        row_nos, keys = [], []
        if table is not None:
            row_nos += table.column("row_no").to_pylist()
            keys += table.column(self.spec.key).to_pylist()
        at = 1 + self.spec.columns.index(self.spec.key)
        row_nos += [row[0] for row in batch.rows]
        keys += [row[at] for row in batch.rows]
        pairs = zip(row_nos, keys) if table is None or not batch.rows else sorted(zip(row_nos, keys))
        bad = self._duplicates(pairs)
        repeated = {row_no for row_no, _reason in bad}
        if table is not None:
            b, w, n = self._write_table(cursor, table, repeated, now)
            bad, warned, written = bad + b, warned + w, written + n
        if batch.rows:
            b, w, n = self._write_rows(cursor, batch.rows, repeated, now)
            bad, warned, written = bad + b, warned + w, written + n
        return bad, warned, written

    def _write_table(self, cursor, table, repeated, now):
        """The fast path's rows (pyarrow columns)."""
        pa, pc = batches.pa, batches.pc
        keep, bad, warned, ids = self._check_table(table, repeated)
        n = sum(keep)
        if not n:
            return bad, warned, 0
        arrays = []
        for c in self.written:
            if c in ids:
                arrays.append(ids[c])
            elif c == "occurred_at" and self.pg:
                arrays.append(pc.binary_join_element_wise(table.column(c), "+00", ""))
            else:
                arrays.append(table.column(c))
        mask = None if n == len(keep) else pa.array(keep)
        if mask is not None:
            arrays = [pc.filter(a, mask) for a in arrays]
        for value in self._constants(now):
            arrays.append(pa.nulls(n) if value is None else pa.repeat(value, n))
        out = pa.table(arrays, names=self.columns)
        if self.pg:
            buffer = io.BytesIO()
            # pyarrow quotes every string and leaves NULLs empty: COPY's CSV format reads "" as an
            # empty string and an empty field as NULL.
            batches.pa_csv.write_csv(out, buffer, batches.pa_csv.WriteOptions(include_header=False))
            raw = cursor.cursor if hasattr(cursor, "cursor") else cursor
            # Django's error classes for errors of the driver's own COPY (a lost connection, say).
            with connection.wrap_database_errors, raw.copy(
                    f"COPY {self.target.table} ({', '.join(self.columns)}) FROM STDIN (FORMAT csv)") as copy:
                copy.write(buffer.getbuffer())
        else:
            self._insert(cursor, zip(*(column.to_pylist() for column in out.columns)))
        return bad, warned, n

    def _write_rows(self, cursor, rows, repeated, now):
        """The per-row path's tuples: ``(row_no, *spec.columns, keep)``."""
        names = ["row_no", *self.spec.columns]
        at = {name: i for i, name in enumerate(names)}
        refs = {r.key_column: [row[at[r.key_column]] for row in rows] for r in self.resolves}
        keep, bad, warned, ids = self._check([row[0] for row in rows], repeated, refs)
        constants = self._constants(now)
        out = []
        for i, row in enumerate(rows):
            if not keep[i]:
                continue
            values = [ids[c][i] if c in ids else row[at[c]] for c in self.written]
            if not self.pg:
                values = [sqlite_value(c, v) for c, v in zip(self.written, values)]
            out.append(values + constants)
        if out and self.pg:
            raw = cursor.cursor if hasattr(cursor, "cursor") else cursor
            with connection.wrap_database_errors, raw.copy(
                    f"COPY {self.target.table} ({', '.join(self.columns)}) FROM STDIN") as copy:
                for values in out:
                    copy.write_row(values)
        elif out:
            self._insert(cursor, out)
        return bad, warned, len(out)

    def _insert(self, cursor, rows):
        marks = ", ".join(["%s"] * len(self.columns))
        cursor.executemany(f"INSERT INTO {self.target.table} ({', '.join(self.columns)}) VALUES ({marks})", rows)

    def finish(self, cursor):
        self.schema.rebuild(cursor)
        if self.pg:
            cursor.execute(f"ANALYZE {self.target.table}")
            if self.caller_transaction:
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        else:
            cursor.execute(f"PRAGMA foreign_key_check({self.target.table})")
            broken = cursor.fetchall()
            if broken:  # cannot happen (every key was resolved from the stored rows): refuse to commit
                raise RuntimeError(f"{len(broken)} rows of {self.target.table} refer to missing rows")
        self.seen.clear()
        self.maps.clear()
        self.arrays.clear()



class SideConnection:
    """A first load's progress, written outside its one transaction: a second PostgreSQL connection
    in autocommit, so the Imports page sees the counts move while the load is uncommitted.

    ``open()`` gives None where that cannot be: on SQLite (one writer at a time: the progress
    shows in the command's output, and on the page at the commit) and when the import runs
    inside a caller's transaction (the run's row may be locked by it).
    """

    def __init__(self, conn):
        self.conn = conn

    @classmethod
    def open(cls):
        if connection.vendor != "postgresql" or connection.in_atomic_block:
            return None
        import psycopg  # noqa: PLC0415 - PostgreSQL only; SQLite deployments need no driver

        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        return cls(psycopg.connect(**params, autocommit=True))

    def update(self, model, pk, fields: dict):
        meta = model._meta
        sets, values = [], []
        for name, value in fields.items():
            field = meta.get_field(name)
            sets.append(f"{connection.ops.quote_name(field.column)} = %s")
            values.append(field.get_db_prep_save(value, connection))
        self.conn.execute(f"UPDATE {meta.db_table} SET {', '.join(sets)} WHERE id = %s", [*values, pk])

    def close(self):
        self.conn.close()
