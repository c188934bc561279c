"""API fixtures: a client per role (real session or token auth) and a small book of business
with published insights planted directly, so expected values are known."""
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from crm.models import Customer, Interaction, Product
from ml.models import CustomerSegment, Forecast, Prospect, Segment, SimilarProduct, Suggestion, TrainingRun

AS_OF = date(2025, 6, 30)


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    cache.clear()  # throttling counts live in the default cache
    yield
    cache.clear()


@pytest.fixture
def client_for():
    def make(user=None):
        client = APIClient()
        if user is not None:
            client.force_login(user)
        return client
    return make


@pytest.fixture
def rep_client(client_for, rep):
    return client_for(rep)


@pytest.fixture
def manager_client(client_for, manager):
    return client_for(manager)


@pytest.fixture
def admin_client(client_for, admin_user):
    return client_for(admin_user)


@pytest.fixture
def book(db, rep, other_rep):
    """Three customers (rep's, other rep's, unassigned), two products, a few interactions, and
    published segmentation, forecast and recommendation runs with known values."""
    mine = Customer.objects.create(external_id="C-MINE", name="Mine", owner=rep)
    theirs = Customer.objects.create(external_id="C-THEIRS", name="Theirs", owner=other_rep)
    free = Customer.objects.create(external_id="C-FREE", name="Free", no_profiling=False)
    food = Product.objects.create(sku="FOOD-1", name="Dog food", category="Food", price=Decimal("20.00"))
    toy = Product.objects.create(sku="TOY-1", name="Ball", category="Toys", price=Decimal("5.00"))
    at = datetime(2025, 6, 1, 12, tzinfo=UTC)
    for customer in (mine, theirs, free):
        Interaction.objects.create(external_id=f"I-{customer.external_id}", customer=customer, type="purchase",
                                   occurred_at=at, product=food, quantity=1, amount=Decimal("20.00"))
    now = timezone.now()
    runs = {kind: TrainingRun.objects.create(kind=kind, status="succeeded", is_published=True, published_at=now,
                                             finished_at=now, as_of=AS_OF, horizon_days=90)
            for kind in ("segmentation", "forecast", "recommendation")}
    loyal = Segment.objects.create(run=runs["segmentation"], key=0, name="Loyal", profile="Loyal: buy often.",
                                   size=2, figures={"size": 2})
    lapsing = Segment.objects.create(run=runs["segmentation"], key=1, name="Lapsing", profile="Lapsing.", size=1)
    for customer, segment in ((mine, loyal), (theirs, loyal), (free, lapsing)):
        CustomerSegment.objects.create(run=runs["segmentation"], customer=customer, segment=segment)
        Forecast.objects.create(run=runs["forecast"], customer=customer, expected_purchases=2.5, expected_spend=50.0,
                                churn_probability=0.2, clv=200.0, expected_refund_rate=0.01, basis="ensemble",
                                factors=["bought recently"])
        Suggestion.objects.create(run=runs["recommendation"], customer=customer, kind="recommendation", rank=1,
                                  product=toy, score=0.7, reason="bought with dog food")
        Suggestion.objects.create(run=runs["recommendation"], customer=customer, kind="reorder", rank=1,
                                  product=food, score=0.9, reason="due again")
    SimilarProduct.objects.create(run=runs["recommendation"], product=food, rank=1, similar=toy, score=0.5,
                                  reason="bought together")
    for rank, customer in enumerate((theirs, mine, free), start=1):
        Prospect.objects.create(run=runs["recommendation"], product=toy, rank=rank, customer=customer, score=0.5,
                                reason="likes dogs")
    return {"mine": mine, "theirs": theirs, "free": free, "food": food, "toy": toy, "runs": runs,
            "loyal": loyal, "lapsing": lapsing}


@pytest.fixture
def many_customers(book, rep):
    """60 more of the rep's customers, each with a segment, forecast and suggestions (for query counts)."""
    runs = book["runs"]
    customers = Customer.objects.bulk_create([Customer(external_id=f"C-{i:03}", name=f"Bulk {i:03}", owner=rep)
                                              for i in range(60)])
    CustomerSegment.objects.bulk_create([CustomerSegment(run=runs["segmentation"], customer=c, segment=book["loyal"])
                                         for c in customers])
    Forecast.objects.bulk_create([Forecast(run=runs["forecast"], customer=c, expected_purchases=1, expected_spend=9,
                                           churn_probability=0.5, clv=30, expected_refund_rate=0) for c in customers])
    Suggestion.objects.bulk_create([Suggestion(run=runs["recommendation"], customer=c, kind="recommendation", rank=1,
                                               product=book["toy"], score=0.3, reason="r") for c in customers])
    Interaction.objects.bulk_create([Interaction(external_id=f"I-bulk-{c.external_id}", customer=c, type="call",
                                                 occurred_at=datetime(2025, 5, 1, tzinfo=UTC)) for c in customers])
    return customers


def error_of(response):
    """The error object of an error response, after checking the one error format."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "fields"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]
