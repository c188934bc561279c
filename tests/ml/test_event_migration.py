"""The data migration: each stored suggestion feedback becomes one event of its funnel."""
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE, AFTER = ("ml", "0009_suggestion_funnel_and_control"), ("ml", "0010_suggestion_events_from_feedback")


def _migrate(target):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])
    return executor.loader.project_state([target]).apps


@pytest.fixture
def back_to_the_latest(transactional_db):
    """Leave the schema as every later test expects it: migrated to the newest migration of
    every app (a test left at AFTER kept the foreign keys that ml 0011 drops)."""
    yield
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_event_migration_turns_each_feedback_into_an_event_at_its_time(back_to_the_latest, rep):
    from crm.models import Customer, Product

    customer = Customer.objects.create(external_id="C-1")
    product = Product.objects.create(sku="P-1", name="P")
    apps = _migrate(BEFORE)
    Feedback = apps.get_model("ml", "SuggestionFeedback")
    row = Feedback.objects.create(customer_id=customer.pk, product_id=product.pk, kind="reorder", status="accepted",
                                  user_id=rep.pk)
    when = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)
    Feedback.objects.filter(pk=row.pk).update(updated_at=when)

    apps = _migrate(AFTER)

    events = list(apps.get_model("ml", "SuggestionEvent").objects.values_list(
        "customer_id", "product_id", "kind", "event", "at", "user_id"))
    assert events == [(customer.pk, product.pk, "reorder", "accepted", when, rep.pk)]
