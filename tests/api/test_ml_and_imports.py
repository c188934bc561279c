"""Segments, training runs (retrain, publish/rollback), suggestion feedback and imports."""
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from crm.imports.queue import run_queued_import
from crm.models import Customer, ImportRun
from ml.models import SuggestionFeedback, TrainingRun
from tests.api.conftest import error_of

pytestmark = pytest.mark.django_db


def test_segments_of_published_run_with_profiles_and_sizes(book, rep_client):
    body = rep_client.get("/api/v1/segments/").json()

    assert [(s["name"], s["size"], s["profile"]) for s in body] == [("Loyal", 2, "Loyal: buy often."),
                                                                    ("Lapsing", 1, "Lapsing.")]


def test_segments_of_an_unknown_run_are_empty(book, rep_client):
    assert rep_client.get("/api/v1/segments/", {"run": 999999}).json() == []
    assert rep_client.get("/api/v1/segments/", {"run": "x"}).status_code == 400


def test_training_run_detail_has_metrics_and_progress(book, rep_client):
    run = book["runs"]["forecast"]
    TrainingRun.objects.filter(pk=run.pk).update(metrics={"model": {"orders": {"rmse": 1.2}}}, progress=100)

    body = rep_client.get(f"/api/v1/training-runs/{run.pk}/").json()

    assert body["metrics"] == {"model": {"orders": {"rmse": 1.2}}} and body["progress"] == 100
    assert body["kind"] == "forecast" and body["is_published"] is True


def test_training_runs_filter_by_kind(book, rep_client):
    results = rep_client.get("/api/v1/training-runs/", {"kind": "segmentation"}).json()["results"]

    assert [r["kind"] for r in results] == ["segmentation"]


def test_rep_cannot_retrain(book, rep_client):
    response = rep_client.post("/api/v1/training-runs/", {"kind": "forecast"})

    assert response.status_code == 403 and error_of(response)["code"] == "permission_denied"
    assert not TrainingRun.objects.filter(status="queued").exists()


