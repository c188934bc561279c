"""Small worlds for the page tests: customers of two reps and unassigned ones, and published runs."""
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from crm.models import Customer, Interaction, Product
from ml.models import CustomerSegment, Forecast, Prospect, Segment, SimilarProduct, Suggestion, TrainingRun

S = TrainingRun.Status
K = TrainingRun.Kind


def make_run(kind, *, published=True, status=S.SUCCEEDED, metrics=None, **extra):
    now = timezone.now()
    return TrainingRun.objects.create(kind=kind, status=status, is_published=published,
                                      published_at=now if published else None, as_of=date(2026, 1, 31),
                                      started_at=now, finished_at=now, metrics=metrics or {}, **extra)


FORECAST_METRICS = {
    "cut": "2025-11-01", "as_of": "2026-01-31", "horizon_days": 90, "n_customers": 3, "chosen": "ensemble",
    "model": {"orders": {"mae": 0.8, "rmse": 1.2, "total_pct_error": -5.0},
              "spend": {"mae": 70.0, "rmse": 200.0, "total_pct_error": -10.0},
              "churn": {"auc": 0.91, "brier": 0.1}, "coverage": {"purchases_p10_p90": 0.79}},
    "baselines": {"naive rate": {"orders": {"mae": 0.95, "rmse": 1.4}, "spend": {"mae": 80.0, "rmse": 215.0},
                                 "churn": {"auc": 0.85, "brier": 0.16}}},
    "series": {"orders": [{"bin": 1, "count": 2, "mean_predicted": 0.5, "mean_actual": 0.4},
                          {"bin": 2, "count": 1, "mean_predicted": 2.0, "mean_actual": 2.5}],
               "spend": [{"bin": 1, "count": 2, "mean_predicted": 10.0, "mean_actual": 12.0}]},
    "gate": {"publish": True, "summary": "orders RMSE +12.0 %"},
}


class World:
    """rep's customers (Ada, Bob), other_rep's (Zed), an unassigned one (Una); products; runs."""


@pytest.fixture
def world(rep, other_rep):
    w = World()
    w.rep, w.other_rep = rep, other_rep
    today = timezone.localdate()
    w.ada = Customer.objects.create(external_id="C-ADA", name="Ada Lovelace", email="ada@example.com",
                                    company="Engines Ltd", owner=rep, signup_date=today - timedelta(days=400))
    w.bob = Customer.objects.create(external_id="C-BOB", name="Bob Builder", email="bob@example.com",
                                    company="Bricks", owner=rep, signup_date=today - timedelta(days=2))
    w.zed = Customer.objects.create(external_id="C-ZED", name="Zed Secret", email="zed@example.com",
                                    company="Hidden Co", owner=other_rep, signup_date=today - timedelta(days=1))
    w.una = Customer.objects.create(external_id="C-UNA", name="Una Assigned", company="Nobody's",
                                    signup_date=today - timedelta(days=300))
    w.widget = Product.objects.create(sku="W-1", name="Widget", category="Tools", price=Decimal("9.50"))
    w.gadget = Product.objects.create(sku="G-1", name="Gadget", category="Toys", price=Decimal("20.00"))
    now = timezone.now()
    for i, c in enumerate((w.ada, w.zed, w.una)):
        Interaction.objects.create(external_id=f"p-{c.pk}", customer=c, type="purchase", product=w.widget,
                                   amount=Decimal("100.00"), occurred_at=now - timedelta(days=10 + i))
    Interaction.objects.create(external_id="e-ada", customer=w.ada, type="email", notes="Sent the catalogue",
                               occurred_at=now - timedelta(days=3))

    w.seg_old = make_run(K.SEGMENTATION, published=False)
    old_a = Segment.objects.create(run=w.seg_old, key=0, name="Champions", profile="old", size=2)
    old_b = Segment.objects.create(run=w.seg_old, key=1, name="Sleepers", profile="old", size=2)
    w.seg_run = make_run(K.SEGMENTATION)
    w.champions = Segment.objects.create(run=w.seg_run, key=0, name="Champions", size=2,
                                         profile="Champions: buy every 4 weeks, spend 3x the median buyer.",
                                         figures={"median_spend": 300, "median_orders": 12, "median_recency_days": 6})
    w.sleepers = Segment.objects.create(run=w.seg_run, key=1, name="Sleepers", size=2,
                                        profile="Sleepers: last bought 200 days ago.",
                                        figures={"median_spend": 40, "median_orders": 1, "median_recency_days": 200})
    for c, old, new in ((w.ada, old_a, w.champions), (w.zed, old_a, w.sleepers), (w.una, old_b, w.sleepers),
                        (w.bob, old_b, w.champions)):
        CustomerSegment.objects.create(run=w.seg_old, customer=c, segment=old)
        CustomerSegment.objects.create(run=w.seg_run, customer=c, segment=new)

    w.fc_run = make_run(K.FORECAST, metrics=FORECAST_METRICS, horizon_days=90)
    for c, churn, clv in ((w.ada, 0.7, 1000.0), (w.bob, 0.1, 300.0), (w.zed, 0.9, 5000.0), (w.una, 0.4, 200.0)):
        Forecast.objects.create(run=w.fc_run, customer=c, expected_purchases=2.5, expected_spend=250.0,
                                churn_probability=churn, clv=clv, expected_refund_rate=0.05, purchases_p10=1.0,
                                purchases_p90=4.0, spend_p10=100.0, spend_p90=400.0, basis="own history",
                                factors=["last purchase 10 days ago, usually buys every 35 days"])

    w.rec_run = make_run(K.RECOMMENDATION)
    Suggestion.objects.create(run=w.rec_run, customer=w.ada, kind="recommendation", rank=1, product=w.gadget,
                              score=0.9, reason="Customers who buy Widget often buy Gadget")
    Suggestion.objects.create(run=w.rec_run, customer=w.ada, kind="reorder", rank=1, product=w.widget,
                              score=0.8, reason="Buys Widget every 30 days; last bought 31 days ago")
    Suggestion.objects.create(run=w.rec_run, customer=w.zed, kind="recommendation", rank=1, product=w.gadget,
                              score=0.99, reason="Zed's secret reason")
    SimilarProduct.objects.create(run=w.rec_run, product=w.widget, rank=1, similar=w.gadget, score=0.5,
                                  reason="Often bought together")
    Prospect.objects.create(run=w.rec_run, product=w.gadget, rank=1, customer=w.zed, score=0.9, reason="zed pitch")
    Prospect.objects.create(run=w.rec_run, product=w.gadget, rank=2, customer=w.ada, score=0.8,
                            reason="Bought Widget, not Gadget yet")
    return w


@pytest.fixture
def rep_client(client, rep):
    client.force_login(rep)
    return client


@pytest.fixture
def manager_client(client, manager):
    client.force_login(manager)
    return client


@pytest.fixture
def admin_client_(client, admin_user):
    client.force_login(admin_user)
    return client
