"""Imports run by a worker: stored uploads, queued runs, their claim, sweep and resend.

The lifecycle (claim, heartbeat, sweep, resend) is crm.jobs', shared with training runs.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from crm import jobs
from crm.imports import storage
from crm.imports.importer import ORDER, ImportFailed, import_files
from crm.models import ImportFile, ImportRun


def save_uploads(uploads: dict, *, user=None, source: str = "upload", in_process: bool = False,
                 dry_run: bool = False, date_format: str = "", source_name: str = "",
                 mapping: dict | None = None) -> ImportRun:
    """Create a queued ImportRun and store its uploaded files where every worker reads them
    (crm.imports.storage: the database, or the object store), in one transaction: a request
    that fails part-way leaves neither the run nor any part of a file.

    ``in_process``: the caller imports them itself, so no worker must be sent the run. The
    other options are import_files()'s.
    """
    with transaction.atomic():
        run = ImportRun.objects.create(user=user, source=source, status=ImportRun.Status.QUEUED,
                                       dispatched_at=timezone.now() if in_process else None, dry_run=dry_run,
                                       date_format=date_format, source_name=source_name, mapping=mapping or {})
        for kind in ORDER:
            upload = uploads.get(kind)
            if not upload:
                continue
            name = Path(upload.name).name[:500]
            storage.store(run, kind, storage.UPLOAD, name, upload)
            ImportFile.objects.create(run=run, kind=kind, filename=name)
    return run


def _files_gone(run: ImportRun, missing: list[str]) -> ImportFailed:
    error = (f"the uploaded file(s) {', '.join(missing)} are no longer kept (files of finished imports are deleted "
             f"after IMPORT_FILE_RETENTION_DAYS, {settings.IMPORT_FILE_RETENTION_DAYS} days): upload them again")
    ImportRun.objects.filter(pk=run.pk).update(status=ImportRun.Status.FAILED, error=error, finished_at=timezone.now())
    return ImportFailed(error)


# A worker's temporary copies of one attempt at an import: crm-import-<run id>-<attempt>-<random>.
COPY_PREFIX = "crm-import-"


def remove_orphaned_copies() -> int:
    """Delete this machine's temporary copies that a killed worker left (SIGKILL, or Celery's hard
    time limit, skips the clean-up): those of imports not running, or of an attempt other than the
    running one, or whose heartbeat went stale (taken as dead, as the sweep does). How many."""
    found = {}
    for folder in Path(tempfile.gettempdir()).glob(f"{COPY_PREFIX}*-*-*"):
        pk, attempt = folder.name[len(COPY_PREFIX):].split("-")[:2]
        if pk.isdigit() and attempt.isdigit() and folder.is_dir():
            found.setdefault(int(pk), []).append((int(attempt), folder))
    if not found:
        return 0
    alive = dict(ImportRun.objects.filter(pk__in=found, status=ImportRun.Status.RUNNING,
                                          heartbeat_at__gte=timezone.now() - jobs.stale_after())
                 .values_list("pk", "attempts"))
    removed = 0
    for pk, copies in found.items():
        for attempt, folder in copies:
            if alive.get(pk) != attempt:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
    return removed


def run_saved_import(run_id: int, progress=None) -> ImportRun:
    """Import the files stored for a queued ImportRun (the background half of an upload): each is
    copied from where it is stored to a temporary file of this process, so any worker can run it,
    and its rejected-rows reports are stored back (crm.imports.storage)."""
    run = ImportRun.objects.get(pk=run_id)
    stored = {f.kind: f for f in run.stored_files.filter(role=storage.UPLOAD)}
    # The stored files say what to import: a retry whose first attempt died after the ImportFile
    # rows were deleted below still finds them.
    listed = {f.kind: f for f in run.files.all()}
    remove_orphaned_copies()
    with tempfile.TemporaryDirectory(prefix=f"{COPY_PREFIX}{run.pk}-{run.attempts}-") as folder:
        files, names, missing = {}, {}, []
        for kind in ORDER:
            f = listed.get(kind)
            if kind in stored:
                names[kind] = f.filename if f else stored[kind].name
                files[kind] = storage.fetch(stored[kind], Path(folder) / f"{kind}.csv")
            elif f and f.path and Path(f.path).is_file():  # saved on this machine's disk before uploads were stored
                names[kind], files[kind] = f.filename, Path(f.path)
            elif f:
                missing.append(f.filename)
        if missing:
            raise _files_gone(run, missing)
        run.files.all().delete()  # recreated with their counts by import_files
        return import_files(files, run=run, rejected_dir=Path(folder), progress=progress, names=names,
                            temporary=True)


def import_uploads(uploads: dict, *, user=None, source: str = "upload", **options) -> ImportRun:
    """Save uploaded files and import them now, in this process (options: import_files()'s)."""
    run = save_uploads(uploads, user=user, source=source, in_process=True, **options)
    return run_saved_import(run.pk)


def import_checked(run_id: int, *, user=None, mapping: dict | None = None, date_format: str | None = None,
                   source_name: str | None = None, dry_run: bool = False, source: str | None = None) -> ImportRun:
    """A new queued import of the files a dry run checked (after the mapping was confirmed or
    changed): the files are copied, so the dry run keeps its own record. ``dry_run``: check
    again instead. The caller dispatches it (see enqueue_checked). A file no longer kept
    (IMPORT_FILE_RETENTION_DAYS) is named by the new run's error when a worker takes it."""
    checked = ImportRun.objects.get(pk=run_id)
    stored = {f.kind: f for f in checked.stored_files.filter(role=storage.UPLOAD)}
    with transaction.atomic():
        run = ImportRun.objects.create(
            user=user, source=source or checked.source, status=ImportRun.Status.QUEUED, dry_run=dry_run,
            date_format=checked.date_format if date_format is None else date_format,
            source_name=checked.source_name if source_name is None else source_name,
            mapping=checked.mapping if mapping is None else mapping)
        for f in checked.files.all():
            if f.kind in stored:
                storage.copy(stored[f.kind], run)
            elif f.path and Path(f.path).is_file():  # saved on this machine's disk before uploads were stored
                storage.store_path(run, f.kind, storage.UPLOAD, Path(f.path), name=f.filename)
            ImportFile.objects.create(run=run, kind=f.kind, filename=f.filename)
    return run


# An import is tried this many times in all (worker deaths included) before it is marked failed.
IMPORT_MAX_ATTEMPTS = 3


# Only saved uploads can be handed to another worker; a command's files may live on its machine only.
REQUEUABLE_SOURCES = ("upload", "api")
# The task that runs one queued import (crm.tasks), sent by name.
RUN_IMPORT_TASK = "crm.run_import"


def run_queued_import(run_id: int) -> ImportRun | None:
    """Claim a queued ImportRun, or a running one whose worker died (stale heartbeat), and run it.

    The claim is a conditional UPDATE (crm.jobs), so a redelivered task whose import already
    finished does nothing. Re-running a half-done import is safe: every batch is an idempotent upsert.
    """
    if not jobs.claim(ImportRun, run_id, max_attempts=IMPORT_MAX_ATTEMPTS):
        return None
    try:
        with jobs.Heartbeat(ImportRun, run_id, jobs.heartbeat_seconds()):
            return run_saved_import(run_id)
    except ImportFailed:
        return ImportRun.objects.get(pk=run_id)


def sweep_stale_imports() -> dict:
    """Imports whose worker died (no heartbeat for ML_STALE_AFTER_SECONDS): queue saved uploads
    again for a worker, up to IMPORT_MAX_ATTEMPTS; fail the others with what to do."""
    stale, running = jobs.stale_running(ImportRun)
    requeued, failed = [], []
    for pk, source, attempts in running.order_by("pk").values_list("pk", "source", "attempts"):
        if source in REQUEUABLE_SOURCES and attempts < IMPORT_MAX_ATTEMPTS:
            if jobs.requeue_stale(ImportRun, pk, stale):
                requeued.append(pk)
        elif jobs.fail_stale(ImportRun, pk, stale,
                             f"the import stopped part-way (its process stopped responding, attempt {attempts}); "
                             "rows of finished batches are stored: re-run the same import to complete it"):
            failed.append(pk)
    return {"requeued": requeued, "failed": failed}


def enqueue_import(uploads: dict, *, user=None, source: str = "upload", **options) -> ImportRun:
    """Save uploads and hand the import (or dry run) to a worker once this transaction commits.

    ``options``: save_uploads()'s (dry_run, date_format, source_name, mapping). Raises
    :class:`crm.jobs.BackgroundUnavailable` (outside a transaction) when the broker cannot be
    reached: the run stays queued with its files and is sent when the broker is back.
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
    what = f"{'dry run' if run.dry_run else 'import'} #{run.pk}"
    jobs.dispatch_on_commit(RUN_IMPORT_TASK, ImportRun, run.pk, what)


def send_pending_imports() -> tuple[list[int], bool]:
    """Send the queued imports whose task never reached the broker, or whose message looks lost:
    (the ids sent, whether the broker could be reached)."""
    queued = ImportRun.objects.filter(status=ImportRun.Status.QUEUED)
    jobs.release_overdue(ImportRun, queued.values_list("pk", flat=True))
    return jobs.send_queued(RUN_IMPORT_TASK, ImportRun, queued)


def dispatch_pending_imports() -> list[int]:
    """:func:`send_pending_imports`' ids sent."""
    return send_pending_imports()[0]
