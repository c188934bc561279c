"""Where an import's files live so that every machine of a deployment reads them: the uploaded
CSVs and the rejected-rows reports (crm.StoredFile).

By default in the database, as rows of CHUNK_BYTES (crm.StoredFileChunk), written and read one
chunk at a time, so a file of hundreds of MB is never one value in memory; with IMPORT_STORAGE=s3
in an object store through django-storages (the ``imports`` storage of settings.STORAGES). Each
file records its own backend, so files saved before a change of IMPORT_STORAGE stay readable.
A worker copies a stored upload to a local temporary file to import it (:func:`fetch`).
"""
from __future__ import annotations

import io
import logging
import shutil
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import storages
from django.db import connection, transaction
from django.utils import timezone

from crm import sql
from crm.models import ImportRun, StoredFile, StoredFileChunk
from crm.streams import BlockReader

log = logging.getLogger(__name__)

# Bytes per database row: a few MB keeps the rows of a 200 MB upload to ~50 round trips while one
# row (and the driver's copy of it) stays small next to a worker's memory.
CHUNK_BYTES = 4 * 1024 * 1024

UPLOAD, REPORT = StoredFile.Role.UPLOAD, StoredFile.Role.REPORT


def _object_store():
    return storages["imports"]


def store(run: ImportRun, kind: str, role: str, name: str, content: File) -> StoredFile:
    """Keep ``content`` (a Django File: an upload, or ``File(open(path, "rb"))``) as the run's
    ``role`` file of ``kind``, replacing one stored before (a retried import's report).

    Database: one transaction, so a failure part-way leaves no part of the file (the caller's
    transaction, when there is one, decides for the file and the run together). Object store:
    the object is written first; if recording it fails the object is deleted again."""
    backend = StoredFile.Backend(settings.IMPORT_STORAGE)
    with transaction.atomic():
        _delete(StoredFile.objects.filter(run=run, kind=kind, role=role))
        stored = StoredFile.objects.create(run=run, kind=kind, role=role, name=name[:500], backend=backend)
        if backend == StoredFile.Backend.S3:
            key = _object_store().save(f"{run.pk}/{role}-{kind}.csv", content)
            try:
                StoredFile.objects.filter(pk=stored.pk).update(key=key, size=content.size)
            except BaseException:
                _object_store().delete(key)
                raise
        else:
            size = 0
            for number, data in enumerate(_chunks(content)):
                _insert_chunk(stored.pk, number, data)
                size += len(data)
            StoredFile.objects.filter(pk=stored.pk).update(size=size)
    stored.refresh_from_db()
    return stored


def _chunks(content: File):
    """``content`` in pieces of CHUNK_BYTES (File.chunks() gives a small upload in one piece of
    any size, and the database rows must stay bounded)."""
    try:
        content.seek(0)
    except (AttributeError, OSError, io.UnsupportedOperation):  # a stream read once, from its start
        pass
    while data := content.read(CHUNK_BYTES):
        yield data


def _insert_chunk(file_id: int, number: int, data: bytes) -> None:
    """One chunk row, written past Django's cursor wrapper, so that the chunk is only ever a
    query parameter: in DEBUG the wrapper keeps every query's text with its parameters spelled out,
    and the ORM's psycopg cursors bind on the client (the chunk, as hex, inside the query text),
    and psycopg keeps the text of a connection's last 100 distinct queries to decide what to
    prepare. Either way a 200 MB upload stayed in memory (measured: +500 MB)."""
    connection.ensure_connection()
    query = (f"INSERT INTO {sql.table(StoredFileChunk)} ({sql.column(StoredFileChunk, 'file')}, "
             f"{sql.column(StoredFileChunk, 'number')}, {sql.column(StoredFileChunk, 'data')}) VALUES (%s, %s, %s)")
    if connection.vendor == "postgresql":
        from django.db.backends.postgresql.base import ServerBindingCursor  # needs psycopg: PostgreSQL only

        with ServerBindingCursor(connection.connection) as cursor:
            cursor.execute(query, [file_id, number, data])
    else:
        connection.connection.execute(query.replace("%s", "?"), (file_id, number, data))


