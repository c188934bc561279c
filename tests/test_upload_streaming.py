"""The upload size limit holds while the body streams in (crm.uploads): a file one byte over
IMPORT_MAX_UPLOAD_MB is cut off before the storing handlers get that byte, nothing of it stays on
disk (temporary files, MEDIA_ROOT), no import is queued; a file exactly at the limit is accepted.
A request declared longer than its files can be is refused before its body is read."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.urls import reverse

from crm import uploads
from crm.models import ImportRun
from tests.api.conftest import error_of

LIMIT = 1024 * 1024  # IMPORT_MAX_UPLOAD_MB = 1


def _csv_of_size(size: int) -> bytes:
    """A valid customers file of exactly ``size`` bytes."""
    body = bytearray(b"external_id,name\n")
    i = 0
    while len(body) + 40 < size:
        body += b"K%07d,n\n" % i
        i += 1
    body += b"Z," + b"n" * (size - len(body) - 3) + b"\n"
    assert len(body) == size
    return bytes(body)


AT_LIMIT = _csv_of_size(LIMIT)
OVER_LIMIT = _csv_of_size(LIMIT + 1)


class MeasuredTemporaryFileHandler(TemporaryFileUploadHandler):
    """Django's temporary-file handler, noting the bytes it has written to disk per file."""

    written: dict = {}

    def receive_data_chunk(self, raw_data, start):
        super().receive_data_chunk(raw_data, start)
        self.written[self.file_name] = start + len(raw_data)


@pytest.fixture
def on_disk(db, settings, tmp_path):
    """Uploads past 64 KB go to temporary files in ``tmp``, accepted ones to ``media``."""
    settings.IMPORT_MAX_UPLOAD_MB = 1
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.FILE_UPLOAD_TEMP_DIR = tmp_path / "tmp"
    settings.FILE_UPLOAD_TEMP_DIR.mkdir()
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    settings.FILE_UPLOAD_HANDLERS = ["crm.uploads.UploadLimitHandler",
                                     "django.core.files.uploadhandler.MemoryFileUploadHandler",
                                     f"{__name__}.MeasuredTemporaryFileHandler"]
    MeasuredTemporaryFileHandler.written = {}
    return settings


def _files_under(path):
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def _assert_nothing_stored(settings):
    assert _files_under(settings.FILE_UPLOAD_TEMP_DIR) == []
    assert _files_under(settings.MEDIA_ROOT) == []
    assert not ImportRun.objects.exists()


def _upload(content, name="customers.csv"):
    return SimpleUploadedFile(name, content, content_type="text/csv")


# --- the page ---------------------------------------------------------------------------------------

def test_upload_page_one_byte_over_the_limit_is_cut_off_and_nothing_stored(client, manager, on_disk):
    client.force_login(manager)

    response = client.post(reverse("import_list"), {"customers": _upload(OVER_LIMIT)})

    assert response.status_code == 200
    assert "The customers file is larger than the limit of 1 MB (IMPORT_MAX_UPLOAD_MB)." in response.content.decode()
    assert 0 < MeasuredTemporaryFileHandler.written["customers.csv"] <= LIMIT  # never past the limit on disk
    _assert_nothing_stored(on_disk)


def test_upload_page_exactly_at_the_limit_is_queued(client, manager, on_disk):
    client.force_login(manager)

    response = client.post(reverse("import_list"), {"customers": _upload(AT_LIMIT)})

    assert response.status_code == 302
    run = ImportRun.objects.get()
    assert run.status == ImportRun.Status.QUEUED
    assert MeasuredTemporaryFileHandler.written["customers.csv"] == LIMIT
    assert _files_under(on_disk.FILE_UPLOAD_TEMP_DIR) == []  # the temporary file is gone with the request


def test_upload_page_refuses_the_file_over_the_limit_and_queues_none_of_the_others(client, manager, on_disk):
    client.force_login(manager)

    response = client.post(reverse("import_list"), {"customers": _upload(b"external_id\nK1\n"),
                                                    "products": _upload(OVER_LIMIT, "products.csv")})

    assert response.status_code == 200
    page = response.content.decode()
    assert "The products file is larger than the limit" in page and "The customers file" not in page
    _assert_nothing_stored(on_disk)


# --- the API ----------------------------------------------------------------------------------------

def test_upload_api_one_byte_over_the_limit_is_400_and_nothing_stored(client, manager, on_disk):
    client.force_login(manager)

    response = client.post("/api/v1/imports/", {"interactions": _upload(OVER_LIMIT, "interactions.csv")})

    assert response.status_code == 400
    assert error_of(response)["message"] == "The interactions file is larger than the limit of 1 MB " \
                                            "(IMPORT_MAX_UPLOAD_MB)."
    assert MeasuredTemporaryFileHandler.written["interactions.csv"] <= LIMIT
    _assert_nothing_stored(on_disk)


def test_upload_api_exactly_at_the_limit_is_accepted(client, manager, on_disk):
    client.force_login(manager)

    response = client.post("/api/v1/imports/", {"customers": _upload(AT_LIMIT)})

    assert response.status_code == 202 and ImportRun.objects.get().status == ImportRun.Status.QUEUED


# --- a length announced up front --------------------------------------------------------------------

def _multipart_with_part_length(declared, content):
    boundary = "BoUnDaRy"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"customers\"; filename=\"customers.csv\"\r\n"
            f"Content-Type: text/csv\r\nContent-Length: {declared}\r\n\r\n").encode() + content + \
        f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_upload_file_announcing_a_length_over_the_limit_is_refused_before_a_byte_is_stored(client, manager,
                                                                                          on_disk):
    client.force_login(manager)
    content = b"external_id\nK1\n" * 10_000  # 150 KB: past the memory limit, well within the size limit
    body, content_type = _multipart_with_part_length(LIMIT + 1, content)

    response = client.post("/api/v1/imports/", data=body, content_type=content_type)

    assert response.status_code == 400 and "larger than the limit of 1 MB" in error_of(response)["message"]
    assert MeasuredTemporaryFileHandler.written == {}  # the temporary-file handler never got a byte
    _assert_nothing_stored(on_disk)


# --- the whole request ------------------------------------------------------------------------------

def test_upload_request_declared_longer_than_its_files_can_be_is_413_unread(client, manager, on_disk):
    client.force_login(manager)
    declared = uploads.request_limit_bytes() + 1

    page = client.post(reverse("import_list"), {"customers": _upload(b"external_id\nK1\n")},
                       CONTENT_LENGTH=str(declared))
    api = client.post("/api/v1/imports/", {"customers": _upload(b"external_id\nK1\n")}, CONTENT_LENGTH=str(declared))

    assert page.status_code == 413
    assert "larger than 3 files at the limit of 1 MB each (IMPORT_MAX_UPLOAD_MB)" in page.content.decode()
    assert api.status_code == 413 and error_of(api)["code"] == "too_large"
    assert "IMPORT_MAX_UPLOAD_MB" in error_of(api)["message"]
    assert MeasuredTemporaryFileHandler.written == {}
    _assert_nothing_stored(on_disk)


def test_upload_request_within_the_request_limit_is_parsed(client, manager, on_disk):
    client.force_login(manager)

    response = client.post(reverse("import_list"), {"customers": _upload(b"external_id\nK1\n")})

    assert response.status_code == 302 and ImportRun.objects.exists()
