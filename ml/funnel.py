"""What became of the suggestions: the funnel of the salespeople's marks (offered -> accepted ->
bought) and the measured uplift (shown vs control customers), for the Models page.

"Bought" is computed here from the interactions each time, not stored: purchases arrive late
(imports backfill past days, refunds and corrections change them), and a stored flag would be
wrong until someone recomputed it. Both reads are bounded by their window: the marks of the
period and the purchases after its start, or the published run's suggestions and the purchases
of its window.
"""
from __future__ import annotations

from datetime import datetime, time, timedelta

from django.db import connection
from django.db.models import Exists, OuterRef
from django.utils import timezone

from crm import sql
from crm.models import Customer, Interaction
from ml.models import Suggestion, SuggestionEvent, TrainingRun
from ml.pipelines.recommendation.uplift import rate_difference

PURCHASE = Interaction.Type.PURCHASE
Event = SuggestionEvent.Event
# A mark made without a published recommendation run (none was live) counts purchases within
# the default retrain horizon.
DEFAULT_HORIZON_DAYS = 90
FUNNEL_PERIOD_DAYS = 90  # the Models page's default period
KIND_LABELS = {Suggestion.Kind.RECOMMENDATION: "Cross-sell", Suggestion.Kind.REORDER: "Reorder"}


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def default_period(today=None) -> tuple:
    """(first day, last day) of the default period: the last FUNNEL_PERIOD_DAYS days, today included."""
    today = today or timezone.localdate()
    return today - timedelta(days=FUNNEL_PERIOD_DAYS - 1), today


def _day_start(day) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def page_figures(first_day, last_day, run: TrainingRun | None) -> dict:
    """{"funnel": :func:`suggestion_funnel`, "uplift": :func:`measured_uplift`} for the Models
    page, read as reports (:func:`crm.sql.report_read`: no JIT compiling, which cost more than
    running these aggregates, and room for their hashes)."""
    with sql.report_read():
        return {"funnel": suggestion_funnel(first_day, last_day), "uplift": measured_uplift(run)}


def suggestion_funnel(first_day, last_day, now: datetime | None = None) -> list[dict]:
    """Per kind of suggestion, the funnel of the suggestions marked between ``first_day`` and
    ``last_day`` (dates, both included, in the site's time zone).

    A suggestion is one (customer, product, kind); it counts as offered at its first mark of the
    period (offered, accepted or declined: a salesperson who marks it accepted offered it),
    ``accepted`` / ``declined`` when one of its marks of the period says so, and ``bought`` when
    the customer bought the product after that first mark and within its run's horizon
    (``DEFAULT_HORIZON_DAYS`` for a mark made without a live run). ``open``: offered suggestions
    not bought whose horizon has not ended yet (they may still convert).

    Returns [{"kind", "label", "offered", "accepted", "declined", "bought", "bought_after_accepting",
    "open", "accepted_rate", "bought_rate", "accepted_bought_rate"}] (rates of offered, the last
    of accepted; None without any).
    """
    now = now or timezone.now()
    start, end = _day_start(first_day), _day_start(last_day + timedelta(days=1))
    marked: dict = {}  # (customer, product, kind) -> [first mark, run, accepted, declined]
    events = (SuggestionEvent.objects.filter(at__gte=start, at__lt=end).order_by("at", "id")
              .values_list("customer_id", "product_id", "kind", "event", "at", "run_id"))
    for customer_id, product_id, kind, event, at, run_id in events.iterator(chunk_size=5000):
        entry = marked.setdefault((customer_id, product_id, kind), [at, run_id, False, False])
        entry[2] |= event == Event.ACCEPTED
        entry[3] |= event == Event.DECLINED
    runs = {r.pk: r.horizon_days for r in TrainingRun.objects.filter(
        pk__in={e[1] for e in marked.values() if e[1] is not None}).only("id", "horizon_days")}
    horizon = {run_id: timedelta(days=days) for run_id, days in runs.items()}
    longest = max(horizon.values(), default=timedelta(days=DEFAULT_HORIZON_DAYS))
    longest = max(longest, timedelta(days=DEFAULT_HORIZON_DAYS))
    bought_at: dict = {}
    # Only the purchases of a marked product by its customer (not every purchase of the customers
    # marked: 180,000 rows at 22,000 marks).
    marked_pair = SuggestionEvent.objects.filter(customer_id=OuterRef("customer_id"), product_id=OuterRef("product_id"),
                                                 at__gte=start, at__lt=end)
    purchases = (Interaction.objects.filter(
        Exists(marked_pair), customer_id__in=SuggestionEvent.objects.filter(at__gte=start, at__lt=end).values(
            "customer_id"), type=PURCHASE, product__isnull=False, occurred_at__gt=start,
        occurred_at__lte=end + longest).values_list("customer_id", "product_id", "occurred_at"))
    for customer_id, product_id, occurred_at in purchases.iterator(chunk_size=5000):
        bought_at.setdefault((customer_id, product_id), []).append(occurred_at)
    out = {kind: {"kind": kind, "label": label, "offered": 0, "accepted": 0, "declined": 0, "bought": 0,
                  "bought_after_accepting": 0, "open": 0} for kind, label in KIND_LABELS.items()}
    for (customer_id, product_id, kind), (first, run_id, accepted, declined) in marked.items():
        row = out[kind]
        until = first + horizon.get(run_id, timedelta(days=DEFAULT_HORIZON_DAYS))
        bought = any(first < t <= until for t in bought_at.get((customer_id, product_id), ()))
        row["offered"] += 1
        row["accepted"] += accepted
        row["declined"] += declined
        row["bought"] += bought
        row["bought_after_accepting"] += bought and accepted
        row["open"] += not bought and until > now
    for row in out.values():
        row["accepted_rate"] = _rate(row["accepted"], row["offered"])
        row["bought_rate"] = _rate(row["bought"], row["offered"])
        row["accepted_bought_rate"] = _rate(row["bought_after_accepting"], row["accepted"])
    return list(out.values())


