"""Import pages (managers and admins): upload, progress, counts, rejected rows, history."""
import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from crm import services
from crm.models import Customer, ImportRun

HEADER = "external_id,name,email,phone,company,country,city,signup_date,owner_username\n"


def customers_csv(*lines):
    return SimpleUploadedFile("customers.csv", (HEADER + "".join(lines)).encode(), content_type="text/csv")


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def test_import_upload_by_rep_is_forbidden(rep_client, media):
    response = rep_client.post(reverse("import_list"), {"customers": customers_csv("C1,Ann,,,,,,,\n")})
    assert response.status_code == 403 and not ImportRun.objects.exists()


def test_import_upload_queues_run_and_shows_progress(manager_client, media, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = manager_client.post(reverse("import_list"), {"customers": customers_csv("C1,Ann,,,,,,,\n")})
    run = ImportRun.objects.get()
    assert response.url == reverse("import_detail", args=[run.pk]) and len(callbacks) == 1
    html = manager_client.get(response.url).content.decode()
    assert f'data-poll="{reverse("import_status", args=[run.pk])}"' in html


def test_import_upload_without_files_shows_error(manager_client, media):
    html = manager_client.post(reverse("import_list"), {}).content.decode()
    assert "Choose at least one CSV file." in html


def test_import_detail_shows_counts_and_rejected_rows(manager_client, manager, media):
    run = services.save_uploads({"customers": customers_csv("C1,Ann,ann@example.com,,,,,,\n",
                                                            "C2,Bad,not-an-email,,,,,,\n")}, user=manager)
    services.run_queued_import(run.pk)
    response = manager_client.get(reverse("import_detail", args=[run.pk]))
    html = response.content.decode()
    assert Customer.objects.filter(external_id="C1").exists()
    item = response.context["files"][0]
    assert item["file"].created == 1 and item["file"].rejected == 1
    assert item["rows"][0]["row"] == 3 and "email" in item["rows"][0]["reason"].lower()
    assert "Download the rejected rows" in html


def test_import_rejected_download_is_csv(manager_client, manager, media):
    run = services.save_uploads({"customers": customers_csv("C2,Bad,not-an-email,,,,,,\n")}, user=manager)
    services.run_queued_import(run.pk)
    response = manager_client.get(reverse("import_rejected", args=[run.pk, "customers"]))
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:2] == ["row", "reason"] and rows[1][2] == "C2"


def test_import_rejected_download_forbidden_for_rep(rep_client, manager, media):
    run = services.save_uploads({"customers": customers_csv("C2,Bad,not-an-email,,,,,,\n")}, user=manager)
    services.run_queued_import(run.pk)
    assert rep_client.get(reverse("import_rejected", args=[run.pk, "customers"])).status_code == 403


def test_import_status_json(manager_client, manager, media):
    run = services.save_uploads({"customers": customers_csv("C1,Ann,,,,,,,\n")}, user=manager)
    data = manager_client.get(reverse("import_status", args=[run.pk])).json()
    assert data["status"] == "queued" and data["finished"] is False


def test_import_history_lists_runs(manager_client, manager, media, django_assert_max_num_queries):
    for _ in range(3):
        run = services.save_uploads({"customers": customers_csv("C1,Ann,,,,,,,\n")}, user=manager)
        services.run_queued_import(run.pk)
    with django_assert_max_num_queries(8):
        response = manager_client.get(reverse("import_list"))
    assert len(response.context["history"]) == 3
    assert "customers: 0 created, 0 updated, 1 rejected" not in response.content.decode()
