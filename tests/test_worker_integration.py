"""A real Celery worker process runs a real task through the configured broker."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from crm.models import Customer, ImportRun
from crm.services import enqueue_import
from tests.conftest import wait_for


@pytest.mark.integration
def test_worker_runs_queued_import_through_broker(celery_worker_process, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path  # the saved files' absolute paths travel with the run
    upload = SimpleUploadedFile("customers.csv", b"external_id,name\nW1,Worker One\nW2,Worker Two\n")

    run = enqueue_import({"customers": upload}, source="upload")
    # enqueue_import hands the task over on commit; the transactional_db fixture autocommits.

    finished = wait_for(lambda: ImportRun.objects.filter(pk=run.pk, status="succeeded").first(), timeout=90,
                        what="the worker to finish the import")
    assert finished.files.get().created == 2
    assert set(Customer.objects.values_list("external_id", flat=True)) == {"W1", "W2"}
