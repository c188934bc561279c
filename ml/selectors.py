"""Reads of published insights (never recomputed on a request)."""
from django.db import connection

from crm.models import Customer, Product
from ml.models import CustomerSegment, Forecast, Segment, Suggestion, TrainingRun

INSIGHT_COLUMNS = ("external_id", "segment", "expected_purchases", "expected_spend", "churn_probability", "clv",
                   "expected_refund_rate", "recommendations", "reorder", "as_of", "horizon_days")


def published_runs() -> dict:
    """{kind: run} of the live run of each kind."""
    return {run.kind: run for run in TrainingRun.objects.filter(is_published=True)}


def insight_rows(chunk_size: int = 5000):
    """One tuple per customer with the export columns (contract section 3), in customer id order."""
    runs = published_runs()
    seg_run = runs.get(TrainingRun.Kind.SEGMENTATION)
    fc_run = runs.get(TrainingRun.Kind.FORECAST)
    rec_run = runs.get(TrainingRun.Kind.RECOMMENDATION)
    ref_run = fc_run or seg_run or rec_run
    as_of = ref_run.as_of.isoformat() if ref_run and ref_run.as_of else ""
    horizon = ref_run.horizon_days if ref_run else ""
    customers = Customer._meta.db_table
    sql = (f"SELECT c.id, c.external_id, s.name, f.expected_purchases, f.expected_spend, f.churn_probability, f.clv, "
           f"f.expected_refund_rate FROM {customers} c "
           f"LEFT JOIN {CustomerSegment._meta.db_table} cs ON cs.customer_id = c.id AND cs.run_id = %s "
           f"LEFT JOIN {Segment._meta.db_table} s ON s.id = cs.segment_id "
           f"LEFT JOIN {Forecast._meta.db_table} f ON f.customer_id = c.id AND f.run_id = %s "
           f"WHERE c.id > %s ORDER BY c.id LIMIT %s")
    last = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(sql, [seg_run.pk if seg_run else -1, fc_run.pk if fc_run else -1, last, chunk_size])
            rows = cursor.fetchall()
        if not rows:
            return
        lists = _suggestion_lists(rec_run, rows[0][0], rows[-1][0]) if rec_run else {}
        for row in rows:
            cid = row[0]
            has_forecast = row[3] is not None
            yield (row[1], row[2] or "", *row[3:8],
                   ";".join(lists.get((cid, Suggestion.Kind.RECOMMENDATION), ())),
                   ";".join(lists.get((cid, Suggestion.Kind.REORDER), ())),
                   as_of if (has_forecast or row[2]) else "", horizon if (has_forecast or row[2]) else "")
        last = rows[-1][0]


def _suggestion_lists(run, first_id: int, last_id: int) -> dict:
    rows = (Suggestion.objects.filter(run=run, customer_id__gte=first_id, customer_id__lte=last_id)
            .order_by("customer_id", "kind", "rank").values_list("customer_id", "kind", "product__sku"))
    out: dict = {}
    for cid, kind, sku in rows:
        out.setdefault((cid, kind), []).append(sku)
    return out


def product_count() -> int:
    return Product.objects.count()
