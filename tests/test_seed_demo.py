"""seed_demo makes a business whose latent kinds are visible in the stored data."""
import pandas as pd
import pytest
from django.core.management import call_command
from django.db.models import Count, Max, Q, Sum

from crm.models import Customer, ImportRun, Interaction, Product


@pytest.fixture
def seeded(db):
    call_command("seed_demo", customers=600, seed=3, end="2025-06-30")


def _per_kind():
    rows = (Customer.objects.values("id", "attributes__demo_kind")
            .annotate(orders=Count("interactions__order_ref", filter=Q(interactions__type="purchase"), distinct=True),
                      spend=Sum("interactions__amount", filter=Q(interactions__type="purchase")),
                      refunded=Sum("interactions__amount", filter=Q(interactions__type="refund")),
                      last=Max("interactions__occurred_at", filter=Q(interactions__type="purchase"))))
    frame = pd.DataFrame.from_records(list(rows)).rename(columns={"attributes__demo_kind": "kind"})
    frame[["spend", "refunded"]] = frame[["spend", "refunded"]].astype(float).fillna(0)
    return frame


def test_seed_demo_imports_catalogue_customers_and_interactions(seeded):
    assert Customer.objects.count() == 600
    assert Product.objects.count() >= 50
    assert Interaction.objects.count() > 600 * 8
    assert ImportRun.objects.get().status == "succeeded"
    assert set(Interaction.objects.values_list("type", flat=True).distinct()) == {
        "purchase", "refund", "view", "email", "call", "meeting", "support", "note"}
    assert Customer.objects.filter(owner__username="alice").exists()


def test_seed_demo_refund_prone_customers_refund_more(seeded):
    frame = _per_kind()
    frame["share"] = frame["refunded"] / frame["spend"].where(frame["spend"] > 0)
    share = frame.groupby("kind")["share"].mean()
    others = share.drop("refund_prone").max()
    assert share["refund_prone"] > 3 * others


def test_seed_demo_loyal_customers_buy_more_often_than_one_off(seeded):
    orders = _per_kind().groupby("kind")["orders"].median()
    assert orders["one_off"] <= 1 and orders["loyal"] >= 8


def test_seed_demo_is_deterministic_for_a_seed(db):
    call_command("seed_demo", customers=50, seed=9, end="2025-06-30")
    first = sorted(Interaction.objects.values_list("external_id", "amount"))
    Interaction.objects.all().delete()
    call_command("seed_demo", customers=50, seed=9, end="2025-06-30")
    assert sorted(Interaction.objects.values_list("external_id", "amount")) == first
