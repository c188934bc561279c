"""Writes of the CRM domain: imports, logging interactions, and the role groups.

The import is one service behind every door (the ``import_data`` command, the admin and web
upload, the API, ``seed_demo``). It streams each file, validates rows in Python
(:mod:`crm.importing`), stages each batch of good rows in a temporary table (COPY on
PostgreSQL), resolves keys and merges in SQL, one transaction per batch: a crash or Ctrl-C
leaves whole batches only, and re-running the same file completes it without duplicates.
"""
from __future__ import annotations

import csv
import io
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from crm import importing
from crm.models import Customer, ImportFile, ImportRun, Interaction, Product

log = logging.getLogger(__name__)

ORDER = ("customers", "products", "interactions")


class ImportFailed(Exception):
    """The import could not run at all (missing file, unreadable header, missing column)."""


@dataclass(frozen=True)
class _Target:
    table: str
    key: str
    # staged column -> target column
    mapping: dict
    resolves: tuple  # (staged key column, staged id column, table, table key column, reason)
    has_updated_at: bool
    has_created_by: bool


_TARGETS = {
    "customers": _Target(
        table=Customer._meta.db_table, key="external_id",
        mapping={"external_id": "external_id", "name": "name", "email": "email", "phone": "phone",
                 "company": "company", "country": "country", "city": "city", "signup_date": "signup_date",
                 "owner_username": "owner_id", "attributes": "attributes"},
        resolves=(("owner_username", "owner_id", get_user_model()._meta.db_table, "username",
                   "unknown owner {value!r}: no user with that username"),),
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
        resolves=(("customer_key", "customer_id", Customer._meta.db_table, "external_id",
                   "unknown customer {value!r}: not in this import's customers nor already stored"),
                  ("product_key", "product_id", Product._meta.db_table, "sku",
                   "unknown product {value!r}: not in this import's products nor already stored")),
        has_updated_at=False, has_created_by=True,
    ),
}

# Staging column types; the same names as crm.importing's FileSpec.columns.
_PG_TYPES = {"signup_date": "date", "price": "numeric", "active": "boolean", "occurred_at": "timestamptz",
             "quantity": "bigint", "amount": "numeric", "attributes": "jsonb"}
_SQLITE_TYPES = {"signup_date": "text", "price": "numeric", "active": "integer", "occurred_at": "text",
                 "quantity": "integer", "amount": "numeric", "attributes": "text"}


def _stage_name(kind):
    return f"crm_stage_{kind}"


