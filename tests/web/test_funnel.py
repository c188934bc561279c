"""The suggestion funnel (every mark kept; bought within the run's horizon after the offer) and the
measured uplift of shown vs control customers, on planted events and purchases, and on the Models page."""
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from crm.models import Customer, Interaction, Product
from ml import funnel
from ml import services as ml_services
from ml.models import Suggestion, SuggestionEvent, SuggestionFeedback, TrainingRun

from .conftest import make_run


def _row(rows, kind):
    return next(r for r in rows if r["kind"] == kind)


def _mark(customer, product, kind, event, at, run=None):
    return SuggestionEvent.objects.create(customer=customer, product=product, kind=kind, event=event, at=at, run=run)


def _buy(customer, product, at, ref):
    Interaction.objects.create(external_id=ref, customer=customer, type="purchase", product=product,
                               amount=Decimal("20.00"), occurred_at=at)


# --- the funnel ------------------------------------------------------------------------------------

def test_funnel_offered_then_accepted_keeps_both_marks(rep_client, rep, world):
    url = reverse("customer_feedback", args=[world.ada.pk])
    rep_client.post(url, {"product": world.gadget.pk, "kind": "recommendation", "status": "offered"})
    rep_client.post(url, {"product": world.gadget.pk, "kind": "recommendation", "status": "accepted"})

    events = list(SuggestionEvent.objects.values_list("event", "user", "run", "kind"))
    assert events == [("offered", rep.pk, world.rec_run.pk, "recommendation"),
                      ("accepted", rep.pk, world.rec_run.pk, "recommendation")]
    assert SuggestionFeedback.objects.get().status == "accepted"  # the current status stays one row
    row = _row(funnel.suggestion_funnel(*funnel.default_period()), "recommendation")
    assert (row["offered"], row["accepted"], row["declined"], row["accepted_rate"]) == (1, 1, 0, 1.0)


def test_funnel_api_feedback_adds_an_event_per_mark(world, rep):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_login(rep)
    for status in ("offered", "declined", "offered"):
        assert api.post("/api/v1/feedback/", {"customer": world.ada.pk, "sku": "W-1", "kind": "reorder",
                                              "status": status}).status_code == 200

    assert list(SuggestionEvent.objects.values_list("event", flat=True)) == ["offered", "declined", "offered"]
    assert SuggestionFeedback.objects.get().status == "offered"


def test_funnel_follow_up_planned_from_a_suggestion_accepts_it(world, rep):
    followup = ml_services.plan_followup(user=rep, customer=world.ada, due_at=timezone.now() + timedelta(hours=2),
                                         type="call", note="Offer Gadget", product=world.gadget,
                                         suggestion_kind="recommendation")

    assert (followup.product, followup.suggestion_kind) == (world.gadget, "recommendation")
    assert list(SuggestionEvent.objects.values_list("event", "user", "run", "product")) == [
        ("accepted", rep.pk, world.rec_run.pk, world.gadget.pk)]
    assert SuggestionFeedback.objects.get(customer=world.ada, product=world.gadget).status == "accepted"
    row = _row(funnel.suggestion_funnel(*funnel.default_period()), "recommendation")
    assert (row["offered"], row["accepted"]) == (1, 1)


def test_funnel_follow_up_not_from_a_suggestion_marks_nothing(world, rep):
    ml_services.plan_followup(user=rep, customer=world.ada, due_at=timezone.now(), type="todo", note="Say hello",
                              product=world.widget)

    assert not SuggestionEvent.objects.exists() and not SuggestionFeedback.objects.exists()


def test_funnel_follow_up_from_a_suggestion_through_the_api_accepts_it(world, rep):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_login(rep)
    response = api.post("/api/v1/follow-ups/", {"customer": world.ada.pk, "type": "call", "product": "W-1",
                                                "suggestion_kind": "reorder", "due_at": timezone.now().isoformat()},
                        format="json")

    assert response.status_code == 201
    assert list(SuggestionEvent.objects.values_list("event", "kind")) == [("accepted", "reorder")]


def test_funnel_purchase_within_the_horizon_converts_after_it_does_not(world):
    now = timezone.now()
    offered = now - timedelta(days=60)
    horizon = 30  # the run's horizon: the cross-sell marks' windows are over
    TrainingRun.objects.filter(pk=world.rec_run.pk).update(horizon_days=horizon)
    # Ada: offered and accepted, bought 20 days later (converted)
    _mark(world.ada, world.gadget, "recommendation", "offered", offered, world.rec_run)
    _mark(world.ada, world.gadget, "recommendation", "accepted", offered + timedelta(days=1), world.rec_run)
    _buy(world.ada, world.gadget, offered + timedelta(days=20), "ada-gadget")
    # Zed: offered, bought one day after the horizon (not converted)
    _mark(world.zed, world.gadget, "recommendation", "offered", offered, world.rec_run)
    _buy(world.zed, world.gadget, offered + timedelta(days=horizon + 1), "zed-gadget")
    # Una: offered, declined, bought the day before the offer only (not converted)
    _mark(world.una, world.gadget, "recommendation", "declined", offered, world.rec_run)
    _buy(world.una, world.gadget, offered - timedelta(days=1), "una-gadget")
    # Ada's reorder: offered 5 days ago, not bought yet: still open
    _mark(world.ada, world.widget, "reorder", "offered", now - timedelta(days=5), world.rec_run)

    rows = funnel.suggestion_funnel(*funnel.default_period(), now=now)

    cross = _row(rows, "recommendation")
    assert (cross["offered"], cross["accepted"], cross["declined"], cross["bought"]) == (3, 1, 1, 1)
    assert (cross["bought_after_accepting"], cross["open"]) == (1, 0)
    assert cross["bought_rate"] == pytest.approx(1 / 3) and cross["accepted_bought_rate"] == 1.0
    reorder = _row(rows, "reorder")
    assert (reorder["offered"], reorder["bought"], reorder["open"]) == (1, 0, 1)


