"""Import pages (managers and admins): upload, progress, counts, rejected rows, history."""
import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from crm.imports import queue as services
from crm.models import Customer, ImportRun, ImportSource

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
                                                            ",No key,,,,,,,\n", "C3,Bad,not-an-email,,,,,,\n")},
                                user=manager)
    services.run_queued_import(run.pk)
    response = manager_client.get(reverse("import_detail", args=[run.pk]))
    html = response.content.decode()
    assert Customer.objects.filter(external_id__in=["C1", "C3"]).count() == 2
    item = response.context["files"][0]
    assert (item["file"].created, item["file"].rejected, item["file"].warned) == (2, 1, 1)
    assert [(r["row"], r["outcome"]) for r in item["rows"]] == [(3, "rejected"), (4, "warning")]
    assert "external_id is empty" in item["rows"][0]["reason"] and "email" in item["rows"][1]["reason"]
    assert "Download the rejected rows and warnings" in html
    assert '<span class="badge partial" data-outcome>completed, 1 of 3 rows rejected, 1 with warnings</span>' in html
    assert "Read as <strong>UTF-8</strong>, <strong>comma</strong>-delimited" in html


def test_import_rejected_download_is_csv(manager_client, manager, media):
    run = services.save_uploads({"customers": customers_csv("C2,Bad,not-an-email,,,,,,\n")}, user=manager)
    services.run_queued_import(run.pk)
    response = manager_client.get(reverse("import_rejected", args=[run.pk, "customers"]))
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:3] == ["row", "outcome", "reason"] and rows[1][1:2] == ["warning"] and rows[1][3] == "C2"


def test_import_rejected_download_forbidden_for_rep(rep_client, manager, media):
    run = services.save_uploads({"customers": customers_csv("C2,Bad,not-an-email,,,,,,\n")}, user=manager)
    services.run_queued_import(run.pk)
    assert rep_client.get(reverse("import_rejected", args=[run.pk, "customers"])).status_code == 403


def test_import_status_json(manager_client, manager, media):
    run = services.save_uploads({"customers": customers_csv("C1,Ann,,,,,,,\n")}, user=manager)
    data = manager_client.get(reverse("import_status", args=[run.pk])).json()
    assert data["status"] == "queued" and data["finished"] is False and data["outcome"] == "queued"


def test_import_history_lists_runs(manager_client, manager, media, django_assert_max_num_queries):
    for _ in range(3):
        run = services.save_uploads({"customers": customers_csv("C1,Ann,,,,,,,\n")}, user=manager)
        services.run_queued_import(run.pk)
    with django_assert_max_num_queries(8):
        response = manager_client.get(reverse("import_list"))
    assert len(response.context["history"]) == 3
    assert "customers: 0 created, 0 updated, 1 rejected" not in response.content.decode()


SHOP = "Customer ID;Full Name;E-mail;Signed up\nS1;Ann Müller;ann@example.com;31/12/2024\nS2;Bob;bob@example.com;\n"


def shop_csv(text=SHOP, encoding="cp1252"):
    return SimpleUploadedFile("shop.csv", text.encode(encoding), content_type="text/csv")


def test_import_check_first_queues_a_dry_run(manager_client, media, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = manager_client.post(reverse("import_list"), {"customers": shop_csv(), "action": "check",
                                                                "date_format": "dmy", "source_name": "Shop"})
    run = ImportRun.objects.get()
    assert (run.dry_run, run.date_format, run.source_name) == (True, "dmy", "Shop") and len(callbacks) == 1
    assert response.url == reverse("import_detail", args=[run.pk])


def test_import_dry_run_page_shows_format_mapping_and_first_rows(manager_client, manager, media):
    run = services.save_uploads({"customers": shop_csv()}, user=manager, dry_run=True, date_format="dmy")
    services.run_queued_import(run.pk)

    response = manager_client.get(reverse("import_detail", args=[run.pk]))

    html = response.content.decode()
    assert not Customer.objects.exists()
    assert "Dry run: nothing was written." in html and "dry run: all 2 rows would load" in html
    assert "Read as <strong>Windows-1252</strong>, <strong>semicolon</strong>-delimited" in html
    preview = response.context["files"][0]["preview"]
    assert preview[0]["values"] == {"external_id": "S1", "name": "Ann Müller", "email": "ann@example.com",
                                    "signup_date": "2024-12-31"}
    form = response.context["mapping_form"]
    assert {name: field.value() for name, field, _ in form.bound_columns()[0][1]} == {
        "Customer ID": "external_id", "Full Name": "name", "E-mail": "email", "Signed up": "signup_date"}


def test_import_confirm_imports_the_checked_files_with_the_chosen_mapping(manager_client, manager, media,
                                                                         django_capture_on_commit_callbacks):
    run = services.save_uploads({"customers": shop_csv()}, user=manager, dry_run=True, date_format="dmy")
    services.run_queued_import(run.pk)
    post = {"map-customers-0": "external_id", "map-customers-1": "name", "map-customers-2": "",
            "map-customers-3": "signup_date", "date_format": "dmy", "source_name": "Shop", "action": "import"}

    with django_capture_on_commit_callbacks(execute=False):
        response = manager_client.post(reverse("import_confirm", args=[run.pk]), post)
    new = ImportRun.objects.latest("pk")
    services.run_queued_import(new.pk)

    assert response.url == reverse("import_detail", args=[new.pk]) and not ImportRun.objects.get(pk=new.pk).dry_run
    ann = Customer.objects.get(external_id="S1")
    assert (ann.name, ann.email, str(ann.signup_date), ann.attributes) == (
        "Ann Müller", "", "2024-12-31", {"E-mail": "ann@example.com"})
    assert ImportSource.objects.get(name="Shop").mapping == {"customers": {
        "Customer ID": "external_id", "Full Name": "name", "Signed up": "signup_date"}}


def test_import_confirm_refuses_two_columns_read_as_one(manager_client, manager, media):
    run = services.save_uploads({"customers": shop_csv()}, user=manager, dry_run=True)
    services.run_queued_import(run.pk)
    post = {"map-customers-0": "external_id", "map-customers-1": "email", "map-customers-2": "email",
            "date_format": "iso", "action": "import"}

    response = manager_client.post(reverse("import_confirm", args=[run.pk]), post)

    assert response.status_code == 200 and ImportRun.objects.count() == 1
    assert "Another column of the customers file reads as email too." in response.content.decode()


def test_import_history_never_shows_rejected_rows_as_succeeded(manager_client, manager, media):
    run = services.save_uploads({"customers": customers_csv("C1,Ann,,,,,,,\n", ",No key,,,,,,,\n")}, user=manager)
    services.run_queued_import(run.pk)

    html = manager_client.get(reverse("import_list")).content.decode()

    assert '<span class="badge partial">completed, 1 of 2 rows rejected</span>' in html
    assert "succeeded" not in html
