"""ml.data.write_frame writes a frame's rows as the ORM would on either database (COPY in CSV on
PostgreSQL, executemany on SQLite): empty text stays empty, NaN and None are NULL, dates, booleans,
JSON text and text with quotes, commas, line breaks and accents come back as written."""
import json
from datetime import date

import numpy as np
import pandas as pd
import pytest

from crm.models import Customer, Product
from ml import data
from ml.forecast_rows import write_forecasts
from ml.models import Forecast, Suggestion, TrainingRun

pytestmark = pytest.mark.django_db

AWKWARD = ['He said "buy it", twice', "line one\nline two", "", "Crème brûlée, 2 × 500 g", "\\N", "NULL"]


@pytest.fixture
def run_and_rows():
    run = TrainingRun.objects.create(kind="recommendation")
    customers = [Customer.objects.create(external_id=f"c{i}") for i in range(len(AWKWARD))]
    product = Product.objects.create(sku="SKU1", name="product 1")
    return run, customers, product


def test_write_frame_round_trips_awkward_text_nulls_dates_and_booleans(run_and_rows):
    run, customers, product = run_and_rows
    evidence = [{"text": t, "n": i} for i, t in enumerate(AWKWARD)]
    due = [date(2025, 7, 1), None, date(2024, 2, 29), None, date(2025, 12, 31), None]
    frame = pd.DataFrame({
        "run_id": run.pk, "customer_id": [c.pk for c in customers], "kind": "reorder", "rank": np.arange(1, 7),
        "product_id": product.pk, "score": [0.5, 1e-9, 3.25, 0.0, 1.0, 2.0], "reason": AWKWARD,
        "evidence": [json.dumps(e) for e in evidence], "basis": ["personal", "", "popular", "", "x", ""],
        "expected_on": due, "control": [True, False, True, False, False, True],
    })

    assert data.write_frame(Suggestion, frame) == 6

    stored = list(Suggestion.objects.filter(run=run).order_by("rank"))
    assert [s.reason for s in stored] == AWKWARD
    assert [s.evidence for s in stored] == evidence
    assert [s.basis for s in stored] == ["personal", "", "popular", "", "x", ""]
    assert [s.expected_on for s in stored] == due
    assert [s.control for s in stored] == [True, False, True, False, False, True]
    assert [s.score for s in stored] == [0.5, 1e-9, 3.25, 0.0, 1.0, 2.0]
    assert [s.customer_id for s in stored] == [c.pk for c in customers]


def test_write_frame_of_an_empty_frame_writes_nothing(run_and_rows):
    frame = pd.DataFrame({"run_id": pd.Series([], dtype="int64"), "customer_id": pd.Series([], dtype="int64")})
    assert data.write_frame(Forecast, frame.assign(expected_purchases=0.0, churn_probability=0.0)) == 0
    assert not Forecast.objects.exists()


def test_write_frame_writes_every_block_of_a_frame_longer_than_one(run_and_rows, monkeypatch):
    run, customers, _ = run_and_rows
    monkeypatch.setattr(data, "WRITE_BATCH", 4)  # 6 rows: two blocks
    pred = pd.DataFrame({
        "expected_purchases": [1.0, 2.0, np.nan, 0.5, 3.0, 4.0], "expected_spend": [np.nan, 10.0, 1.0, np.nan, 2.0, 3.0],
        "churn_probability": [0.1, 1.5, 0.0, 0.2, 0.3, -0.1], "clv": [np.nan] * 6, "expected_refund_rate": 0.0,
        "purchases_p10": 0.0, "purchases_p90": 1.0, "spend_p10": np.nan, "spend_p90": np.nan,
        "basis": ["model", "", "model", "rule", "model", "model"], "factors": [["a, \"b\""], [], ["c"], [], [], ["é"]],
    }, index=pd.Index([c.pk for c in customers], name="customer_id")).fillna({"expected_purchases": 0.0})

    assert write_forecasts(run.pk, pred) == 6

    stored = list(Forecast.objects.filter(run=run).order_by("customer_id"))
    assert [f.expected_spend for f in stored] == [None, 10.0, 1.0, None, 2.0, 3.0]
    assert [f.churn_probability for f in stored] == [0.1, 1.0, 0.0, 0.2, 0.3, 0.0]  # clipped to [0, 1]
    assert [f.clv for f in stored] == [None] * 6 and [f.value_at_risk for f in stored] == [None] * 6
    assert [f.basis for f in stored] == ["model", "", "model", "rule", "model", "model"]
    assert [f.factors for f in stored] == [['a, "b"'], [], ["c"], [], [], ["é"]]
