"""The insight tables carry no database constraint on customer, product and run (ml.models._run_row_ref):
deletes through the ORM still take the rows with them, and a run drops the rows of customers and
products deleted while it was writing, before it is published (ml.integrity)."""
import threading
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from crm.models import Customer, Product
from ml.integrity import REFERENCES
from ml.models import CustomerSegment, Forecast, Prospect, Segment, SimilarProduct, Suggestion, TrainingRun
from ml.publishing import finish_run
from tests.conftest import wait_for


def _world(status="succeeded"):
    ada = Customer.objects.create(external_id="C-ADA", name="Ada")
    bob = Customer.objects.create(external_id="C-BOB", name="Bob")
    widget = Product.objects.create(sku="W-1", name="Widget", price=Decimal("9.50"))
    gadget = Product.objects.create(sku="G-1", name="Gadget", price=Decimal("20.00"))
    now = timezone.now()
    runs = {kind: TrainingRun.objects.create(kind=kind, status=status, started_at=now)
            for kind in ("segmentation", "forecast", "recommendation")}
    segment = Segment.objects.create(run=runs["segmentation"], key=0, name="All", size=2)
    rec = runs["recommendation"]
    for c in (ada, bob):
        CustomerSegment.objects.create(run=runs["segmentation"], customer=c, segment=segment)
        Forecast.objects.create(run=runs["forecast"], customer=c, expected_purchases=1.0, churn_probability=0.2)
        for rank, p in enumerate((widget, gadget), start=1):
            Suggestion.objects.create(run=rec, customer=c, kind="recommendation", rank=rank, product=p, score=1.0,
                                      reason="r")
    for rank, c in enumerate((ada, bob), start=1):
        Prospect.objects.create(run=rec, product=widget, rank=rank, customer=c, score=1.0)
    SimilarProduct.objects.create(run=rec, product=widget, rank=1, similar=gadget, score=0.5)
    SimilarProduct.objects.create(run=rec, product=gadget, rank=1, similar=widget, score=0.5)
    return ada, bob, widget, gadget, runs


def _rows(column, value):
    """How many insight rows of every table reference the customer or product ``value`` in ``column``."""
    return sum(model.objects.filter(**{column: value}).count() for model, col, _ in REFERENCES if col == column)


def _raw_delete(model, pk):
    """A delete that bypasses the ORM's collector, as a delete whose cascade ran before a run's rows
    were committed leaves them: the rows stay, pointing at nothing (no constraint refuses it)."""
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {model._meta.db_table} WHERE id = %s", [pk])


@pytest.mark.django_db
def test_deleting_a_customer_through_the_orm_deletes_its_insight_rows():
    ada, bob, *_ = _world()
    assert CustomerSegment.objects.filter(customer=ada).count() == 1
    ada.delete()
    for model in (CustomerSegment, Forecast, Suggestion, Prospect):
        assert not model.objects.filter(customer_id=ada.pk).exists(), model
        assert model.objects.filter(customer=bob).exists(), model  # the others' rows stay


@pytest.mark.django_db
def test_deleting_a_product_through_the_orm_deletes_its_insight_rows_on_both_sides():
    _, _, widget, gadget, _ = _world()
    widget.delete()
    assert not Suggestion.objects.filter(product_id=widget.pk).exists()
    assert not Prospect.objects.filter(product_id=widget.pk).exists()
    assert not SimilarProduct.objects.filter(product_id=widget.pk).exists()
    assert not SimilarProduct.objects.filter(similar_id=widget.pk).exists()
    assert Suggestion.objects.filter(product=gadget).count() == 2


@pytest.mark.django_db
def test_deleting_a_run_deletes_its_rows():
    *_, runs = _world()
    rec = runs["recommendation"]
    rec.delete()
    assert not Suggestion.objects.filter(run_id=rec.pk).exists()
    assert not SimilarProduct.objects.filter(run_id=rec.pk).exists()
    assert Forecast.objects.filter(run=runs["forecast"]).count() == 2


@pytest.mark.django_db
def test_publishing_drops_the_rows_of_customers_and_products_deleted_while_the_run_wrote():
    ada, bob, widget, gadget, runs = _world(status="running")
    _raw_delete(Customer, ada.pk)
    _raw_delete(Product, widget.pk)
    assert _rows("customer_id", ada.pk) == 5  # 1 segment member, 1 forecast, 2 suggestions, 1 prospect
    for run in runs.values():
        with transaction.atomic():
            assert finish_run(run.pk, True, "", {}, {})
    assert _rows("customer_id", ada.pk) == 0
    assert _rows("product_id", widget.pk) == 0
    assert not SimilarProduct.objects.filter(similar_id=widget.pk).exists()
    # Bob's rows of the products that still exist are published whole.
    assert CustomerSegment.objects.filter(customer=bob).count() == 1
    assert Forecast.objects.filter(customer=bob).count() == 1
    assert list(Suggestion.objects.filter(customer=bob).values_list("product_id", flat=True)) == [gadget.pk]
    assert all(TrainingRun.objects.get(pk=r.pk).is_published for r in runs.values())


@pytest.mark.django_db
def test_a_run_not_published_keeps_its_rows_as_written():
    ada, _, _, _, runs = _world(status="running")
    _raw_delete(Customer, ada.pk)
    with transaction.atomic():
        assert finish_run(runs["forecast"].pk, False, "worse than the live run", {}, {})
    assert Forecast.objects.filter(run=runs["forecast"]).count() == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has one writer at a time: nothing in flight")
def test_publishing_waits_for_a_customer_delete_in_flight_and_drops_its_rows():
    """A delete not yet committed when the run publishes: without the lock the pass would not see it and
    the published run would keep a customer that is gone."""
    ada, bob, _, _, runs = _world(status="running")
    run = runs["forecast"]
    deleter = connections.create_connection("default")
    deleter.set_autocommit(False)
    with deleter.cursor() as cursor:
        cursor.execute("DELETE FROM crm_customer WHERE id = %s", [ada.pk])
    outcome = {}

    def publish():
        try:
            with transaction.atomic():
                outcome["finished"] = finish_run(run.pk, True, "", {}, {})
        finally:
            connection.close()

    thread = threading.Thread(target=publish)
    thread.start()
    try:
        with connection.cursor() as cursor:
            def publisher_waits_on_a_lock():
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                               "AND query LIKE 'LOCK TABLE%%'")
                return cursor.fetchone()[0] == 1
            wait_for(publisher_waits_on_a_lock, timeout=30, what="the publish to wait for the delete")
        assert "finished" not in outcome
    finally:
        deleter.commit()
        deleter.close()
        thread.join(timeout=30)
    assert outcome == {"finished": True}
    assert list(Forecast.objects.filter(run=run).values_list("customer_id", flat=True)) == [bob.pk]
    assert TrainingRun.objects.get(pk=run.pk).is_published
