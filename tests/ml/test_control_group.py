"""The control group (ml.control): chosen by a stable hash, kept across retrains, new customers
placed too, and a change of ML_CONTROL_SHARE moves only the customers at the edge."""
from __future__ import annotations

from datetime import UTC
from decimal import Decimal

import pytest

from tests import shapes


def _store(shape: shapes.Shape) -> dict:
    """The planted shop as database rows; returns frame customer_id -> database id."""
    from crm.models import Customer, Interaction, Product

    made = Customer.objects.bulk_create([Customer(external_id=f"C{cid}") for cid in shape.customers["customer_id"]])
    customer_pk = dict(zip(shape.customers["customer_id"], (c.pk for c in made)))
    made = Product.objects.bulk_create([
        Product(sku=r.sku, name=r.name, category=r.category, description=r.description, tags=r.tags,
                price=Decimal(str(r.price))) for r in shape.products.itertuples()])
    product_pk = dict(zip(shape.products["product_id"], (p.pk for p in made)))
    Interaction.objects.bulk_create([
        Interaction(external_id=f"I{i}", customer_id=customer_pk[r.customer_id], type=r.type,
                    occurred_at=r.occurred_at.to_pydatetime().replace(tzinfo=UTC),
                    product_id=product_pk.get(r.product_id), quantity=r.quantity,
                    amount=Decimal(str(round(r.amount, 2))), order_ref=r.order_ref)
        for i, r in enumerate(shape.interactions.itertuples())], batch_size=2000)
    return customer_pk


def _control(run) -> set:
    from ml.models import Suggestion

    return set(Suggestion.objects.filter(run=run, control=True).values_list("customer_id", flat=True))


@pytest.fixture
def shop(db, settings):
    settings.ML_CONTROL_SHARE = 0.3
    return _store(shapes.business(n_customers=120))


def test_control_group_is_the_same_across_two_retrains_and_new_customers_get_a_place(shop):
    from crm.models import Customer, Interaction, Product
    from ml import control, services
    from ml.models import Suggestion

    first = services.run_now("recommendation", as_of=shapes.AS_OF.date())
    assert first.status == "succeeded", first.error
    # a new customer arrives between the retrains
    newcomer = Customer.objects.create(external_id="C-NEW")
    Interaction.objects.create(external_id="I-NEW", customer=newcomer, type="purchase", product=Product.objects.first(),
                               amount=Decimal("10"), occurred_at=shapes.AS_OF.to_pydatetime().replace(tzinfo=UTC))
    second = services.run_now("recommendation", as_of=shapes.AS_OF.date())
    assert second.status == "succeeded", second.error

    in_first, in_second = _control(first), _control(second)
    # the same customers, about the share of them (120 customers at 0.3: 36 expected)
    assert in_first and in_second - {newcomer.pk} == in_first
    assert 20 <= len(in_first) <= 52
    # the newcomer was scored and placed by the same rule as everyone else
    assert Suggestion.objects.filter(run=second, customer=newcomer).exists()
    assert (newcomer.pk in in_second) == (newcomer.pk in control.control_ids([newcomer.pk]))
    # every control customer's suggestions were written, all flagged; the others' none
    flags = set(Suggestion.objects.filter(run=second, customer_id__in=in_second).values_list("control", flat=True))
    assert flags == {True}
    assert second.metrics["counts"]["control_customers"] == len(in_second)


def test_control_group_share_change_moves_only_the_customers_at_the_edge(db):
    from ml import control

    ids = range(1, 5001)
    at_10, at_15 = control.control_ids(ids, share=0.10), control.control_ids(ids, share=0.15)

    assert at_10 < at_15  # raising the share adds customers, removes none
    assert 400 <= len(at_10) <= 600 and 650 <= len(at_15) <= 850
    assert control.control_ids(ids, share=0.10) == at_10  # stable: the salt is stored, not drawn again
    assert control.control_ids(ids, share=0) == set()


def test_control_group_depends_on_the_installation_salt(db):
    from ml import control
    from ml.models import ControlSalt

    ids = range(1, 2001)
    before = control.control_ids(ids, share=0.1)
    ControlSalt.objects.update(salt="another installation")

    assert control.control_ids(ids, share=0.1) != before