def uplift_window(run: TrainingRun) -> tuple[datetime, datetime] | None:
    """(start, end) of a recommendation run's measurement: its horizon after it was published
    (its lists were shown from then on); a run never published has none."""
    if run.published_at is None:
        return None
    return run.published_at, run.published_at + timedelta(days=run.horizon_days)


def measured_uplift(run: TrainingRun | None, now: datetime | None = None) -> list[dict]:
    """Per kind, how often the run's shown and control customers bought a product suggested to
    them within :func:`uplift_window` (customers with ``no_profiling`` left out: nobody was
    shown anything), with the difference of the two rates and its 95 % interval.

    Returns [{"kind", "label", "shown", "shown_buyers", "control", "control_buyers", "days_measured",
    "horizon_days", "result": rate_difference(...) or None (a group is empty), "verdict": words}].
    One query per kind: every suggestion of the run probes the purchases of its customer and product.
    """
    if run is None or (window := uplift_window(run)) is None:
        return []
    start, end = window
    now = now or timezone.now()
    days = max(0, min(run.horizon_days, (min(now, end) - start).days))
    groups = {(kind, bool(control)): (n, int(k or 0)) for kind, control, n, k in _uplift_counts(run, start, end)}
    out = []
    for kind, label in KIND_LABELS.items():
        (shown, shown_buyers), (control, control_buyers) = groups.get((kind, False), (0, 0)), \
            groups.get((kind, True), (0, 0))
        result = rate_difference(shown_buyers, shown, control_buyers, control) if shown and control else None
        out.append({"kind": kind, "label": label, "shown": shown, "shown_buyers": shown_buyers, "control": control,
                    "control_buyers": control_buyers, "days_measured": days, "horizon_days": run.horizon_days,
                    "result": result, "verdict": uplift_verdict(result, shown, control)})
    return out


def _uplift_counts(run: TrainingRun, start: datetime, end: datetime) -> list[tuple]:
    """(kind, control, customers, customers who bought one of their suggested products in the
    window) of the run. One read: the window's purchased (customer, product) pairs joined to the
    run's suggestions (a hash join; a probe of the interactions per suggestion cost 1.2 s at
    500,000 suggestions)."""
    T, q, ops = sql.table, sql.column, connection.ops
    Sug, Inter, Cust = Suggestion, Interaction, Customer
    query = (  # nosec B608  (identifiers from model metadata, values bound)
        f"SELECT per.kind, per.control, COUNT(*), SUM(per.bought) FROM ("
        f"SELECT s.{q(Sug, 'kind')} AS kind, s.{q(Sug, 'customer')} AS customer_id, s.{q(Sug, 'control')} AS control, "
        f"MAX(CASE WHEN b.customer_id IS NULL THEN 0 ELSE 1 END) AS bought "
        f"FROM {T(Sug)} s JOIN {T(Cust)} c ON c.{q(Cust, 'id')} = s.{q(Sug, 'customer')} "
        f"LEFT JOIN (SELECT DISTINCT i.{q(Inter, 'customer')} AS customer_id, i.{q(Inter, 'product')} AS product_id "
        f"FROM {T(Inter)} i WHERE i.{q(Inter, 'type')} = %s AND i.{q(Inter, 'product')} IS NOT NULL "
        f"AND i.{q(Inter, 'occurred_at')} > %s AND i.{q(Inter, 'occurred_at')} <= %s) b "
        f"ON b.customer_id = s.{q(Sug, 'customer')} AND b.product_id = s.{q(Sug, 'product')} "
        f"WHERE s.{q(Sug, 'run')} = %s AND c.{q(Cust, 'no_profiling')} = %s "
        f"GROUP BY s.{q(Sug, 'kind')}, s.{q(Sug, 'customer')}, s.{q(Sug, 'control')}) per "
        f"GROUP BY per.kind, per.control")                      # noqa: S608
    params = [PURCHASE, ops.adapt_datetimefield_value(start), ops.adapt_datetimefield_value(end), run.pk, False]
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def uplift_verdict(result: dict | None, shown: int, control: int) -> str:
    """The measurement in one plain sentence."""
    if not shown and not control:
        return "no suggestions of this kind in the live run"
    if not control:
        return "no control group in the live run (ML_CONTROL_SHARE was 0 when it was trained, or it predates it)"
    if not shown:
        return "every customer with suggestions of this kind is in the control group"
    level = round(result["confidence"] * 100)
    points = f"{result['difference'] * 100:+.1f} points ({level} % interval {result['low'] * 100:+.1f} to " \
             f"{result['high'] * 100:+.1f})"
    if not result["significant"]:
        return f"not yet significant: {points} includes no difference"
    if result["difference"] > 0:
        return f"shown customers bought the suggested products more often: {points}"
    return f"shown customers bought the suggested products less often: {points}"
