"""Import limits at every door: file size (IMPORT_MAX_UPLOAD_MB) and rows per file
(IMPORT_MAX_ROWS). A file over a limit is refused whole, with a message naming the limit, and
nothing of its import is written."""
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse

from crm import imports as importing
from crm.imports.importer import ImportFailed, import_files
from crm.models import Customer, ImportRun
from tests.api.conftest import error_of

FOUR_ROWS = b"external_id,name\nK1,a\nK2,b\nK3,c\nK4,d\n"
OVER_ONE_MB = b"external_id\n" + b"X-0000000001\n" * 100_000  # 1.3 MB


@pytest.fixture
def limits(db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.IMPORT_MAX_UPLOAD_MB = 1
    settings.IMPORT_MAX_ROWS = 3
    return settings


def _upload(content, name="customers.csv"):
    return SimpleUploadedFile(name, content, content_type="text/csv")


# --- the row counter ----------------------------------------------------------------------------

@pytest.mark.parametrize(("content", "over"), [
    (b"h\n1\n2\n3\n", False),
    (b"h\n1\n2\n3\n4\n", True),
    (b"h\n1\n2\n3\n4", True),  # no line break at the end
    (b"h\r1\r2\r3\r4\r", True),  # old Mac line ends
    (b"h\r\n1\r\n2\r\n3\r\n", False),
    (b'h\n"a\nb\nc",x\n2\n3\n', False),  # a quoted cell spanning lines is one row
    (b"h\n1\n\n\n2\n\n3\n\n", False),  # blank lines are not rows
], ids=["at-limit", "over", "no-final-break", "cr-only", "crlf-at-limit", "multiline-cell", "blank-lines"])
def test_more_rows_than_counts_rows_as_the_import_does(content, over):
    assert importing.more_rows_than(io.BytesIO(content), 3) is over


# --- import_files (command line, worker, admin) ---------------------------------------------------

def test_import_files_over_row_limit_fails_naming_the_limit_and_writes_nothing(limits, tmp_path):
    customers = tmp_path / "customers.csv"
    customers.write_bytes(b"external_id\nA\n")
    products = tmp_path / "products.csv"
    products.write_bytes(b"sku,name\n" + b"".join(b"S%d,n\n" % i for i in range(4)))

    with pytest.raises(ImportFailed, match="more than 3 rows, the limit \\(IMPORT_MAX_ROWS\\)"):
        import_files({"customers": customers, "products": products})

    assert Customer.objects.count() == 0  # the customers file was fine, but nothing is written
    assert ImportRun.objects.get().status == ImportRun.Status.FAILED


def test_import_files_at_row_limit_imports(limits, tmp_path):
    path = tmp_path / "customers.csv"
    path.write_bytes(FOUR_ROWS[:-5])  # 3 rows

    run = import_files({"customers": path})

    assert run.files.get().created == 3


def test_import_data_command_over_row_limit_exits_non_zero_naming_the_limit(limits, tmp_path):
    path = tmp_path / "customers.csv"
    path.write_bytes(FOUR_ROWS)

    with pytest.raises(Exception, match="IMPORT_MAX_ROWS"):
        call_command("import_data", customers=str(path), stdout=io.StringIO(), stderr=io.StringIO())

    assert Customer.objects.count() == 0


# --- the web upload page --------------------------------------------------------------------------

def test_web_import_larger_than_upload_limit_is_refused_naming_the_limit(client, manager, limits):
    client.force_login(manager)

    response = client.post(reverse("import_list"), {"customers": _upload(OVER_ONE_MB)})

    assert response.status_code == 200
    assert "larger than the limit of 1 MB (IMPORT_MAX_UPLOAD_MB)" in response.content.decode()
    assert not ImportRun.objects.exists()


def test_web_import_over_row_limit_is_refused_naming_the_limit(client, manager, limits):
    client.force_login(manager)

    response = client.post(reverse("import_list"), {"customers": _upload(FOUR_ROWS)})

    assert response.status_code == 200
    assert "more than 3 rows, the limit (IMPORT_MAX_ROWS)" in response.content.decode()
    assert not ImportRun.objects.exists()


def test_web_import_within_limits_is_queued(client, manager, limits):
    client.force_login(manager)

    response = client.post(reverse("import_list"), {"customers": _upload(FOUR_ROWS[:-5])})  # 3 rows

    assert response.status_code == 302
    assert ImportRun.objects.get().status == ImportRun.Status.QUEUED


# --- the admin upload page ------------------------------------------------------------------------

def test_admin_import_larger_than_upload_limit_is_refused_naming_the_limit(client, admin_user, limits):
    client.force_login(admin_user)

    response = client.post(reverse("admin:crm_importrun_upload"), {"customers": _upload(OVER_ONE_MB)})

    assert response.status_code == 200
    assert "larger than the limit of 1 MB (IMPORT_MAX_UPLOAD_MB)" in response.content.decode()
    assert not ImportRun.objects.exists() and Customer.objects.count() == 0


def test_admin_import_over_row_limit_is_refused_naming_the_limit(client, admin_user, limits):
    client.force_login(admin_user)

    response = client.post(reverse("admin:crm_importrun_upload"), {"customers": _upload(FOUR_ROWS)})

    assert response.status_code == 200
    assert "more than 3 rows, the limit (IMPORT_MAX_ROWS)" in response.content.decode()
    assert not ImportRun.objects.exists() and Customer.objects.count() == 0


# --- the API --------------------------------------------------------------------------------------

def test_api_import_larger_than_upload_limit_is_400_naming_the_limit(client, manager, limits):
    client.force_login(manager)

    response = client.post("/api/v1/imports/", {"customers": _upload(OVER_ONE_MB)})

    assert response.status_code == 400
    assert "larger than the limit of 1 MB (IMPORT_MAX_UPLOAD_MB)" in error_of(response)["message"]
    assert not ImportRun.objects.exists()


def test_api_import_over_row_limit_is_400_naming_the_limit(client, manager, limits):
    client.force_login(manager)

    response = client.post("/api/v1/imports/", {"interactions": _upload(FOUR_ROWS, "interactions.csv")})

    assert response.status_code == 400
    assert "interactions file has more than 3 rows, the limit (IMPORT_MAX_ROWS)" in error_of(response)["message"]
    assert not ImportRun.objects.exists()


def test_api_import_queued_under_an_old_limit_fails_whole_when_run(client, manager, limits):
    from crm.imports.queue import run_queued_import

    client.force_login(manager)
    response = client.post("/api/v1/imports/", {"customers": _upload(FOUR_ROWS[:-5])})  # 3 rows
    limits.IMPORT_MAX_ROWS = 2  # lowered while the file waited in the queue

    run = run_queued_import(response.json()["id"])

    assert run.status == ImportRun.Status.FAILED and "IMPORT_MAX_ROWS" in run.error
    assert Customer.objects.count() == 0
