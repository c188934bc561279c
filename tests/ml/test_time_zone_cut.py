"""The as-of day is the company's local day, in every kind, through the real read path.

With ``TIME_ZONE`` set to New York, a purchase at 23:30 local time on the as-of day (04:30 UTC
the next day) must be read by ``ml/data.py`` and used by the pipeline, and one at 00:30 the next
local day (05:30 UTC) must be neither: the database read (``ml.data.cutoff``) and the pipelines'
cut (``ml.pipelines.schema``) end the day at the same instant. Each kind runs through
``ml.services.run_now`` on rows stored in the database; the frames come from tests/shapes.py.
"""
from __future__ import annotations

from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from ml.pipelines import schema
from ml.pipelines.segmentation import PROSPECTS
from tests import shapes

ZONE = "America/New_York"
AS_OF = shapes.AS_OF  # 2024-12-30, the last day of the planted history
LATE = AS_OF + pd.Timedelta(hours=23, minutes=30)        # on the as-of day, local time
NEXT_DAY = AS_OF + pd.Timedelta(days=1, minutes=30)      # 00:30 the next local day
LATE_ID, NEXT_ID = 9001, 9002
PRODUCT = 1


def edge_rows() -> pd.DataFrame:
    """One purchase each for two new customers: at 23:30 on the as-of day and 00:30 the day after."""
    return pd.DataFrame({
        "customer_id": [LATE_ID, NEXT_ID], "product_id": [PRODUCT, PRODUCT], "type": "purchase",
        "occurred_at": [LATE, NEXT_DAY], "quantity": [1, 1], "amount": [25.0, 25.0],
        "order_ref": ["late", "next"]})


def store_local(shape: shapes.Shape, zone: str) -> dict:
    """The planted shop plus the two edge customers as database rows, their naive times read as
    wall-clock times in ``zone``; returns frame customer_id -> database id."""
    from crm.models import Customer, Interaction, Product

    tz = ZoneInfo(zone)
    interactions = pd.concat([shape.interactions, edge_rows()], ignore_index=True)
    ids = list(shape.customers["customer_id"]) + [LATE_ID, NEXT_ID]
    made = Customer.objects.bulk_create([Customer(external_id=f"C{cid}") for cid in ids])
    customer_pk = {cid: c.pk for cid, c in zip(ids, made)}
    made = Product.objects.bulk_create([
        Product(sku=r.sku, name=r.name, category=r.category, description=r.description, tags=r.tags,
                price=Decimal(str(r.price))) for r in shape.products.itertuples()])
    product_pk = dict(zip(shape.products["product_id"], (p.pk for p in made)))
    Interaction.objects.bulk_create([
        Interaction(external_id=f"I{i}", customer_id=customer_pk[r.customer_id], type=r.type,
                    occurred_at=r.occurred_at.to_pydatetime().replace(tzinfo=tz),
                    product_id=product_pk.get(r.product_id), quantity=r.quantity,
                    amount=Decimal(str(round(r.amount, 2))), order_ref=r.order_ref)
        for i, r in enumerate(interactions.itertuples())], batch_size=2000)
    return customer_pk


@pytest.fixture
def new_york_shop(db, settings):
    settings.TIME_ZONE = ZONE
    return store_local(shapes.business(n_customers=150), ZONE)


def test_schema_interaction_types_are_the_stored_ones():
    from crm.models import INTERACTION_TYPES

    assert schema.INTERACTION_TYPES == tuple(INTERACTION_TYPES)


def test_schema_cut_keeps_23_30_on_the_as_of_day_and_drops_00_30_the_next_day():
    frame = edge_rows()

    kept = schema.cut(frame, AS_OF.date())

    assert kept["customer_id"].tolist() == [LATE_ID]
    assert schema.visible(frame, AS_OF).tolist() == [True, False]


def test_interactions_frame_in_new_york_reads_the_local_as_of_day_as_local_times(new_york_shop):
    from ml import data

    frame = data.interactions_frame(AS_OF.date())

    late = frame[frame["customer_id"] == new_york_shop[LATE_ID]]
    assert late["occurred_at"].tolist() == [LATE]  # local wall-clock time, not 04:30 UTC
    assert not (frame["customer_id"] == new_york_shop[NEXT_ID]).any()


def test_segmentation_in_new_york_uses_23_30_on_the_as_of_day_and_not_00_30_the_next_day(new_york_shop):
    from ml import services
    from ml.models import CustomerSegment

    run = services.run_now("segmentation", as_of=date(2024, 12, 30), horizon_days=30)

    assert run.status == "succeeded", run.error
    segment = dict(CustomerSegment.objects.filter(run=run).values_list("customer_id", "segment__name"))
    assert segment[new_york_shop[LATE_ID]] != PROSPECTS
    assert segment[new_york_shop[NEXT_ID]] == PROSPECTS


def test_forecast_in_new_york_uses_23_30_on_the_as_of_day_and_not_00_30_the_next_day(new_york_shop):
    from ml import services
    from ml.models import Forecast

    run = services.run_now("forecast", as_of=date(2024, 12, 30), horizon_days=30)

    assert run.status == "succeeded", run.error
    forecast = set(Forecast.objects.filter(run=run).values_list("customer_id", flat=True))
    assert new_york_shop[LATE_ID] in forecast
    assert new_york_shop[NEXT_ID] not in forecast


def test_recommendation_in_new_york_uses_23_30_on_the_as_of_day_and_not_00_30_the_next_day(new_york_shop):
    from crm.models import Product
    from ml import services
    from ml.models import Suggestion

    run = services.run_now("recommendation", as_of=date(2024, 12, 30), horizon_days=30)

    assert run.status == "succeeded", run.error
    bought = Product.objects.get(sku="SKU001").pk

    def cross_sell(customer):
        return list(Suggestion.objects.filter(run=run, customer_id=new_york_shop[customer],
                                              kind="recommendation").values_list("product_id", "basis"))

    late, next_day = cross_sell(LATE_ID), cross_sell(NEXT_ID)
    # The 23:30 purchase is history: personal suggestions, never the product already bought.
    assert late and {basis for _, basis in late} == {"personal"} and bought not in {p for p, _ in late}
    # The 00:30 purchase is not read: a customer without history gets the popular list.
    assert next_day and {basis for _, basis in next_day} == {"popular"}