def test_manager_starts_retrain_with_202_and_run_id(book, manager_client, manager, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = manager_client.post("/api/v1/training-runs/", {"kind": "forecast", "horizon_days": 30})

    body = response.json()
    assert response.status_code == 202 and body["created"] is True
    run = TrainingRun.objects.get(pk=body["run"]["id"])
    assert (run.status, run.horizon_days, run.requested_by, run.trigger) == ("queued", 30, manager, "api")
    assert len(callbacks) == 1  # the worker task is sent once the request's transaction commits


def test_second_retrain_request_joins_the_queued_run(book, manager_client):
    first = manager_client.post("/api/v1/training-runs/", {"kind": "segmentation"}).json()
    second = manager_client.post("/api/v1/training-runs/", {"kind": "segmentation"}).json()

    assert second["created"] is False and second["run"]["id"] == first["run"]["id"]


def test_retrain_of_unknown_kind_is_400_on_the_field(book, manager_client):
    response = manager_client.post("/api/v1/training-runs/", {"kind": "astrology"})

    assert response.status_code == 400 and set(error_of(response)["fields"]) == {"kind"}


def test_manager_rolls_back_to_an_earlier_run(book, manager_client):
    current = book["runs"]["forecast"]
    earlier = TrainingRun.objects.create(kind="forecast", status="succeeded", horizon_days=90)

    response = manager_client.post(f"/api/v1/training-runs/{earlier.pk}/publish/")

    assert response.status_code == 200 and response.json()["is_published"] is True
    assert TrainingRun.objects.get(kind="forecast", is_published=True).pk == earlier.pk != current.pk


def test_publishing_a_failed_run_is_409(book, manager_client):
    failed = TrainingRun.objects.create(kind="forecast", status="failed")

    response = manager_client.post(f"/api/v1/training-runs/{failed.pk}/publish/")

    assert response.status_code == 409 and error_of(response)["code"] == "conflict"


def test_rep_cannot_roll_back(book, rep_client):
    assert rep_client.post(f"/api/v1/training-runs/{book['runs']['forecast'].pk}/publish/").status_code == 403


def test_feedback_records_and_updates_status(book, rep_client, rep):
    payload = {"customer": book["mine"].pk, "sku": "TOY-1", "kind": "recommendation", "status": "offered"}
    assert rep_client.post("/api/v1/feedback/", payload).status_code == 200

    response = rep_client.post("/api/v1/feedback/", {**payload, "status": "accepted"})

    assert response.status_code == 200 and response.json()["status"] == "accepted"
    feedback = SuggestionFeedback.objects.get()
    assert (feedback.status, feedback.user, feedback.run_id) == ("accepted", rep, book["runs"]["recommendation"].pk)


def test_feedback_on_other_reps_customer_is_refused(book, rep_client):
    response = rep_client.post("/api/v1/feedback/", {"customer": book["theirs"].pk, "sku": "TOY-1",
                                                     "kind": "reorder", "status": "declined"})

    assert response.status_code == 400 and set(error_of(response)["fields"]) == {"customer"}
    assert not SuggestionFeedback.objects.exists()


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def _upload(name, text):
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


def test_rep_cannot_import(book, rep_client, media):
    response = rep_client.post("/api/v1/imports/", {"customers": _upload("c.csv", "external_id\nX\n")},
                               format="multipart")

    assert response.status_code == 403


def test_manager_uploads_import_then_reads_counts_and_rejected_rows(book, manager_client, media,
                                                                    django_capture_on_commit_callbacks):
    customers = "external_id,name,email\nN-1,New one,\nN-2,Bad mail,not-an-email\n,No key,\n"
    with django_capture_on_commit_callbacks() as callbacks:
        response = manager_client.post("/api/v1/imports/", {"customers": _upload("customers.csv", customers)},
                                       format="multipart")
    assert response.status_code == 202 and response.json()["status"] == "queued" and len(callbacks) == 1
    import_id = response.json()["id"]
    run_queued_import(import_id)  # what the worker's task does

    body = manager_client.get(f"/api/v1/imports/{import_id}/").json()

    assert (body["status"], body["outcome"]) == ("partial", "completed, 1 of 3 rows rejected, 1 with warnings")
    [result] = body["files"]
    assert (result["kind"], result["filename"], result["created"], result["rejected"], result["warned"]) == (
        "customers", "customers.csv", 2, 1, 1)
    assert (result["encoding"], result["delimiter"]) == ("UTF-8", "comma")
    assert result["rejected_rows"] == [
        {"row": 3, "outcome": "warning", "reason": "email is not an e-mail address (not-an-email): field skipped",
         "values": {"external_id": "N-2", "name": "Bad mail", "email": "not-an-email"}},
        {"row": 4, "outcome": "rejected", "reason": "external_id is empty",
         "values": {"external_id": "", "name": "No key", "email": ""}}]


def test_manager_checks_an_import_first_then_imports_the_checked_files(book, manager_client, media,
                                                                        django_capture_on_commit_callbacks):
    shop = "Customer ID;Full Name;Signed up\nS-1;Zoë;31/12/2024\n".encode("cp1252")
    with django_capture_on_commit_callbacks():
        response = manager_client.post("/api/v1/imports/", {
            "customers": SimpleUploadedFile("shop.csv", shop, content_type="text/csv"), "dry_run": "true",
            "date_format": "dmy", "mapping": json.dumps({"customers": {"Full Name": "name"}})}, format="multipart")
    assert response.status_code == 202 and response.json()["dry_run"] is True
    checked = response.json()["id"]
    run_queued_import(checked)
    body = manager_client.get(f"/api/v1/imports/{checked}/").json()
    assert body["outcome"] == "dry run: all 1 row would load" and not Customer.objects.filter(external_id="S-1")
    [result] = body["files"]
    assert (result["encoding"], result["delimiter"], result["created"]) == ("Windows-1252", "semicolon", 1)
    assert result["column_mapping"] == {"Full Name": "name", "Customer ID": "external_id",
                                        "Signed up": "signup_date"}  # the dry run applied the suggestions
    assert result["preview"][0]["values"] == {"external_id": "S-1", "name": "Zoë", "signup_date": "2024-12-31"}

    with django_capture_on_commit_callbacks():
        response = manager_client.post(f"/api/v1/imports/{checked}/import/", {"mapping": {"customers": {
            "Customer ID": "external_id", "Full Name": "name", "Signed up": "signup_date"}}}, format="json")
    assert response.status_code == 202 and response.json()["dry_run"] is False
    run_queued_import(response.json()["id"])

    customer = Customer.objects.get(external_id="S-1")
    assert (customer.name, str(customer.signup_date)) == ("Zoë", "2024-12-31")


def test_import_with_a_bad_mapping_is_400(book, manager_client, media):
    response = manager_client.post("/api/v1/imports/", {"customers": _upload("c.csv", "external_id\nX\n"),
                                                        "mapping": json.dumps(["not", "a", "mapping"])},
                                   format="multipart")

    assert response.status_code == 400 and not ImportRun.objects.exists()


def test_import_without_files_is_400(book, manager_client, media):
    response = manager_client.post("/api/v1/imports/", {}, format="multipart")

    assert response.status_code == 400 and error_of(response)["code"] == "invalid"
    assert not ImportRun.objects.exists()


def test_import_larger_than_the_upload_limit_is_400(book, manager_client, media, settings):
    settings.IMPORT_MAX_UPLOAD_MB = 1
    big = "external_id\n" + "X-0000000001\n" * 100_000  # 1.3 MB

    response = manager_client.post("/api/v1/imports/", {"customers": _upload("c.csv", big)}, format="multipart")

    assert response.status_code == 400 and "IMPORT_MAX_UPLOAD_MB" in error_of(response)["message"]
    assert not ImportRun.objects.exists()
