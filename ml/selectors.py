"""Reads of published insights: never recomputed on a request, always from the live runs."""
from __future__ import annotations

from django.db import connection
from django.db.models import F

from crm.access import visible_customers
from crm.models import Customer, Product
from ml.insights import published_run_ids, published_runs, reorder_due, shown
from ml.models import (
    CustomerSegment,
    Forecast,
    Prospect,
    Segment,
    SimilarProduct,
    Suggestion,
    SuggestionFeedback,
    TrainingRun,
)
from ml.pipelines.segmentation.features import is_filler_category

INSIGHT_COLUMNS = ("external_id", "segment", "expected_purchases", "expected_spend", "churn_probability", "clv",
                   "expected_refund_rate", "recommendations", "reorder", "as_of", "horizon_days")


def segments(run: TrainingRun | None = None):
    run = run or TrainingRun.objects.filter(kind=TrainingRun.Kind.SEGMENTATION, is_published=True).first()
    if run is None:
        return Segment.objects.none()
    return Segment.objects.filter(run=run).order_by("-size", "key")


def top_category(figures: dict) -> dict | None:
    """A segment's top category as its page shows it, {"name", "share"}: None when its figures name
    none or a filler ("(other)", "Unknown"). Runs published before the naming skipped fillers stored
    them; a filler is nothing to show, and the next real category is not in the stored figures."""
    name = (figures or {}).get("top_category")
    if is_filler_category(name):
        return None
    return {"name": name, "share": (figures or {}).get("top_category_share")}


def similar_products(product: Product, limit: int = 10):
    run_id = published_run_ids().get(TrainingRun.Kind.RECOMMENDATION)
    return (SimilarProduct.objects.filter(run_id=run_id, product=product).select_related("similar")
            .order_by("rank")[:limit])


def prospects(product: Product, limit: int = 20):
    run_id = published_run_ids().get(TrainingRun.Kind.RECOMMENDATION)
    return (Prospect.objects.filter(shown(), run_id=run_id, product=product)
            .select_related("customer", "customer__owner").order_by("rank")[:limit])


def insight_rows(chunk_size: int = 5000, hide_control: bool = False):
    """One tuple per customer with the export columns (contract section 3), in customer id order.

    The lists are the model's output for every customer, the control group's included (the
    contract's columns mean "most likely to be bought"); ``hide_control`` leaves the control
    group's lists empty, for an export that feeds a campaign and must not reach them."""
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
        lists = _suggestion_lists(rec_run, rows[0][0], rows[-1][0], hide_control) if rec_run else {}
        for row in rows:
            cid = row[0]
            spoke = row[3] is not None or row[2] is not None
            yield (row[1], row[2] or "", *row[3:8],
                   ";".join(lists.get((cid, Suggestion.Kind.RECOMMENDATION), ())),
                   ";".join(lists.get((cid, Suggestion.Kind.REORDER), ())),
                   as_of if spoke else "", horizon if spoke else "")
        last = rows[-1][0]


def _suggestion_lists(run, first_id: int, last_id: int, hide_control: bool) -> dict:
    rows = Suggestion.objects.filter(run=run, customer_id__gte=first_id, customer_id__lte=last_id)
    if hide_control:
        rows = rows.filter(shown())
    rows = rows.order_by("customer_id", "kind", "rank").values_list("customer_id", "kind", "product__sku")
    out: dict = {}
    for cid, kind, sku in rows:
        out.setdefault((cid, kind), []).append(sku)
    return out


# --- Pages for sales staff ---------------------------------------------------------------------

# Suggestions looked at to fill the cross-sell worklist with different products: the best
# scores of a few hundred rows, a single indexed query whatever the base size.
WORKLIST_POOL = 400


def top_suggestions(customers, kind: str, limit: int = 5) -> list:
    """The highest-scoring published suggestions of ``kind`` for the given customers queryset.

    Cross-sell: one row per customer and per product (the best-scoring first), so the
    worklist shows different products to pitch unless the best suggestions really are all
    the same product (then the rest of the list repeats products, best score first)."""
    run_id = published_run_ids().get(TrainingRun.Kind.RECOMMENDATION)
    if run_id is None:
        return []
    rows = (Suggestion.objects.filter(shown(), run_id=run_id, kind=kind, customer__in=customers.values("pk"),
                                      customer__no_profiling=False)
            .select_related("customer", "product").order_by("-score", "customer_id", "rank"))
    if kind != Suggestion.Kind.RECOMMENDATION:
        # Reorders that are due, the likeliest to be bought in the window first (the model's
        # score): the most overdue first put the nearly lapsed at the top.
        due = rows.filter(reorder_due()).order_by("-score", F("expected_on").asc(nulls_last=True), "customer_id")
        return list(due[:limit])
    pool = list(rows[:WORKLIST_POOL])
    picked, products, people = [], set(), set()
    for s in pool:
        if s.product_id not in products and s.customer_id not in people:
            picked.append(s)
            products.add(s.product_id)
            people.add(s.customer_id)
            if len(picked) == limit:
                return picked
    rest = [s for s in pool if s not in picked and s.customer_id not in people]
    return picked + rest[:limit - len(picked)]


def feedback_for_customer(customer) -> dict:
    """{(product_id, kind): status} of the feedback given on a customer's suggestions."""
    return {(p, k): s for p, k, s in
            SuggestionFeedback.objects.filter(customer=customer).values_list("product_id", "kind", "status")}


def visible_prospects(user, product: Product, limit: int = 20):
    """prospects() restricted to the customers the user may see."""
    run_id = published_run_ids().get(TrainingRun.Kind.RECOMMENDATION)
    return (Prospect.objects.filter(shown(), run_id=run_id, product=product, customer__in=visible_customers(user))
            .select_related("customer", "customer__owner").order_by("rank")[:limit])


def segments_of_run(run_id: int | None = None):
    """The segments of a segmentation run (default: the published one), largest first."""
    if run_id is None:
        return segments()
    return Segment.objects.filter(run_id=run_id, run__kind=TrainingRun.Kind.SEGMENTATION).order_by("-size", "key")
