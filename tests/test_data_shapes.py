"""Every data shape of the matrix end to end on a real database, as a company would try it:
its files through ``import_data``, then ``retrain --kind all --sync`` and ``export_insights``.

Each shape must give every kind a defined outcome — published (a model, a baseline, or "not yet
validated") or skipped with its reason — one line per kind, exit 0, and an export row for every
customer. The shapes are generated in the test (tests/shapes.py); nothing comes from ../shared.
"""
import csv
import io

import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from ml.models import Forecast, Suggestion, TrainingRun
from tests import shapes

# A smaller planted business than the pipeline tests': the database round trip is the point.
MATRIX = shapes.matrix(n_customers=150)


def write_files(shape: shapes.Shape, folder, with_offset=None) -> dict:
    """The shape as the contract's CSV files; columns the shape lacks are left out, as a real
    export without them would. ``with_offset``: write timestamps with this UTC offset."""
    t = shape.interactions
    ext = dict(zip(shape.customers["customer_id"], shape.customers["external_id"]))
    files = {"customers": folder / "customers.csv", "interactions": folder / "interactions.csv"}
    shape.customers[["external_id"]].to_csv(files["customers"], index=False)
    stamp = t["occurred_at"].dt.strftime("%Y-%m-%dT%H:%M:%S") + (with_offset or "")
    rows = pd.DataFrame({"customer_external_id": t["customer_id"].map(ext), "type": t["type"],
                         "occurred_at": stamp, "quantity": t["quantity"], "order_ref": t["order_ref"],
                         "external_id": [f"row{i}" for i in range(len(t))]})
    if (t["product_id"] >= 0).any():
        sku = dict(zip(shape.products["product_id"], shape.products["sku"]))
        rows["product_sku"] = t["product_id"].map(sku)
        files["products"] = folder / "products.csv"
        shape.products[["sku", "name", "category", "price", "description", "tags"]].to_csv(files["products"],
                                                                                          index=False)
    if (t["amount"] > 0).any():
        rows["amount"] = t["amount"].map(lambda v: f"{v:.2f}")
    rows.to_csv(files["interactions"], index=False)
    return files


