"""Uploaded import files and their rejected-rows reports live where every machine reads them
(the database by default, crm.imports.storage): nothing is written under MEDIA_ROOT, a worker
with a MEDIA_ROOT of its own imports them, and finished imports' files go after the retention."""
import hashlib
import os
import tempfile
import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from crm.imports import queue, storage
from crm.imports.importer import ImportFailed
from crm.models import Customer, ImportFile, ImportRun, StoredFile, StoredFileChunk
from tests.conftest import wait_for

CUSTOMERS = b"external_id,name,email\nU1,Ann,ann@example.com\nU2,Bob,not-an-email\n,No key,\n"


def _upload(content=CUSTOMERS, name="customers.csv"):
    return SimpleUploadedFile(name, content, content_type="text/csv")


def _files_under(folder: Path) -> list:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "web-media"
    return settings.MEDIA_ROOT


@pytest.fixture
def manager_client(manager):
    client = APIClient()
    client.force_login(manager)
    return client


def _stored_bytes(run, kind="customers", role=storage.UPLOAD) -> bytes:
    with storage.open_stored(storage.find(run.pk, kind, role)) as f:
        return f.read()


# --- the doors store uploads in the database ----------------------------------------------------

def test_storage_page_upload_is_stored_in_the_database_not_under_media_root(
        manager_client, media, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        response = manager_client.post(reverse("import_list"), {"customers": _upload()}, format="multipart")

    run = ImportRun.objects.get()
    assert response.status_code == 302 and run.status == "queued"
    stored = run.stored_files.get()
    assert (stored.kind, stored.role, stored.name, stored.size, stored.backend) == (
        "customers", "upload", "customers.csv", len(CUSTOMERS), "database")
    assert _stored_bytes(run) == CUSTOMERS
    assert run.files.get().path == ""
    assert _files_under(media) == []


def test_storage_api_upload_is_stored_in_the_database_not_under_media_root(
        manager_client, media, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        response = manager_client.post("/api/v1/imports/", {"customers": _upload()}, format="multipart")

    assert response.status_code == 202
    run = ImportRun.objects.get(pk=response.json()["id"])
    assert _stored_bytes(run) == CUSTOMERS
    assert _files_under(media) == []


class _BrokenUpload(SimpleUploadedFile):
    """An upload whose stream breaks after its first chunk (a client that went away)."""

    def read(self, size=-1):
        if self.file.tell():
            raise OSError("connection reset while reading the upload")
        return super().read(size)


def test_storage_upload_failing_part_way_leaves_no_run_and_no_chunk(db, media):
    broken = _BrokenUpload("big.csv", b"external_id\n" + b"K1\n" * (storage.CHUNK_BYTES // 2), "text/csv")

    with pytest.raises(OSError, match="connection reset"):
        queue.save_uploads({"customers": _upload(), "interactions": broken}, source="upload")

    assert (ImportRun.objects.count(), StoredFile.objects.count(), StoredFileChunk.objects.count()) == (0, 0, 0)


def test_storage_file_larger_than_one_chunk_round_trips_byte_for_byte(db, tmp_path):
    run = ImportRun.objects.create(source="upload")
    content = os.urandom(2 * storage.CHUNK_BYTES + 12345)

    stored = storage.store(run, "customers", storage.UPLOAD, "big.csv", _upload(content, "big.csv"))

    sizes = list(StoredFileChunk.objects.filter(file=stored).order_by("number").values_list("number", "data"))
    assert [(n, len(d)) for n, d in sizes] == [(0, storage.CHUNK_BYTES), (1, storage.CHUNK_BYTES), (2, 12345)]
    assert stored.size == len(content)
    copied = storage.fetch(stored, tmp_path / "copy.csv")
    assert hashlib.sha256(copied.read_bytes()).hexdigest() == hashlib.sha256(content).hexdigest()
    with storage.open_stored(stored) as f:  # read in small pieces, across chunk boundaries
        pieces = iter(lambda: f.read(1_000_003), b"")
        assert b"".join(pieces) == content


def test_storage_store_keeps_no_copy_of_the_file_in_memory(db, settings):
    settings.DEBUG = True  # the query log of development must not keep the chunks either
    run = ImportRun.objects.create(source="upload")
    upload = _upload(os.urandom(3 * storage.CHUNK_BYTES), "big.csv")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        storage.store(run, "customers", storage.UPLOAD, "big.csv", upload)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert kept - before < storage.CHUNK_BYTES // 4  # nothing of the 12 MB stays allocated
    assert peak - before < 4 * storage.CHUNK_BYTES  # one chunk (and a driver's copy of it) at a time


# --- the worker reads the stored file; the report is stored and served from there --------------

@pytest.fixture
def other_machine(monkeypatch, tmp_path):
    """Workers started after this see a MEDIA_ROOT and a temporary folder of their own, empty,
    as on another machine. Listed before start_worker so the worker starts with them."""
    worker_media, worker_tmp = tmp_path / "worker-media", tmp_path / "worker-tmp"
    worker_tmp.mkdir()
    monkeypatch.setenv("MEDIA_ROOT", str(worker_media))
    monkeypatch.setenv("TMPDIR", str(worker_tmp))
    monkeypatch.setenv("RETRAIN_AFTER_IMPORT", "0")
    return worker_media, worker_tmp


@pytest.mark.integration
def test_storage_worker_with_its_own_media_root_imports_and_report_downloads_everywhere(
        other_machine, start_worker, media, manager, admin_user):
    worker_media, worker_tmp = other_machine
    start_worker()
    web = APIClient()
    web.force_login(manager)

    response = web.post("/api/v1/imports/", {"customers": _upload()}, format="multipart")

    run = wait_for(lambda: ImportRun.objects.filter(pk=response.json()["id"], status__in=ImportRun.FINISHED).first(),
                   timeout=90, what="the worker to finish the import")
    assert (run.status, run.error) == ("partial", "")
    assert sorted(Customer.objects.values_list("external_id", flat=True)) == ["U1", "U2"]
    result = run.files.get()
    assert (result.created, result.rejected, result.warned, result.path, result.rejected_path) == (2, 1, 1, "", "")
    assert _files_under(media) == [] and _files_under(worker_media) == [] and _files_under(worker_tmp) == []
    report = _stored_bytes(run, role=storage.REPORT).decode()
    assert report.splitlines()[0] == "row,outcome,reason,external_id,name,email"

    page = web.get(reverse("import_rejected", args=[run.pk, "customers"]))
    assert page.status_code == 200 and b"".join(page.streaming_content).decode() == report
    api = web.get(f"/api/v1/imports/{run.pk}/").json()
    assert [(r["row"], r["outcome"]) for r in api["files"][0]["rejected_rows"]] == [(3, "warning"), (4, "rejected")]
    web.force_login(admin_user)
    admin = web.get(reverse("admin:crm_importfile_rejects", args=[result.pk]))
    assert admin.status_code == 200 and b"".join(admin.streaming_content).decode() == report
    assert admin["Content-Disposition"] == 'attachment; filename="customers.rejected.csv"'


def test_storage_retried_import_reads_the_same_stored_file_and_replaces_its_report(db, media):
    run = queue.save_uploads({"customers": _upload()}, source="upload")
    first = queue.run_saved_import(run.pk)
    first_report = _stored_bytes(first, role=storage.REPORT)

    again = queue.run_saved_import(run.pk)  # a second worker taking the run over

    assert again.status == "partial" and Customer.objects.count() == 2
    assert StoredFile.objects.filter(run=run, role=storage.REPORT).count() == 1
    assert _stored_bytes(again, role=storage.REPORT) == first_report


def test_storage_dry_run_confirmed_imports_a_copy_of_its_stored_files(db, media):
    checked = queue.save_uploads({"customers": _upload()}, source="upload", dry_run=True)
    queue.run_saved_import(checked.pk)

    run = queue.import_checked(checked.pk)
    queue.run_saved_import(run.pk)

    assert _stored_bytes(run) == _stored_bytes(checked) == CUSTOMERS
    assert Customer.objects.count() == 2


# --- retention -----------------------------------------------------------------------------------

def _finished(days_ago, status="succeeded"):
    run = queue.save_uploads({"customers": _upload()}, source="upload")
    queue.run_saved_import(run.pk)
    ImportRun.objects.filter(pk=run.pk).update(status=status, finished_at=timezone.now() - timedelta(days=days_ago))
    return run


def test_storage_retention_deletes_old_finished_files_and_keeps_recent_and_unfinished(db, media, settings):
    settings.IMPORT_FILE_RETENTION_DAYS = 30
    old, recent = _finished(31), _finished(29)
    old_failed = _finished(40, status="failed")
    running = _finished(90, status="running")
    before = StoredFile.objects.filter(run=old).count() + StoredFile.objects.filter(run=old_failed).count()

    deleted = storage.delete_expired_files()

    assert before == 4 and deleted == before  # an upload and a report each
    kept = set(StoredFile.objects.values_list("run_id", "role"))
    assert kept == {(recent.pk, "upload"), (recent.pk, "report"), (running.pk, "upload"), (running.pk, "report")}
    assert not StoredFileChunk.objects.filter(file__run__in=[old, old_failed]).exists()
    assert ImportFile.objects.filter(run=old).get().rejected == 1  # the record of the import stays


def test_storage_report_after_retention_is_404_and_a_confirmed_dry_run_says_files_are_gone(
        manager_client, media, settings):
    checked = _finished(31)
    ImportRun.objects.filter(pk=checked.pk).update(dry_run=True)
    storage.delete_expired_files()

    response = manager_client.get(reverse("import_rejected", args=[checked.pk, "customers"]))
    run = queue.import_checked(checked.pk)

    assert response.status_code == 404
    with pytest.raises(ImportFailed, match="customers.csv are no longer kept"):
        queue.run_saved_import(run.pk)
    assert ImportRun.objects.get(pk=run.pk).status == "failed"


def test_storage_upload_saved_on_disk_before_the_change_is_still_imported(db, media):
    run = ImportRun.objects.create(source="upload")
    media.mkdir(parents=True)
    legacy = media / "customers.csv"
    legacy.write_bytes(CUSTOMERS)
    ImportFile.objects.create(run=run, kind="customers", filename="customers.csv", path=str(legacy))

    done = queue.run_saved_import(run.pk)

    assert done.status == "partial" and Customer.objects.count() == 2



def test_storage_copies_a_killed_worker_left_are_removed_and_a_live_one_kept(db, monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    now = timezone.now()
    live = ImportRun.objects.create(source="upload", status="running", attempts=2, heartbeat_at=now)
    stale = ImportRun.objects.create(source="upload", status="running", attempts=1,
                                     heartbeat_at=now - timedelta(hours=1))
    done = ImportRun.objects.create(source="upload", status="succeeded", attempts=1, heartbeat_at=now)
    folders = {name: tmp_path / f"{queue.COPY_PREFIX}{name}-x1" for name in (
        f"{live.pk}-2", f"{live.pk}-1", f"{stale.pk}-1", f"{done.pk}-1")}
    for folder in folders.values():
        folder.mkdir()
        (folder / "customers.csv").write_bytes(CUSTOMERS)
    (tmp_path / "unrelated-1-2").mkdir()

    removed = queue.remove_orphaned_copies()

    assert removed == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{queue.COPY_PREFIX}{live.pk}-2-x1", "unrelated-1-2"]
