"""Reorder means due: a reorder suggestion is listed once its expected date is within
ML_REORDER_DUE_DAYS or past, the overdue first; never right after a purchase.

The first test trains the real recommender on a planted business (three customers who buy the
same product every 30 days, last 5, 28 and 40 days ago); the others plant suggestion rows."""
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from crm.models import Customer, Interaction, Product
from ml import insights as ml_insights
from ml.models import Suggestion, TrainingRun
from tests.web.conftest import make_run


def plant_monthly_buyers(today):
    """Customers M5, M28 and M40 buy FOOD every 30 days, the last time 5, 28 and 40 days ago;
    twenty others buy one or two of eight other products once."""
    food = Product.objects.create(sku="FOOD", name="Dog food", category="Food", price=Decimal("30"))
    others = [Product.objects.create(sku=f"P{i}", name=f"Product {i}", category=f"C{i % 3}", price=Decimal("10"))
              for i in range(8)]
    noon = timezone.make_aware(timezone.datetime.combine(today, timezone.datetime.min.time())) + timedelta(hours=12)
    rows, n = [], 0
    for since in (5, 28, 40):
        c = Customer.objects.create(external_id=f"M{since}", name=f"Monthly {since}")
        for k in range(6):
            n += 1
            rows.append(Interaction(external_id=f"i{n}", customer=c, type="purchase", product=food, amount=30,
                                    occurred_at=noon - timedelta(days=since + 30 * k)))
    for j in range(20):
        c = Customer.objects.create(external_id=f"O{j}", name=f"Other {j}")
        for p in others[j % 8: j % 8 + 1 + j % 2]:
            n += 1
            rows.append(Interaction(external_id=f"i{n}", customer=c, type="purchase", product=p, amount=10,
                                    occurred_at=noon - timedelta(days=3 + 7 * j)))
    Interaction.objects.bulk_create(rows)
    return food


def reorder_skus(customer):
    return [(s["sku"], s["expected_on"]) for s in ml_insights.customer_insights(customer)["reorder"]]


def test_trained_reorder_is_listed_only_when_due(db, settings):
    settings.ML_REORDER_DUE_DAYS = 14
    today = timezone.localdate()
    plant_monthly_buyers(today)
    call_command("retrain", kind="recommendation", as_of=today, sync=True, stdout=io.StringIO())
    run = TrainingRun.objects.get(kind="recommendation", is_published=True)
    stored = dict(Suggestion.objects.filter(run=run, kind="reorder", product__sku="FOOD")
                  .values_list("customer__external_id", "expected_on"))
    assert stored == {"M5": today + timedelta(days=25), "M28": today + timedelta(days=2),
                      "M40": today - timedelta(days=10)}
    assert reorder_skus(Customer.objects.get(external_id="M5")) == []  # bought 5 days ago: not due
    assert reorder_skus(Customer.objects.get(external_id="M28")) == [("FOOD", today + timedelta(days=2))]
    assert reorder_skus(Customer.objects.get(external_id="M40")) == [("FOOD", today - timedelta(days=10))]


@pytest.fixture
def planted(db, rep):
    """Ada (rep's) has four reorder rows: expected in 25 days (rank 1), overdue by 3 days
    (rank 2), due in 5 days (rank 3), and one without a date from an older run's rows (rank 4)."""
    today = timezone.localdate()
    ada = Customer.objects.create(external_id="C-ADA", name="Ada", owner=rep)
    run = make_run(TrainingRun.Kind.RECOMMENDATION)
    for rank, (sku, days) in enumerate((("LATER", 25), ("LATE", -3), ("SOON", 5), ("OLD", None)), start=1):
        product = Product.objects.create(sku=sku, name=f"Product {sku}")
        Suggestion.objects.create(run=run, customer=ada, kind="reorder", rank=rank, product=product,
                                  score=1.0 - rank / 10, reason=f"reason {sku}",
                                  expected_on=None if days is None else today + timedelta(days=days))
    Suggestion.objects.create(run=run, customer=ada, kind="recommendation", rank=1,
                              product=Product.objects.get(sku="LATER"), score=0.5, reason="cross")
    return ada


