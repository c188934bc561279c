"""The ML engine end to end on a real database: retrain, publish, rollback, export, failures."""
import csv
import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from crm.models import Customer, Interaction
from ml import data, services
from ml.models import CustomerSegment, Forecast, Segment, TrainingRun
from ml.selectors import INSIGHT_COLUMNS

AS_OF = date(2025, 6, 30)


@pytest.fixture
def business(db):
    call_command("seed_demo", customers=400, seed=5, end=AS_OF.isoformat())


def test_retrain_sync_publishes_segments_and_forecasts_for_every_buyer(business):
    segmentation = services.run_now("segmentation", as_of=AS_OF)
    forecast = services.run_now("forecast", as_of=AS_OF)

    assert segmentation.status == "succeeded" and segmentation.is_published
    assert set(segmentation.metrics["comparison"]) == {"kmeans", "dbscan", "rfm"}
    assert CustomerSegment.objects.filter(run=segmentation).count() == Customer.objects.count()
    names = list(Segment.objects.filter(run=segmentation).values_list("name", flat=True))
    assert len(names) == len(set(names)) >= 3
    assert forecast.status == "succeeded" and forecast.is_published, forecast.error
    buyers = Interaction.objects.filter(type="purchase").values("customer").distinct().count()
    assert Forecast.objects.filter(run=forecast).count() == buyers
    model, naive = forecast.metrics["model"], forecast.metrics["baselines"]["naive rate"]
    assert model["churn"]["auc"] > 0.7 and model["orders"]["rmse"] < naive["orders"]["rmse"]
    assert forecast.metrics["outcome"]["basis"] in ("model", "baseline") and forecast.metrics["outcome"]["summary"]
    assert len(forecast.metrics["backtest"]["origins"]) >= 2
    assert {"numpy", "pandas", "scikit-learn", "scipy"} <= set(forecast.library_versions)
    assert forecast.timings["total"] > 0 and forecast.data_counts["buyers"] == buyers
    sample = Forecast.objects.filter(run=forecast).exclude(factors=[]).first()
    assert sample.factors and all(isinstance(f, str) for f in sample.factors)


def test_interactions_frame_never_reads_past_as_of(business):
    customer = Customer.objects.first()
    before = data.interactions_frame(AS_OF)
    Interaction.objects.create(external_id="late", customer=customer, type="purchase", amount=999,
                               occurred_at=datetime(2025, 7, 1, 0, 0, 1, tzinfo=UTC))

    after = data.interactions_frame(AS_OF)

    assert len(after) == len(before)
    assert after["occurred_at"].max() < datetime(2025, 7, 1)


def _install_failing_trigger(table, run_id):
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"CREATE TRIGGER test_fail_ml BEFORE INSERT ON {table} WHEN NEW.run_id = {run_id} "
                           "BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
        else:
            cursor.execute("CREATE FUNCTION test_fail_ml() RETURNS trigger AS $$ BEGIN "
                           f"IF NEW.run_id = {run_id} THEN RAISE EXCEPTION 'injected failure'; END IF; "
                           "RETURN NEW; END $$ LANGUAGE plpgsql")
            cursor.execute(f"CREATE TRIGGER test_fail_ml BEFORE INSERT ON {table} "
                           "FOR EACH ROW EXECUTE FUNCTION test_fail_ml()")


def test_failed_run_leaves_previous_insights_exactly_as_they_were(business):
    first = services.run_now("forecast", as_of=AS_OF)
    before = list(Forecast.objects.filter(run=first).order_by("customer_id").values_list(
        "customer_id", "expected_spend", "churn_probability"))
    exported_before = list(_export_rows())
    run, _ = services.request_retrain("forecast", as_of=AS_OF, enqueue=False)
    _install_failing_trigger(Forecast._meta.db_table, run.pk)

    failed = services.execute_run(run.pk)

    assert failed.status == "failed" and "injected failure" in failed.error
    assert not failed.is_published and TrainingRun.objects.get(pk=first.pk).is_published
    assert list(Forecast.objects.filter(run=first).order_by("customer_id").values_list(
        "customer_id", "expected_spend", "churn_probability")) == before
    assert not Forecast.objects.filter(run=failed).exists()
    assert list(_export_rows()) == exported_before


def _export_rows():
    import os
    import tempfile

    fd, path = tempfile.mkstemp(suffix=".csv")
    os.close(fd)
    try:
        call_command("export_insights", out=path)
        with open(path, newline="") as f:
            return list(csv.reader(f))
    finally:
        os.unlink(path)


def test_export_insights_follows_the_contract(business):
    services.run_now("segmentation", as_of=AS_OF)
    services.run_now("forecast", as_of=AS_OF)

    rows = _export_rows()

    assert tuple(rows[0]) == INSIGHT_COLUMNS
    body = [dict(zip(rows[0], r)) for r in rows[1:]]
    assert len(body) == Customer.objects.count()
    assert len({r["external_id"] for r in body}) == len(body)
    with_forecast = [r for r in body if r["expected_purchases"]]
    assert with_forecast
    for r in with_forecast:
        assert 0 <= float(r["churn_probability"]) <= 1 and 0 <= float(r["expected_refund_rate"]) <= 1
        assert float(r["expected_purchases"]) >= 0 and float(r["clv"]) >= 0
        assert r["as_of"] == "2025-06-30" and r["horizon_days"] == "90" and r["segment"]
    stored = Forecast.objects.select_related("customer").filter(run__is_published=True).first()
    row = next(r for r in body if r["external_id"] == stored.customer.external_id)
    assert float(row["expected_spend"]) == pytest.approx(stored.expected_spend, rel=1e-5)


