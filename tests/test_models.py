"""The database itself rejects data that breaks the contract's rules."""
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from crm.models import Customer, Interaction, Product


@pytest.fixture
def customer(db):
    return Customer.objects.create(external_id="C1", name="Ada")


@pytest.fixture
def product(db):
    return Product.objects.create(sku="P1", name="Beans", price=Decimal("9.99"))


def _interaction(customer, **fields):
    defaults = {"external_id": "I1", "customer": customer, "type": "purchase",
                "occurred_at": datetime(2024, 1, 1, tzinfo=UTC)}
    return Interaction.objects.create(**{**defaults, **fields})


@pytest.mark.parametrize("fields", [
    {"type": "gift"},
    {"quantity": -1},
    {"amount": Decimal("-0.01")},
    {"external_id": ""},
])
def test_interaction_constraints_reject_bad_rows(customer, fields):
    with pytest.raises(IntegrityError), transaction.atomic():
        _interaction(customer, **fields)


def test_interaction_external_id_is_unique(customer):
    _interaction(customer)
    with pytest.raises(IntegrityError), transaction.atomic():
        _interaction(customer)


def test_customer_external_id_unique_and_not_empty(customer):
    with pytest.raises(IntegrityError), transaction.atomic():
        Customer.objects.create(external_id="C1")
    with pytest.raises(IntegrityError), transaction.atomic():
        Customer.objects.create(external_id="")


def test_product_sku_unique_and_price_non_negative(product):
    with pytest.raises(IntegrityError), transaction.atomic():
        Product.objects.create(sku="P1", name="Again")
    with pytest.raises(IntegrityError), transaction.atomic():
        Product.objects.create(sku="P2", name="Cheap", price=Decimal("-1"))


def test_product_in_use_cannot_be_deleted(customer, product):
    _interaction(customer, product=product)
    with pytest.raises(Exception, match="protected|FOREIGN KEY|violates"), transaction.atomic():
        product.delete()


def test_roles_exist_as_groups(db):
    from django.contrib.auth.models import Group

    assert set(Group.objects.values_list("name", flat=True)) >= {"sales rep", "manager", "admin"}
    assert Group.objects.get(name="sales rep").permissions.filter(codename="add_interaction").exists()


# --- forecast targets that may be absent (issue 12) -------------------------------------------

def _forecast(customer, **fields):
    from ml.models import Forecast, TrainingRun

    run = TrainingRun.objects.create(kind="forecast", status="succeeded")
    defaults = {"run": run, "customer": customer, "expected_purchases": 2.0, "expected_spend": 50.0,
                "churn_probability": 0.5, "clv": 200.0, "expected_refund_rate": 0.1}
    return Forecast.objects.create(**{**defaults, **fields})


def test_forecast_targets_not_forecast_are_stored_as_null(customer):
    from ml.models import Forecast

    # given a run that could not forecast spend, CLV and refund rate (purchases without amounts)
    forecast = _forecast(customer, expected_spend=None, clv=None, expected_refund_rate=None)

    # then the row holds NULLs, value at risk (churn x CLV) is NULL too, and the model's checks accept it
    stored = Forecast.objects.get(pk=forecast.pk)
    assert (stored.expected_spend, stored.clv, stored.expected_refund_rate, stored.value_at_risk) == (
        None, None, None, None)
    stored.full_clean(exclude=["run", "customer"])


def test_forecast_value_at_risk_is_churn_times_clv(customer):
    from ml.models import Forecast

    forecast = _forecast(customer, churn_probability=0.25, clv=400.0)
    assert Forecast.objects.get(pk=forecast.pk).value_at_risk == pytest.approx(100.0)


@pytest.mark.parametrize("fields", [{"expected_refund_rate": 1.5}, {"expected_refund_rate": -0.1},
                                    {"churn_probability": 1.1}])
def test_forecast_constraints_still_reject_bad_values(customer, fields):
    with pytest.raises(IntegrityError), transaction.atomic():
        _forecast(customer, **fields)
