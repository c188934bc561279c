"""One import job: check every file, then read, stage and merge each in batches.

The import is one service behind every door (the ``import_data`` command, the admin and web
upload, the API, ``seed_demo``). It streams each file in batches, validates them
(crm.imports.batches, rows: column-wise with pyarrow, row by row for what that flags), stages each
batch of good rows in a temporary table (crm.imports.staging), resolves keys, finds the stored
rows and merges in SQL, one transaction per batch: a crash or Ctrl-C leaves whole batches
only, and re-running the same file completes it without duplicates. Figures: BENCHMARKS.md.
"""
from __future__ import annotations

import csv
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from crm import audit, hooks
from crm.imports import bulk, storage
from crm.imports.batches import read_batches
from crm.imports.formats import FileFormat, _Lines, csv_reader, detect_format, more_rows_than, utf8_stream
from crm.imports.headers import Header, check_mapping, read_header, suggest_mapping
from crm.imports.reports import PREVIEW_ROWS, _preview, _Rejects, _report, rejected_path_for
from crm.imports.rows import SPECS
from crm.imports.staging import _dry_tables, _Stager
from crm.imports.values import DATE_FORMATS, FileError, Options
from crm.interactions import refresh_last_purchase
from crm.models import AuditEvent, ImportFile, ImportRun, ImportSource

log = logging.getLogger(__name__)


ORDER = ("customers", "products", "interactions")


class ImportFailed(Exception):
    """The import could not run at all (missing file, unreadable header, missing column)."""


def row_limit_message(kind: str) -> str:
    return (f"the {kind} file has more than {settings.IMPORT_MAX_ROWS:,} rows, the limit (IMPORT_MAX_ROWS); "
            "split it into smaller files")


@dataclass
class _Checked:
    """One file of an import after its header was read (or failed to be)."""

    kind: str
    path: Path
    name: str  # what messages call it: the file's own name, never a server path
    fmt: FileFormat | None = None
    header: Header | None = None
    raw_header: list | None = None
    error: str = ""


def _check_file(kind: str, path: Path, name: str, mapping: dict, apply_suggestions: bool) -> _Checked:
    checked = _Checked(kind, path, name)
    spec = SPECS[kind]
    if not path.exists():
        checked.error = f"{kind} file {name} does not exist"
        return checked
    if not path.is_file():
        checked.error = f"{kind} file {name} is not a file"
        return checked
    try:
        with open(path, "rb") as binary:
            checked.fmt = fmt = detect_format(binary)
            lines = _Lines(utf8_stream(binary, fmt.encoding))
            reader = csv_reader(lines, fmt)
            try:
                checked.header = read_header(reader, spec, mapping, apply_suggestions)
            except FileError as exc:
                checked.error = f"{kind} file {name} ({fmt.describe()}): {exc}"
                binary.seek(0)
                first = next(csv_reader(_Lines(utf8_stream(binary, fmt.encoding)),
                                                  fmt), [])
                checked.raw_header = [c.strip().lstrip("\ufeff") for c in first]
                return checked
            binary.seek(0)
            if more_rows_than(binary, settings.IMPORT_MAX_ROWS, fmt):
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


