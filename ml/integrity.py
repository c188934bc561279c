"""The integrity of a run's insight rows, kept by the application (see ``ml.models._run_row_ref``).

The insight tables carry no database constraint on their customer and product, so that a run can
write millions of rows without a check per row. A customer or product deleted through the ORM
takes its insight rows with it; what that cannot reach is a row the run had not yet committed
when the delete ran. :func:`drop_orphans` removes those in one pass per reference, just before the
run is published.

On PostgreSQL the pass runs under a SHARE lock on the customer and product tables, taken first in
the publishing transaction: it waits for writes to those tables that are in flight (a delete that
has not committed yet) and holds new ones back until the run is published, so no delete can slip
between the pass and the publish. The lock is held for the pass and the publish only (seconds at a
million customers); reads are not blocked. SQLite has one writer at a time, so the pass alone is
enough.
"""
from __future__ import annotations

from django.db import connection

from crm.models import Customer, Product
from ml.models import CustomerSegment, Forecast, Prospect, SimilarProduct, Suggestion

# (model, column, referenced model): every customer or product reference of the insight tables.
REFERENCES = (
    (CustomerSegment, "customer_id", Customer),
    (Forecast, "customer_id", Customer),
    (Suggestion, "customer_id", Customer),
    (Suggestion, "product_id", Product),
    (SimilarProduct, "product_id", Product),
    (SimilarProduct, "similar_id", Product),
    (Prospect, "customer_id", Customer),
    (Prospect, "product_id", Product),
)


def lock_references() -> None:
    """Hold back writes to customers and products until the transaction ends (PostgreSQL)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {Customer._meta.db_table}, {Product._meta.db_table} IN SHARE MODE")


def drop_orphans(run_id: int) -> dict:
    """Delete the run's rows whose customer or product no longer exists: {"table.column": rows}.

    Call inside the publishing transaction, after :func:`lock_references`."""
    dropped = {}
    with connection.cursor() as cursor:
        for model, column, target in REFERENCES:
            table, other = model._meta.db_table, target._meta.db_table
            # Table and column names come from the models above, never from input.
            cursor.execute(f"DELETE FROM {table} WHERE run_id = %s AND NOT EXISTS "  # nosec B608
                           f"(SELECT 1 FROM {other} WHERE {other}.id = {table}.{column})", [run_id])
            if cursor.rowcount:
                dropped[f"{table}.{column}"] = cursor.rowcount
    return dropped