def store_path(run: ImportRun, kind: str, role: str, path: Path, name: str = "") -> StoredFile:
    """:func:`store` a local file."""
    with open(path, "rb") as f:
        return store(run, kind, role, name or path.name, File(f, name=path.name))


def find(run_id: int, kind: str, role: str) -> StoredFile | None:
    return StoredFile.objects.filter(run_id=run_id, kind=kind, role=role).first()


def _stored_chunks(stored: StoredFile):
    """The stored file's chunks in order, one query each (never the whole file in memory)."""
    for number in StoredFileChunk.objects.filter(file=stored).order_by("number").values_list("number", flat=True):
        yield bytes(StoredFileChunk.objects.filter(file_id=stored.pk, number=number).values_list("data", flat=True).get())


def open_stored(stored: StoredFile):
    """A binary file object reading ``stored`` from where it is kept, a chunk at a time."""
    if stored.backend == StoredFile.Backend.S3:
        return _object_store().open(stored.key, "rb")
    return io.BufferedReader(BlockReader(_stored_chunks(stored)), buffer_size=CHUNK_BYTES)


def fetch(stored: StoredFile, target: Path) -> Path:
    """Copy a stored file to the local file ``target`` (what an import reads), a chunk at a time."""
    with open_stored(stored) as source, open(target, "wb") as out:
        shutil.copyfileobj(source, out, CHUNK_BYTES)
    return target


def copy(stored: StoredFile, run: ImportRun) -> StoredFile:
    """The same file stored again for another run (a dry run's files imported for real)."""
    with open_stored(stored) as source:
        return store(run, stored.kind, stored.role, stored.name, File(source, name=stored.name))


def open_report(import_file):
    """The rejected-rows report of an ImportFile as (binary file, download name), or None: the
    stored one, else one written on this machine's disk (an import from the command line, or one
    saved before reports were stored)."""
    stored = find(import_file.run_id, import_file.kind, REPORT)
    if stored is not None:
        return open_stored(stored), stored.name
    path = Path(import_file.rejected_path) if import_file.rejected_path else None
    if path is not None and path.is_file():
        return open(path, "rb"), path.name
    return None


def delete_report(run: ImportRun, kind: str) -> None:
    _delete(StoredFile.objects.filter(run=run, kind=kind, role=REPORT))


def _delete(files) -> int:
    """Delete StoredFile rows with their chunks or objects: how many files."""
    doomed = list(files.values_list("pk", "backend", "key"))
    for _pk, backend, key in doomed:
        if backend == StoredFile.Backend.S3 and key:
            _object_store().delete(key)
    ids = [pk for pk, _backend, _key in doomed]
    if ids:
        StoredFileChunk.objects.filter(file_id__in=ids).delete()
        StoredFile.objects.filter(pk__in=ids).delete()
    return len(ids)


def delete_expired_files(now=None) -> int:
    """Delete the stored files (uploads and reports) of imports that finished more than
    IMPORT_FILE_RETENTION_DAYS ago; queued and running imports keep theirs. Called by beat's
    sweep. Returns how many files were deleted."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.IMPORT_FILE_RETENTION_DAYS)
    expired = StoredFile.objects.filter(run__status__in=ImportRun.FINISHED, run__finished_at__lt=cutoff)
    deleted = 0
    # A few files per transaction: each holds its file's chunks, so one lock never spans every file.
    while ids := list(expired.order_by("pk").values_list("pk", flat=True)[:20]):
        with transaction.atomic():
            deleted += _delete(StoredFile.objects.filter(pk__in=ids))
    if deleted:
        log.info("deleted %d stored import files older than %d days", deleted, settings.IMPORT_FILE_RETENTION_DAYS)
    return deleted