def test_export_insights_defuses_formula_cells(db):
    Customer.objects.create(external_id="=HYPERLINK(\"http://evil\")")
    Customer.objects.create(external_id="-42")

    ids = [r[0] for r in _export_rows()[1:]]

    assert "'=HYPERLINK(\"http://evil\")" in ids and "-42" in ids


def test_rollback_republishes_an_earlier_run(business):
    first = services.run_now("segmentation", as_of=AS_OF)
    second = services.run_now("segmentation", as_of=AS_OF - timedelta(days=60))
    assert services.published_run("segmentation") == second

    services.publish_run(first.pk)

    assert services.published_run("segmentation") == first
    assert TrainingRun.objects.filter(kind="segmentation", is_published=True).count() == 1
    seg = next(r for r in _export_rows()[1:] if r[1])
    assert seg[9] == "2025-06-30"


def test_segment_names_stay_stable_across_retrains(business):
    first = services.run_now("segmentation", as_of=AS_OF)
    second = services.run_now("segmentation", as_of=AS_OF)
    assert (sorted(Segment.objects.filter(run=first).values_list("name", flat=True))
            == sorted(Segment.objects.filter(run=second).values_list("name", flat=True)))


def test_unpublishable_run_is_refused(business):
    run, _ = services.request_retrain("forecast", as_of=AS_OF, enqueue=False)
    with pytest.raises(services.RunNotPublishable):
        services.publish_run(run.pk)


def test_retrain_requests_while_queued_collapse_into_one_run(transactional_db):
    results = []

    def ask():
        results.append(services.request_retrain("forecast", enqueue=False))
        connection.close()

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len({run.pk for run, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert TrainingRun.objects.filter(kind="forecast").count() == 1


def test_second_run_cannot_start_while_one_runs(db):
    running, _ = services.request_retrain("forecast", enqueue=False)
    assert services.claim_run(running.pk)
    waiting, created = services.request_retrain("forecast", enqueue=False)

    assert created and waiting.pk != running.pk
    assert services.claim_run(waiting.pk) is False
    assert TrainingRun.objects.get(pk=waiting.pk).status == "queued"
    assert services.waiting_behind_running(waiting.pk)


def test_stale_running_run_is_requeued_then_failed_never_stuck(db, settings):
    run, _ = services.request_retrain("segmentation", enqueue=False)
    assert services.claim_run(run.pk)
    long_ago = timezone.now() - timedelta(seconds=settings.ML_STALE_AFTER_SECONDS + 5)
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=long_ago)

    assert services.sweep_stale_runs() == {"requeued": [run.pk], "failed": []}
    assert TrainingRun.objects.get(pk=run.pk).status == "queued"

    TrainingRun.objects.filter(pk=run.pk).update(status="running", heartbeat_at=long_ago,
                                                 attempts=services.MAX_ATTEMPTS)
    assert services.sweep_stale_runs() == {"requeued": [], "failed": [run.pk]}
    failed = TrainingRun.objects.get(pk=run.pk)
    assert failed.status == "failed" and "stopped responding" in failed.error


def test_retrain_without_data_is_refused_with_a_clear_message(db):
    with pytest.raises(Exception, match="no interactions yet"):
        call_command("retrain", kind="segmentation", sync=True)


def test_import_schedules_one_retrain_of_each_kind_when_configured(db, settings, write_csv):
    from crm.imports.importer import import_files

    settings.RETRAIN_AFTER_IMPORT = True
    path = write_csv("c.csv", ["external_id"], [["A1"], ["A2"]])

    import_files({"customers": path})
    import_files({"customers": write_csv("c2.csv", ["external_id"], [["A3"]])})
    import_files({"customers": path})  # nothing changes: nothing to retrain

    queued = TrainingRun.objects.filter(status="queued", trigger="import")
    assert sorted(queued.values_list("kind", flat=True)) == ["forecast", "recommendation", "segmentation"]


def test_two_runs_on_the_same_data_make_the_same_choice_and_numbers(business):
    # when: the same data and as_of, trained twice (on PostgreSQL the rows may come back in another
    # physical order after updates; the read is ordered, the sums exact)
    first = services.run_now("forecast", as_of=AS_OF)
    Interaction.objects.filter(pk__in=list(Interaction.objects.order_by("pk").values_list("pk", flat=True)[:50])).update(
        notes="touched")
    second = services.run_now("forecast", as_of=AS_OF)
    # then
    assert first.status == second.status == "succeeded"
    assert first.chosen_algorithm == second.chosen_algorithm
    assert first.metrics["backtest"] == second.metrics["backtest"]
    assert first.metrics["model"] == second.metrics["model"]
    rows = [list(Forecast.objects.filter(run=r).order_by("customer_id").values_list(
        "customer_id", "expected_purchases", "expected_spend", "churn_probability")) for r in (first, second)]
    assert rows[0] == rows[1]
