"""Concurrency: simultaneous requests (threads, each with its own database connection) and two real
worker processes running an import and a retrain, or the same import twice, at the same time."""
import threading

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection

from crm import services as crm_services
from crm.imports import storage
from crm.models import Customer, ImportRun, Interaction, Product
from ml import services as ml_services
from ml.models import CustomerSegment, TrainingRun
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

FINISHED = ("succeeded", "failed", "rejected", "cancelled")


def at_once(*calls):
    """Run the calls in threads released together; returns their results (or raised exceptions)."""
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(i, call):
        try:
            barrier.wait(timeout=30)
            results[i] = call()
        except Exception as exc:  # reported to the test, which asserts on it
            results[i] = exc
        finally:
            connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


@pytest.fixture
def small_batches(monkeypatch, settings):
    """Imports in this process and in workers started later commit every 50 rows (many batches);
    the workers, like this process (conftest), queue no retrain after an import."""
    monkeypatch.setenv("IMPORT_BATCH_SIZE", "50")
    monkeypatch.setenv("RETRAIN_AFTER_IMPORT", "0")
    settings.IMPORT_BATCH_SIZE = 50


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def _csvs(customers=200, interactions=600):
    c = "external_id,name,email,signup_date\n" + "".join(
        f"K{i:04d},Customer {i},k{i}@example.com,2024-02-{1 + i % 28:02d}\n" for i in range(customers))
    p = "sku,name,category,price\n" + "".join(f"S{i:02d},Item {i},Cat {i % 3},{i + 1}.25\n" for i in range(20))
    n = ("external_id,customer_external_id,type,occurred_at,product_sku,amount,quantity\n" + "".join(
        f"N{i:05d},K{i % customers:04d},purchase,2025-{1 + i % 6:02d}-{1 + i % 28:02d},S{i % 20:02d},"
        f"{(i % 20) + 1}.25,{1 + i % 3}\n" for i in range(interactions)))
    return {"customers": c.encode(), "products": p.encode(), "interactions": n.encode()}


def _uploads(files):
    return {kind: SimpleUploadedFile(f"{kind}.csv", body) for kind, body in files.items()}


def _tables():
    return {
        "customers": sorted(Customer.objects.values_list("external_id", "name", "email", "signup_date",
                                                         "last_purchase_at")),
        "products": sorted(Product.objects.values_list("sku", "name", "category", "price", "active")),
        "interactions": sorted(Interaction.objects.values_list("external_id", "customer__external_id", "type",
                                                               "occurred_at", "product__sku", "amount", "quantity")),
    }


def test_request_retrain_twice_at_once_gives_one_queued_run(transactional_db):
    for attempt in range(5):
        results = at_once(*[lambda: ml_services.request_retrain("forecast", enqueue=False)] * 2)

        assert not [r for r in results if isinstance(r, Exception)], results
        (first, first_created), (second, second_created) = results
        assert first.pk == second.pk, f"attempt {attempt}: two runs {first.pk} and {second.pk}"
        assert sorted([first_created, second_created]) == [False, True]
        assert TrainingRun.objects.filter(kind="forecast", status="queued").count() == 1
        ml_services.cancel_queued("forecast", "next attempt")


def test_import_twice_at_once_on_two_workers_ends_like_one_after_the_other(
        small_batches, start_worker, media, tmp_path):
    files = _csvs()
    start_worker()
    start_worker()

    runs = at_once(*[lambda: crm_services.enqueue_import(_uploads(files), source="api")] * 2)

    assert not [r for r in runs if isinstance(r, Exception)], runs
    done = [wait_for(lambda pk=run.pk: ImportRun.objects.filter(pk=pk, status__in=FINISHED).first(), timeout=180,
                     what=f"import #{run.pk} to finish") for run in runs]
    assert [(r.status, r.error) for r in done] == [("succeeded", ""), ("succeeded", "")]
    together = _tables()

    for model in (Interaction, Customer, Product):
        model.objects.all().delete()
    for run in runs:  # the same stored files, one import after the other, in this process
        paths = {f.kind: storage.fetch(f, tmp_path / f"{run.pk}-{f.kind}.csv")
                 for f in ImportRun.objects.get(pk=run.pk).stored_files.filter(role=storage.UPLOAD)}
        assert crm_services.import_files(paths, rejected_dir=tmp_path).status == "succeeded"

    assert together == _tables()
    assert (len(together["customers"]), len(together["products"]), len(together["interactions"])) == (200, 20, 600)


@pytest.mark.slow
def test_retrain_and_import_at_once_on_two_workers_both_finish(small_batches, start_worker, media, settings):
    settings.ML_STALE_AFTER_SECONDS = 30
    call_command("seed_demo", customers=400, seed=3, end="2025-06-30")
    before = Interaction.objects.count()
    extra = _csvs(customers=50, interactions=300)
    start_worker()
    start_worker()

    (retrain, imported) = at_once(lambda: ml_services.request_retrain("segmentation")[0],
                                  lambda: crm_services.enqueue_import(_uploads(extra), source="api"))

    assert not isinstance(retrain, Exception) and not isinstance(imported, Exception), (retrain, imported)
    run = wait_for(lambda: TrainingRun.objects.filter(pk=retrain.pk, status__in=FINISHED).first(), timeout=300,
                   what="the retrain to finish")
    imp = wait_for(lambda: ImportRun.objects.filter(pk=imported.pk, status__in=FINISHED).first(), timeout=300,
                   what="the import to finish")
    assert (imp.status, imp.error) == ("succeeded", "")
    assert Interaction.objects.count() == before + 300
    assert run.status == "succeeded", run.error
    assert ml_services.published_run("segmentation").pk == run.pk
    assert not TrainingRun.objects.filter(status__in=["queued", "running"]).exists()
    # The insights come from one published run: no second live run of the kind, and every
    # customer the run scored has exactly one segment row in it.
    assert list(TrainingRun.objects.filter(kind="segmentation", is_published=True).values_list("pk", flat=True)) == [
        run.pk]
    rows = CustomerSegment.objects.filter(run=run)
    assert rows.exists() and rows.count() == rows.values("customer_id").distinct().count()


def test_bulk_customer_upserts_of_the_same_new_keys_at_once_write_one_whole_request(transactional_db, manager):
    """Two requests create the same 200 customers at once: one is written whole; the other is either
    written after it (as updates) or refused whole (UpsertConflict, the API's 409), never mixed."""
    def upsert(name):
        items = [{"external_id": f"RACE-{i:03d}", "name": name} for i in range(200)]
        return crm_services.upsert_customers(user=manager, items=items)

    results = at_once(lambda: upsert("first"), lambda: upsert("second"))

    assert all(not isinstance(r, Exception) or isinstance(r, crm_services.UpsertConflict) for r in results), results
    assert any(not isinstance(r, Exception) and r.created == 200 for r in results), results
    names = set(Customer.objects.filter(external_id__startswith="RACE-").values_list("name", flat=True))
    assert Customer.objects.filter(external_id__startswith="RACE-").count() == 200 and len(names) == 1