class _Stager:
    """Temporary tables of one import on one connection, and the SQL that merges a batch."""

    def __init__(self, kind: str, spec: importing.FileSpec, written: tuple[str, ...], user_id):
        self.kind, self.spec, self.written = kind, spec, written
        self.target = _TARGETS[kind]
        self.user_id = user_id
        self.pg = connection.vendor == "postgresql"
        self.stage = _stage_name(kind)
        self.seen = f"crm_seen_{kind}"
        # Resolved keys (customer, product, owner) are joined in the merge, not copied into the
        # staging rows: an UPDATE of the staging table would rewrite every row of the batch.
        self.joins = [(i, r) for i, r in enumerate(self.target.resolves) if r[0] in written]

    def create(self, cursor):
        types = _PG_TYPES if self.pg else _SQLITE_TYPES
        cols = ["row_no bigint"] + [f"{c} {types.get(c, 'text')}" for c in self.spec.columns]
        cursor.execute(f"DROP TABLE IF EXISTS {self.stage}")
        cursor.execute(f"DROP TABLE IF EXISTS {self.seen}")
        cursor.execute(f"CREATE TEMP TABLE {self.stage} ({', '.join(cols)})")
        cursor.execute(f"CREATE TEMP TABLE {self.seen} (key text PRIMARY KEY, row_no bigint)")

    def drop(self, cursor):
        cursor.execute(f"DROP TABLE IF EXISTS {self.stage}")
        cursor.execute(f"DROP TABLE IF EXISTS {self.seen}")

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

    def load(self, cursor, rows):
        """Put one batch of (row_no, *staged) tuples in the staging table."""
        cursor.execute(f"DELETE FROM {self.stage}")
        names = ["row_no", *self.spec.columns]
        if self.pg:
            raw = cursor.cursor if hasattr(cursor, "cursor") else cursor
            with raw.copy(f"COPY {self.stage} ({', '.join(names)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            # Temporary tables are never analysed by autovacuum: without statistics the planner
            # hash-joins the whole target table instead of probing its unique index per row.
            cursor.execute(f"ANALYZE {self.stage}")
            cursor.execute("SET LOCAL work_mem = '64MB'")
            # A batch is small next to the stored table, so probing the unique index per staged
            # row is always right; the cost model prefers hashing the whole table once the batch
            # is a few percent of it, which makes each batch cost O(table size).
            cursor.execute("SET LOCAL enable_hashjoin = off")
            cursor.execute("SET LOCAL enable_mergejoin = off")
        else:
            conv = [i for i, c in enumerate(names) if c in ("occurred_at", "signup_date")]
            if conv:
                def fix(row):
                    row = list(row)
                    for i in conv:
                        row[i] = self._sqlite_value(names[i], row[i])
                    return row
                rows = [fix(r) for r in rows]
            marks = ", ".join(["%s"] * len(names))
            cursor.executemany(f"INSERT INTO {self.stage} ({', '.join(names)}) VALUES ({marks})", rows)

    def reject_duplicates(self, cursor):
        """Rows whose key already came earlier in this file: [(row_no, reason)]."""
        key = self.spec.key
        ignore = "" if self.pg else "OR IGNORE "
        conflict = " ON CONFLICT (key) DO NOTHING" if self.pg else ""
        cursor.execute(
            f"INSERT {ignore}INTO {self.seen} (key, row_no) SELECT {key}, MIN(row_no) FROM {self.stage} "
            f"GROUP BY {key}{conflict}"
        )
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

    def reject_unresolved(self, cursor):
        """Rows whose customer, product or owner key is unknown: [(row_no, reason)]."""
        out = []
        for _, (key_col, _id_col, table, table_key, reason) in self.joins:
            cursor.execute(
                f"SELECT s.row_no, s.{key_col} FROM {self.stage} s WHERE s.{key_col} <> '' AND NOT EXISTS "
                f"(SELECT 1 FROM {table} t WHERE t.{table_key} = s.{key_col})"
            )
            out.extend((row_no, reason.format(value=value)) for row_no, value in cursor.fetchall())
        return out

    def delete_rows(self, cursor, row_numbers):
        if not row_numbers:
            return
        numbers = sorted(set(row_numbers))
        for start in range(0, len(numbers), 500):
            chunk = numbers[start:start + 500]
            cursor.execute(f"DELETE FROM {self.stage} WHERE row_no IN ({', '.join(['%s'] * len(chunk))})", chunk)

    def _source(self, column):
        """The SQL expression that gives a staged column's target value."""
        for i, (key_col, *_rest) in self.joins:
            if key_col == column:
                return f"r{i}.id"
        return f"s.{column}"

    def _from(self):
        joins = "".join(f" LEFT JOIN {table} r{i} ON r{i}.{table_key} = s.{key_col}"
                        for i, (key_col, _id, table, table_key, _reason) in self.joins)
        return f"{self.stage} s{joins}"

    def merge(self, cursor, now):
        """Update changed stored rows, insert new ones; return (created, updated)."""
        t = self.target
        written = [c for c in self.written if c != self.spec.key]
        distinct = "IS DISTINCT FROM" if self.pg else "IS NOT"
        now_value = now if self.pg else now.replace(tzinfo=None).isoformat(sep=" ")
        updated = 0
        if written:
            sets = [f"{t.mapping[c]} = {self._source(c)}" for c in written]
            if t.has_updated_at:
                sets.append("updated_at = %s")
            changed = " OR ".join(f"{t.table}.{t.mapping[c]} {distinct} {self._source(c)}" for c in written)
            cursor.execute(
                f"UPDATE {t.table} SET {', '.join(sets)} FROM {self._from()} "
                f"WHERE {t.table}.{t.key} = s.{self.spec.key} AND ({changed})",
                [now_value] if t.has_updated_at else [],
            )
            updated = max(cursor.rowcount, 0)
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
        cursor.execute(
            f"INSERT INTO {t.table} ({', '.join(columns)}) SELECT {', '.join(values)} FROM {self._from()} "
            # Existing keys were updated above; the unique index skips them here, which is cheaper
            # than an anti-join. ("WHERE 1 = 1" resolves SQLite's parsing ambiguity of ON CONFLICT
            # after a join.)
            f"WHERE 1 = 1 ORDER BY s.row_no ON CONFLICT ({t.key}) DO NOTHING",
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


class _Rejects:
    """The NAME.rejected.csv of one file: written only when a row is rejected."""

    def __init__(self, path: Path, header: list[str]):
        self.path, self.header, self.count = path, header, 0
        self._file = None
        self._writer = None
        if path.exists():
            path.unlink()

    def add(self, row: int, reason: str, raw: list[str]):
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", newline="", encoding="utf-8", errors="backslashreplace")
            self._writer = csv.writer(self._file)
            self._writer.writerow(["row", "reason", *self.header])
        self._writer.writerow([row, reason, *raw])
        self.count += 1

    def close(self):
        if self._file is not None:
            self._file.close()


def _open_text(path: Path):
    binary = open(path, "rb")
    return binary, io.TextIOWrapper(binary, encoding="utf-8", errors="surrogateescape", newline="")


def rejected_path_for(path: Path, rejected_dir: Path | None = None) -> Path:
    name = path.name[:-4] if path.name.lower().endswith(".csv") else path.name
    return (rejected_dir or path.parent) / f"{name}.rejected.csv"


def _check_files(files: dict) -> dict:
    """Open every file and check its header before anything is written: {kind: header}."""
    headers = {}
    for kind, path in files.items():
        spec = importing.SPECS[kind]
        if not path.exists():
            raise ImportFailed(f"{kind} file {path} does not exist")
        if not path.is_file():
            raise ImportFailed(f"{kind} file {path} is not a file")
        try:
            binary, text = _open_text(path)
        except OSError as exc:
            raise ImportFailed(f"{kind} file {path} cannot be read: {exc.strerror}") from None
        try:
            rows = importing.read_rows(text, spec)
            headers[kind] = next(rows)
        except importing.FileError as exc:
            raise ImportFailed(f"{path}: {exc}") from None
        except OSError as exc:
            raise ImportFailed(f"{kind} file {path} cannot be read: {exc}") from None
        finally:
            text.close()
    return headers


def import_files(files: dict, *, user=None, source: str = "command", run: ImportRun | None = None,
                 rejected_dir: Path | None = None, progress=None, batch_size: int | None = None) -> ImportRun:
    """Import up to three contract CSV files: ``{"customers": path, "products": path, "interactions": path}``.

    Customers and products go first, so interactions may refer to them. Each file's bad rows
    go to ``NAME.rejected.csv`` (next to the file, or in ``rejected_dir``) with their line
    number and reason; good rows load. Returns the finished :class:`ImportRun`, whose files
    carry the counts. Raises :class:`ImportFailed`, having written no data, when a file is
    missing or its header unusable. ``progress(run, file_result)`` is called after each batch.
    """
    files = {kind: Path(files[kind]) for kind in ORDER if files.get(kind)}
    if not files:
        raise ImportFailed("no file given: name at least one of customers, products, interactions")
    if run is None:
        run = ImportRun.objects.create(user=user, source=source)
    try:
        headers = _check_files(files)
    except ImportFailed as exc:
        ImportRun.objects.filter(pk=run.pk).update(status=ImportRun.Status.FAILED, error=str(exc),
                                                   finished_at=timezone.now())
        run.refresh_from_db()
        raise
    total = sum(path.stat().st_size for path in files.values())
    ImportRun.objects.filter(pk=run.pk).update(status=ImportRun.Status.RUNNING, started_at=timezone.now(),
                                               heartbeat_at=timezone.now(), bytes_total=total, error="")
    run.refresh_from_db()
    user_id = run.user_id
    done_before = 0
    try:
        for kind, path in files.items():
            result = ImportFile.objects.create(run=run, kind=kind, filename=path.name, path=str(path))
            _import_one(run, result, kind, path, headers[kind], user_id, rejected_dir, progress,
                        batch_size or settings.IMPORT_BATCH_SIZE, done_before)
            done_before += path.stat().st_size
    except BaseException as exc:
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        ImportRun.objects.filter(pk=run.pk).update(
            status=ImportRun.Status.FAILED, error=f"stopped part-way ({reason}); every finished batch is stored, "
            "re-run the same import to complete it", finished_at=timezone.now())
        run.refresh_from_db()
        raise
    ImportRun.objects.filter(pk=run.pk).update(status=ImportRun.Status.SUCCEEDED, stage="done",
                                               bytes_done=total, finished_at=timezone.now())
    run.refresh_from_db()
    return run


def _import_one(run, result, kind, path, header, user_id, rejected_dir, progress, batch_size, done_before):
    spec = importing.SPECS[kind]
    written = spec.written_columns(header)
    rejects = _Rejects(rejected_path_for(path, rejected_dir), header)
    stager = _Stager(kind, spec, written, user_id)
    started = time.monotonic()
    binary, text = _open_text(path)
    counts = {"rows_read": 0, "created": 0, "updated": 0}
    tz = timezone.get_default_timezone()
    try:
        with connection.cursor() as cursor:
            stager.create(cursor)
        rows = importing.read_rows(text, spec, tz=tz)
        next(rows)  # the header, checked already
        batch, raws = [], {}

        batches = {"n": 0}
        pending = []  # (row, reason, raw) rejected in Python, written in row order at the next flush

        def flush():
            bad = []
            if batch:
                if batches["n"] % 10 == 0:
                    with connection.cursor() as cursor:
                        stager.analyze_target(cursor)
                batches["n"] += 1
                with transaction.atomic(), connection.cursor() as cursor:
                    stager.load(cursor, batch)
                    bad = stager.reject_duplicates(cursor)
                    stager.delete_rows(cursor, [r for r, _ in bad])
                    unresolved = stager.reject_unresolved(cursor)
                    stager.delete_rows(cursor, [r for r, _ in unresolved])
                    created, updated = stager.merge(cursor, timezone.now())
                bad += unresolved
                counts["created"] += created
                counts["updated"] += updated
            for row_no, reason, raw in sorted(pending + [(r, why, raws[r]) for r, why in bad]):
                rejects.add(row_no, reason, raw)
            batch.clear()
            raws.clear()
            pending.clear()
            _record_progress(run, result, counts, rejects, started, done_before + binary.tell(), progress)

        for parsed in rows:
            counts["rows_read"] += 1
            if parsed.values is None:
                pending.append((parsed.row, parsed.reason, parsed.raw))
            else:
                batch.append((parsed.row, *parsed.values))
                raws[parsed.row] = parsed.raw
            if len(batch) + len(pending) >= batch_size:
                flush()
        flush()
        _record_progress(run, result, counts, rejects, started, done_before + os.path.getsize(path), progress)
    finally:
        text.close()
        rejects.close()
        try:
            with connection.cursor() as cursor:
                stager.drop(cursor)
        except Exception:  # the connection may be the reason we are here; temp tables die with it
            log.debug("could not drop staging tables", exc_info=True)
    ImportFile.objects.filter(pk=result.pk).update(
        rejected_path=str(rejects.path) if rejects.count else "", seconds=time.monotonic() - started)
    result.refresh_from_db()
    return result


def _record_progress(run, result, counts, rejects, started, bytes_done, progress):
    unchanged = counts["rows_read"] - rejects.count - counts["created"] - counts["updated"]
    ImportFile.objects.filter(pk=result.pk).update(
        rows_read=counts["rows_read"], created=counts["created"], updated=counts["updated"],
        unchanged=max(unchanged, 0), rejected=rejects.count, seconds=time.monotonic() - started)
    ImportRun.objects.filter(pk=run.pk).update(
        stage=f"importing {result.kind}", bytes_done=bytes_done, heartbeat_at=timezone.now(),
        rows_done=_rows_done(run, result, counts))
    if progress is not None:
        result.refresh_from_db()
        run.refresh_from_db()
        progress(run, result)


def _rows_done(run, result, counts):
    earlier = sum(f.rows_read for f in run.files.exclude(pk=result.pk))
    return earlier + counts["rows_read"]


def save_uploads(uploads: dict, *, user=None, source: str = "upload") -> ImportRun:
    """Store uploaded files under MEDIA_ROOT/imports/<run id>/ and create their queued ImportRun."""
    run = ImportRun.objects.create(user=user, source=source, status=ImportRun.Status.QUEUED)
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
    originals = {f.kind: f.filename for f in run.files.all()}
    run.files.all().delete()  # recreated with their counts by import_files
    run = import_files(files, user=run.user, source=run.source, run=run,
                       rejected_dir=Path(settings.MEDIA_ROOT) / "imports" / str(run.pk), progress=progress)
    for result in run.files.all():
        ImportFile.objects.filter(pk=result.pk).update(filename=originals.get(result.kind, result.filename))
    return run


def import_uploads(uploads: dict, *, user=None, source: str = "upload") -> ImportRun:
    """Save uploaded files and import them now, in this process."""
    run = save_uploads(uploads, user=user, source=source)
    return run_saved_import(run.pk)


def summary(run: ImportRun) -> str:
    parts = [f"{f.kind}: {f.created} created, {f.updated} updated, {f.unchanged} unchanged, {f.rejected} rejected"
             for f in run.files.all()]
    return "; ".join(parts) or "nothing imported"


def ensure_sales_reps(usernames) -> list:
    """Create (if missing) users with the sales rep role; they own the demo's accounts."""
    from django.contrib.auth.models import Group

    from crm.models import ROLE_SALES_REP

    group = Group.objects.get(name=ROLE_SALES_REP)
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


def run_queued_import(run_id: int) -> ImportRun | None:
    """Claim a queued ImportRun (a conditional UPDATE, so a redelivered task does nothing) and run it."""
    claimed = ImportRun.objects.filter(pk=run_id, status=ImportRun.Status.QUEUED).update(
        status=ImportRun.Status.RUNNING, heartbeat_at=timezone.now())
    if not claimed:
        return None
    try:
        return run_saved_import(run_id)
    except ImportFailed:
        return ImportRun.objects.get(pk=run_id)


def enqueue_import(uploads: dict, *, user=None, source: str = "upload") -> ImportRun:
    """Save uploads and hand the import to a worker once this transaction commits."""
    from crm.tasks import run_import_task

    run = save_uploads(uploads, user=user, source=source)
    transaction.on_commit(lambda: run_import_task.delay(run.pk))
    return run