def run_shape(shape, tmp_path, with_offset=None):
    files = write_files(shape, tmp_path, with_offset)
    call_command("import_data", **{k: str(v) for k, v in files.items()}, stdout=io.StringIO())
    out = io.StringIO()
    exit_code = 0
    try:
        call_command("retrain", kind="all", as_of=shape.as_of.date(), horizon_days=shape.horizon_days, sync=True,
                     stdout=out)
    except CommandError:
        exit_code = 1
    export = tmp_path / "insights.csv"
    call_command("export_insights", out=str(export), stdout=io.StringIO())
    with open(export, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    runs = {r.kind: r for r in TrainingRun.objects.order_by("pk")}
    lines = [line for line in out.getvalue().splitlines() if not line.startswith(" ")]
    return exit_code, lines, runs, rows


def _line(lines, kind):
    found = [line for line in lines if line.startswith(f"{kind}: run ")]
    assert len(found) == 1, lines
    return found[0]


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_shape_gets_an_outcome_for_every_kind_and_exit_0(db, tmp_path, name):
    shape = MATRIX[name]
    # when
    exit_code, lines, runs, rows = run_shape(shape, tmp_path)
    # then: one line per kind, each published or skipped with its reason; nothing failed
    assert exit_code == 0, lines
    for kind in ("segmentation", "forecast", "recommendation"):
        line = _line(lines, kind)
        run = runs[kind]
        assert run.status in ("succeeded", "skipped"), (kind, run.error)
        if run.status == "succeeded":
            assert run.is_published and " published: " in line
            assert run.metrics["outcome"]["basis"] in ("model", "baseline", "not validated")
        else:
            assert run.error and f"skipped: {run.error.splitlines()[0]}" in line
    assert len(rows) == len(shape.customers)
    forecast = runs["forecast"]
    buyers = shape.interactions.loc[shape.interactions["type"] == "purchase", "customer_id"].nunique()
    assert Forecast.objects.filter(run=forecast).count() == buyers


def test_no_catalogue_skips_recommendations_only(db, tmp_path):
    exit_code, lines, runs, rows = run_shape(MATRIX["no_catalogue"], tmp_path)
    assert exit_code == 0
    assert runs["recommendation"].status == "skipped"
    assert "no product catalogue" in runs["recommendation"].error
    assert runs["forecast"].is_published and runs["segmentation"].is_published
    assert all(r["recommendations"] == "" and r["reorder"] == "" for r in rows)


def test_no_amounts_exports_orders_and_churn_but_no_money(db, tmp_path):
    exit_code, lines, runs, rows = run_shape(MATRIX["no_amounts"], tmp_path)
    assert exit_code == 0
    targets = runs["forecast"].metrics["targets"]
    assert not targets["spend"]["forecast"] and targets["spend"]["reason"].startswith("no amounts")
    bought = [r for r in rows if r["expected_purchases"] != ""]
    assert bought and all(r["expected_spend"] == "" and r["clv"] == "" and r["expected_refund_rate"] == ""
                          for r in bought)
    assert all(0 <= float(r["churn_probability"]) <= 1 for r in bought)


def test_ratings_like_data_gets_no_reorder_suggestions(db, tmp_path):
    exit_code, lines, runs, rows = run_shape(MATRIX["ratings_like"], tmp_path)
    assert exit_code == 0
    assert not Suggestion.objects.filter(run=runs["recommendation"], kind="reorder").exists()
    assert runs["recommendation"].metrics.get("reorder_reason")
    assert any(r["recommendations"] for r in rows)


def test_two_weeks_of_history_is_published_as_not_yet_validated(db, tmp_path):
    exit_code, lines, runs, rows = run_shape(MATRIX["two_weeks"], tmp_path)
    assert exit_code == 0
    forecast = runs["forecast"]
    assert forecast.metrics["outcome"]["basis"] == "not validated"
    assert "not yet validated: 14 days of history" in _line(lines, "forecast")
    assert Forecast.objects.filter(run=forecast, basis__startswith="not yet validated").exists()


def test_near_midnight_in_a_non_utc_time_zone_counts_the_local_as_of_day(db, tmp_path, settings):
    # given: a New York shop whose purchases all happen late in the evening, local time; one
    # more at 23:59 on the as-of day and one at 00:00 the day after, for two new customers
    settings.TIME_ZONE = "America/New_York"
    base = MATRIX["business"]
    late = base.interactions.assign(
        occurred_at=base.interactions["occurred_at"].dt.normalize() + pd.Timedelta(hours=23, minutes=30))
    edge = pd.DataFrame({"customer_id": [9001, 9002], "product_id": [1, 1], "type": "purchase",
                         "occurred_at": [base.as_of + pd.Timedelta(hours=23, minutes=59),
                                         base.as_of + pd.Timedelta(days=1)],
                         "quantity": [1, 1], "amount": [12.5, 12.5], "order_ref": ["e1", "e2"]})
    customers = pd.concat([base.customers, pd.DataFrame({"customer_id": [9001, 9002],
                                                         "external_id": ["LATE1", "LATE2"]})], ignore_index=True)
    shape = shapes.Shape("near_midnight", pd.concat([late, edge], ignore_index=True), base.products, customers)
    # when: the file's timestamps are local wall-clock times without an offset
    exit_code, lines, runs, rows = run_shape(shape, tmp_path)
    # then: the whole local as-of day is seen, nothing of the next one
    assert exit_code == 0
    by_id = {r["external_id"]: r for r in rows}
    assert by_id["LATE1"]["expected_purchases"] != "" and by_id["LATE2"]["expected_purchases"] == ""
    assert runs["forecast"].as_of == base.as_of.date()