def test_funnel_counts_only_suggestions_marked_in_the_period(world):
    now = timezone.now()
    _mark(world.ada, world.gadget, "recommendation", "offered", now - timedelta(days=120))
    _mark(world.zed, world.gadget, "recommendation", "offered", now - timedelta(days=10))

    assert _row(funnel.suggestion_funnel(*funnel.default_period()), "recommendation")["offered"] == 1
    today = timezone.localdate()
    chosen = funnel.suggestion_funnel(today - timedelta(days=200), today - timedelta(days=100))
    assert _row(chosen, "recommendation")["offered"] == 1


def test_funnel_models_page_shows_the_chosen_period(rep_client, world):
    _mark(world.ada, world.gadget, "recommendation", "offered", timezone.now() - timedelta(days=120))
    today = timezone.localdate()

    response = rep_client.get(reverse("model_list"), {"funnel_from": str(today - timedelta(days=150)),
                                                      "funnel_to": str(today)})

    assert response.status_code == 200
    assert _row(response.context["funnel"], "recommendation")["offered"] == 1
    assert 'id="funnel-recommendation"' in response.content.decode()


def test_funnel_models_page_refuses_a_period_ending_before_it_starts(rep_client, world):
    today = timezone.localdate()

    response = rep_client.get(reverse("model_list"), {"funnel_from": str(today), "funnel_to": str(today - timedelta(1))})

    assert response.status_code == 200
    assert "The end of the period must not be before its start." in response.content.decode()
    assert response.context["period"] == funnel.default_period()


def test_funnel_models_page_refuses_a_date_that_is_not_one(rep_client, world):
    response = rep_client.get(reverse("model_list"), {"funnel_from": "yesterday"})

    assert response.status_code == 200 and "Enter a valid date." in response.content.decode()


# --- the measured uplift ---------------------------------------------------------------------------

def _planted_run(shown_rate: float, control_rate: float, n: int = 200) -> TrainingRun:
    """A recommendation run published 100 days ago (horizon 90: its window is over) with ``n`` shown
    and ``n`` control customers, one cross-sell suggestion each; the given share of each group
    bought its suggested product within the window; everyone in the control group also bought it
    after the window (which must not count)."""
    now = timezone.now()
    run = make_run(TrainingRun.Kind.RECOMMENDATION, horizon_days=90)
    TrainingRun.objects.filter(pk=run.pk).update(published_at=now - timedelta(days=100))
    run.refresh_from_db()
    product = Product.objects.create(sku="UP-1", name="Upsell")
    customers = Customer.objects.bulk_create([Customer(external_id=f"U{i}") for i in range(2 * n)])
    Suggestion.objects.bulk_create([
        Suggestion(run=run, customer=c, kind="recommendation", rank=1, product=product, score=0.5, reason="planted",
                   control=i >= n) for i, c in enumerate(customers)])
    buys = []
    for group, rate in ((customers[:n], shown_rate), (customers[n:], control_rate)):
        buys += [Interaction(external_id=f"b{c.pk}", customer=c, type="purchase", product=product,
                             occurred_at=run.published_at + timedelta(days=20)) for c in group[:round(rate * n)]]
    buys += [Interaction(external_id=f"late{c.pk}", customer=c, type="purchase", product=product,
                         occurred_at=run.published_at + timedelta(days=95)) for c in customers[n:]]
    Interaction.objects.bulk_create(buys)
    return run


def test_uplift_shown_buying_twice_as_often_is_detected_with_an_interval_above_zero(db):
    run = _planted_run(0.4, 0.2)

    row = _row(funnel.measured_uplift(run), "recommendation")

    assert (row["shown"], row["shown_buyers"], row["control"], row["control_buyers"]) == (200, 80, 200, 40)
    result = row["result"]
    assert result["difference"] == pytest.approx(0.2) and result["ratio"] == pytest.approx(2.0)
    assert result["significant"] and 0 < result["low"] < 0.2 < result["high"]
    assert row["verdict"].startswith("shown customers bought the suggested products more often")
    assert row["days_measured"] == 90


def test_uplift_planted_null_says_not_yet_significant(db):
    run = _planted_run(0.3, 0.3)

    row = _row(funnel.measured_uplift(run), "recommendation")

    assert row["result"]["low"] < 0 < row["result"]["high"] and not row["result"]["significant"]
    assert row["verdict"].startswith("not yet significant")


def test_uplift_without_a_control_group_says_so(world):
    row = _row(funnel.measured_uplift(world.rec_run), "recommendation")

    assert row["result"] is None and row["verdict"].startswith("no control group")


def test_uplift_models_page_shows_counts_interval_and_verdict(rep_client, db):
    TrainingRun.objects.filter(kind="recommendation").update(is_published=False)
    _planted_run(0.3, 0.3)

    html = rep_client.get(reverse("model_list")).content.decode()

    assert 'id="uplift-recommendation"' in html
    assert "60 / 200" in html and "not yet significant" in html


def test_funnel_period_form_shows_the_default_period(rep_client, db):
    first, last = funnel.default_period()
    html = rep_client.get(reverse("model_list")).content.decode()
    assert f'name="funnel_from" value="{first:%Y-%m-%d}"' in html and f'name="funnel_to" value="{last:%Y-%m-%d}"' in html