def test_reorder_list_shows_overdue_first_then_by_date(planted, settings):
    settings.ML_REORDER_DUE_DAYS = 14
    assert [sku for sku, _ in reorder_skus(planted)] == ["OLD", "LATE", "SOON"]
    assert [s["sku"] for s in ml_insights.insights_by_customer([planted])[planted.pk]["reorder"]] == [
        "OLD", "LATE", "SOON"]


def test_reorder_due_days_setting_widens_the_list(planted, settings):
    settings.ML_REORDER_DUE_DAYS = 30
    assert [sku for sku, _ in reorder_skus(planted)] == ["OLD", "LATE", "SOON", "LATER"]


def test_customer_page_says_when_a_reorder_is_expected(planted, client, rep):
    client.force_login(rep)
    html = client.get(reverse("customer_detail", args=[planted.pk])).content.decode()
    today = timezone.localdate()
    late, soon = today - timedelta(days=3), today + timedelta(days=5)
    assert f"Expected around {late.day} {late:%b} (overdue by 3 days)" in html
    assert f"Expected around {soon.day} {soon:%b} (due in 5 days)" in html
    assert "reason LATER" not in html.split('id="reorder"')[1]


def test_home_worklist_lists_due_reorders_likeliest_first(planted, client, rep):
    # scores: LATE 0.8 (overdue by 3 days), SOON 0.7 (due in 5), OLD (no date) raised from 0.6 to
    # 0.95: the likeliest comes first whatever its date; LATER (in 25 days) is not due
    Suggestion.objects.filter(customer=planted, product__sku="OLD").update(score=0.95)
    client.force_login(rep)
    html = client.get(reverse("home")).content.decode()
    section = html.split('id="wl-reorder"')[1].split("</section>")[0]
    assert section.index("Product OLD") < section.index("Product LATE") < section.index("Product SOON")
    assert "Product LATER" not in section


@pytest.mark.parametrize("path", ["api-customer-detail", "api-customer-list"])
def test_api_reorder_items_carry_the_expected_date(planted, client, rep, path):
    url = reverse(path, args=[planted.pk]) if path.endswith("detail") else reverse(path)
    client.force_login(rep)
    body = client.get(url).json()
    customer = body if path.endswith("detail") else body["results"][0]
    today = timezone.localdate()
    assert [(s["sku"], s["expected_on"]) for s in customer["insights"]["reorder"]] == [
        ("OLD", None), ("LATE", (today - timedelta(days=3)).isoformat()),
        ("SOON", (today + timedelta(days=5)).isoformat())]
    assert customer["insights"]["recommendations"][0]["expected_on"] is None


def test_due_words():
    today = timezone.localdate().replace(month=12, day=9)
    expected = today.replace(day=12)
    assert ml_insights.due_words(expected, today) == "expected around 12 Dec (due in 3 days)"
    assert ml_insights.due_words(expected, today.replace(day=15)) == "expected around 12 Dec (overdue by 3 days)"
    assert ml_insights.due_words(expected, expected) == "expected around 12 Dec (due today)"
    assert ml_insights.due_words(None, today) == ""


def test_reorder_overdue_longer_than_the_lapse_is_left_out(planted, settings):
    # the customer let a product go: expected 120 days ago and never bought, a win-back, not a reorder
    settings.ML_REORDER_DUE_DAYS, settings.ML_REORDER_LAPSED_DAYS = 14, 90
    run = Suggestion.objects.filter(customer=planted).first().run
    gone = Product.objects.create(sku="GONE", name="Product GONE")
    Suggestion.objects.create(run=run, customer=planted, kind="reorder", rank=5, product=gone, score=0.9,
                              reason="reason GONE", expected_on=timezone.localdate() - timedelta(days=120))
    assert [sku for sku, _ in reorder_skus(planted)] == ["OLD", "LATE", "SOON"]
    assert [s["sku"] for s in ml_insights.insights_by_customer([planted])[planted.pk]["reorder"]] == [
        "OLD", "LATE", "SOON"]
    settings.ML_REORDER_LAPSED_DAYS = 0  # 0 keeps every overdue one
    assert [sku for sku, _ in reorder_skus(planted)] == ["OLD", "GONE", "LATE", "SOON"]
