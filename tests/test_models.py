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