def _check_files(run: ImportRun, files: dict, names: dict, mapping: dict, temporary: bool) -> dict:
    """Read every file's format and header before anything is written, and record them on the
    run's ImportFile rows: {kind: _Checked}. Raises ImportFailed naming every file's problem."""
    checked = {}
    for kind, path in files.items():
        try:
            check_mapping(SPECS[kind], mapping.get(kind, {}))
        except FileError as exc:
            checked[kind] = _Checked(kind, path, names[kind], error=str(exc))
            continue
        checked[kind] = _check_file(kind, path, names[kind], mapping.get(kind, {}), apply_suggestions=run.dry_run)
    for c in checked.values():
        ImportFile.objects.update_or_create(run=run, kind=c.kind, defaults=dict(
            filename=c.name[:500], path="" if temporary else str(c.path), error=c.error,
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
    return suggest_mapping(SPECS[c.kind], c.raw_header) if c.raw_header else {}


def import_files(files: dict, *, user=None, source: str = "command", run: ImportRun | None = None,
                 rejected_dir: Path | None = None, progress=None, batch_size: int | None = None,
                 names: dict | None = None, dry_run: bool = False, date_format: str = "", mapping: dict | None = None,
                 source_name: str = "", temporary: bool = False) -> ImportRun:
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
    Every report is also stored with the run (crm.imports.storage), where every web server reads
    it. ``temporary``: the files and ``rejected_dir`` are a worker's copies of stored uploads,
    so their paths are not recorded.
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
        if date_format not in DATE_FORMATS:
            raise ImportFailed(f"date format {date_format!r} is not one of {', '.join(DATE_FORMATS)}")
        checked = _check_files(run, files, names, mappings, temporary)
    except ImportFailed as exc:
        ImportRun.objects.filter(pk=run.pk).update(status=ImportRun.Status.FAILED, error=str(exc),
                                                   finished_at=timezone.now())
        run.refresh_from_db()
        raise
    if run.source_name and not run.dry_run:
        # The whole mapping asked for (or saved) per kind: entries for columns this file lacks stay.
        save_source(run.source_name, mapping={kind: check_mapping(SPECS[kind], m)
                                              for kind, m in mappings.items()}, date_format=date_format, user=run.user)
    total = sum(path.stat().st_size for path in files.values())
    ImportRun.objects.filter(pk=run.pk).update(status=ImportRun.Status.RUNNING, started_at=timezone.now(),
                                               heartbeat_at=timezone.now(), bytes_total=total, error="")
    run.refresh_from_db()
    options = Options(tz=timezone.get_default_timezone(), date_format=date_format)
    done_before = 0
    try:
        if run.dry_run:
            with connection.cursor() as cursor:
                _dry_tables(cursor, create=True)
        for c in checked.values():
            _import_one(run, c, options, rejected_dir, progress, batch_size or settings.IMPORT_BATCH_SIZE, done_before,
                        temporary)
            done_before += c.path.stat().st_size
    except BaseException as exc:
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else _without_paths(exc, checked)
        if run.dry_run:
            error = f"the dry run stopped ({reason})"
        elif getattr(exc, "first_load", None):
            error = (f"stopped part-way ({reason}); the first load of {exc.first_load} is rolled back whole "
                     "(nothing of that file is stored), re-run the same import to complete it")
        else:
            error = f"stopped part-way ({reason}); every finished batch is stored, re-run the same import to complete it"
        with transaction.atomic():
            ImportRun.objects.filter(pk=run.pk).update(status=ImportRun.Status.FAILED, error=error,
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


def _import_one(run, checked: _Checked, options, rejected_dir, progress, batch_size, done_before, temporary):
    kind, path, header = checked.kind, checked.path, checked.header
    spec = SPECS[kind]
    result = ImportFile.objects.get(run=run, kind=kind)
    written = spec.written_columns(header.names)
    if bulk.applies(kind, run.dry_run):
        try:
            return _bulk_load_one(run, result, checked, written, options, rejected_dir, progress, batch_size,
                                  done_before, temporary)
        except bulk.NotEmpty:  # another import stored rows first: merge with them batch by batch
            log.info("%s: the table gained rows before the first load's lock; merging batch by batch", kind)
            result.refresh_from_db()
    rejects = _Rejects(rejected_path_for(path, rejected_dir, dry_run=run.dry_run), header.original)
    stager = _Stager(kind, spec, written, run.user_id, dry_run=run.dry_run)
    started = time.monotonic()
    binary = open(path, "rb")
    counts = {"rows_read": 0, "created": 0, "updated": 0}
    try:
        with connection.cursor() as cursor:
            stager.create(cursor)
        batches = read_batches(binary, spec, batch_size, options, checked.fmt, header.mapping)
        next(batches)  # the header, checked already
        follow = _Follow(run, result, spec, written, options, rejects, started, progress)
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
            follow.batch_done(batch, bad, warned, counts, done_before + binary.tell())
        _record_progress(run, result, counts, rejects, started, done_before + os.path.getsize(path), progress)
    finally:
        binary.close()
        rejects.close()
        try:
            with connection.cursor() as cursor:
                stager.drop(cursor)
        except Exception:  # the connection may be the reason we are here; temp tables die with it
            log.debug("could not drop staging tables", exc_info=True)
    _finish_file(run, result, rejects, started, temporary)
    return result


def _finish_file(run, result, rejects, started, temporary):
    reported = bool(rejects.count or rejects.warned)
    if reported:
        storage.store_path(run, result.kind, storage.REPORT, rejects.path)
    else:  # a retry that rejected nothing replaces the report of the attempt before
        storage.delete_report(run, result.kind)
    ImportFile.objects.filter(pk=result.pk).update(
        rejected_path=str(rejects.path) if reported and not temporary else "", seconds=time.monotonic() - started)
    result.refresh_from_db()


class _Follow:
    """What follows each batch on either path: its rejected rows and warnings to the report, the
    file's preview, and the progress (counts, bytes, heartbeat) on the run."""

    def __init__(self, run, result, spec, written, options, rejects, started, progress, side=None):
        self.run, self.result, self.spec, self.written, self.options = run, result, spec, written, options
        self.rejects, self.started, self.progress, self.side = rejects, started, progress, side
        self.preview = []

    def batch_done(self, batch, bad, warned, counts, bytes_done):
        reported = _report(batch, bad, warned)
        for row_no, outcome, reason, raw in reported:
            self.rejects.add(row_no, outcome, reason, raw)
        if len(self.preview) < PREVIEW_ROWS:
            self.preview += _preview(self.spec, self.written, batch, reported, self.options,
                                     PREVIEW_ROWS - len(self.preview))
            _update(ImportFile, self.result.pk, self.side, preview=self.preview)
        _record_progress(self.run, self.result, counts, self.rejects, self.started, bytes_done, self.progress,
                         self.side)


def _update(model, pk, side, **fields):
    """An UPDATE of one row: through the first load's side connection when it has one."""
    if side is None:
        model.objects.filter(pk=pk).update(**fields)
    else:
        side.update(model, pk, fields)


def _record_progress(run, result, counts, rejects, started, bytes_done, progress, side=None):
    unchanged = counts["rows_read"] - rejects.count - counts["created"] - counts["updated"]
    _update(ImportFile, result.pk, side,
            rows_read=counts["rows_read"], created=counts["created"], updated=counts["updated"],
            unchanged=max(unchanged, 0), rejected=rejects.count, warned=rejects.warned,
            seconds=time.monotonic() - started)
    _update(ImportRun, run.pk, side,
            stage=f"{'checking' if run.dry_run else 'importing'} {result.kind}"
            + (" (first load, one transaction)" if side is not None else ""),
            bytes_done=bytes_done, heartbeat_at=timezone.now(), rows_done=_rows_done(run, result, counts))
    if progress is not None:
        result.refresh_from_db()
        run.refresh_from_db()
        progress(run, result)


def _bulk_load_one(run, result, checked, written, options, rejected_dir, progress, batch_size, done_before,
                   temporary):
    """One file's first load into its empty table (crm.imports.bulk): one transaction."""
    kind, path, header = checked.kind, checked.path, checked.header
    spec = SPECS[kind]
    loader = bulk.BulkLoad(kind, spec, written, run.user_id)
    started = time.monotonic()
    counts = {"rows_read": 0, "created": 0, "updated": 0}
    sqlite = connection.vendor == "sqlite"
    # SQLite checks each foreign key per row unless they are off, which only a connection outside
    # a transaction can do; finish() checks them all in one pass instead.
    unchecked = sqlite and not connection.in_atomic_block and connection.disable_constraint_checking()
    side = bulk.SideConnection.open()
    rejects = None
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            loader.begin(cursor)  # NotEmpty: nothing written, the caller merges batch by batch
            rejects = _Rejects(rejected_path_for(path, rejected_dir), header.original)
            follow = _Follow(run, result, spec, written, options, rejects, started, progress, side)
            with open(path, "rb") as binary:
                batches = read_batches(binary, spec, batch_size, options, checked.fmt, header.mapping)
                next(batches)  # the header, checked already
                for batch in batches:
                    counts["rows_read"] += batch.rows_read
                    bad, warned, created = loader.write(cursor, batch, timezone.now())
                    counts["created"] += created
                    follow.batch_done(batch, bad, warned, counts, done_before + binary.tell())
            _update(ImportRun, run.pk, side, stage=f"importing {kind}: building indexes", heartbeat_at=timezone.now())
            loader.finish(cursor)
    except BaseException as exc:
        if rejects is not None:  # nothing of the load stays, so neither does its report
            rejects.close()
            rejects.path.unlink(missing_ok=True)
            exc.first_load = checked.name
        raise
    finally:
        if side is not None:
            side.close()
        if unchecked:
            connection.enable_constraint_checking()
    rejects.close()
    _record_progress(run, result, counts, rejects, started, done_before + os.path.getsize(path), progress)
    _finish_file(run, result, rejects, started, temporary)
    return result


def _rows_done(run, result, counts):
    earlier = sum(f.rows_read for f in run.files.exclude(pk=result.pk))
    return earlier + counts["rows_read"]


def summary(run: ImportRun) -> str:
    parts = [f"{f.kind}: {f.created} created, {f.updated} updated, {f.unchanged} unchanged, {f.rejected} rejected"
             + (f", {f.warned} with warnings" if f.warned else "") for f in run.files.all()]
    return "; ".join(parts) or "nothing imported"


def schedule_retrain_after_import(run: ImportRun) -> list:
    """Queue a retrain of every model after an import that changed data (RETRAIN_AFTER_IMPORT):
    what the apps registered in crm.hooks do (ml queues one run per kind); their runs."""
    if (not settings.RETRAIN_AFTER_IMPORT or run.dry_run
            or run.status not in (ImportRun.Status.SUCCEEDED, ImportRun.Status.PARTIAL)):
        return []
    if not any(f.created or f.updated for f in run.files.all()):
        return []
    return hooks.data_changed(user=run.user, trigger="import")
