"""ml.data reads a training frame the same way whatever path it takes on PostgreSQL: through ADBC
(outside a transaction, as a worker reads) or by text COPY (inside one, where ADBC's own connection
could not see the rows)."""
from datetime import date

import pandas as pd
import pytest
from django.core.management import call_command
from django.db import connection, transaction

from ml import data

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="the two read paths are PostgreSQL's")


@pytest.mark.django_db(transaction=True)
def test_adbc_and_copy_give_the_same_frames():
    call_command("seed_demo", customers=80, seed=5, end="2025-06-30")
    assert data._adbc_conninfo() is not None  # installed (requirements.txt) and outside a transaction
    interactions = data.interactions_frame(date(2025, 5, 31))
    customers = data.customers_frame()
    ranged = data.interactions_frame(date(2025, 5, 31), customer_range=(10, 40))
    with transaction.atomic():
        assert data._adbc_conninfo() is None
        pd.testing.assert_frame_equal(interactions, data.interactions_frame(date(2025, 5, 31)))
        pd.testing.assert_frame_equal(customers, data.customers_frame())
        pd.testing.assert_frame_equal(ranged, data.interactions_frame(date(2025, 5, 31), customer_range=(10, 40)))
    assert len(interactions) > 500 and set(ranged["customer_id"]) <= set(range(10, 41))
    assert interactions["amount"].sum() > 0 and (interactions["order_ref"] != "").all()


@pytest.mark.django_db(transaction=True)
def test_an_empty_read_is_a_typed_empty_frame():
    frame = data.interactions_frame(date(2025, 5, 31))
    assert len(frame) == 0
    assert frame["customer_id"].dtype == "int64" and frame["amount"].dtype == "float64"
