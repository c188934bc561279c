"""Reads of published insights: never recomputed on a request, always from the live runs."""
from __future__ import annotations

import functools
import json
import re

from django.db import connection

from crm import sql
from crm.models import Customer, Product
from ml.models import CustomerSegment, Forecast, Prospect, Segment, SimilarProduct, Suggestion, TrainingRun

INSIGHT_COLUMNS = ("external_id", "segment", "expected_purchases", "expected_spend", "churn_probability", "clv",
                   "expected_refund_rate", "recommendations", "reorder", "as_of", "horizon_days")


def published_runs() -> dict:
    """{kind: run} of the live run of each kind."""
    return {run.kind: run for run in TrainingRun.objects.filter(is_published=True)}


def published_run_ids() -> dict:
    return dict(TrainingRun.objects.filter(is_published=True).values_list("kind", "id"))


def customer_insights(customer: Customer, runs: dict | None = None) -> dict:
    """Everything the models say about one customer, in the contract's names.

    {"segment": {...} | None, "forecast": {...} | None, "recommendations": [...], "reorder": [...],
     "computed_at": {kind: datetime}, "no_profiling": bool}; a customer with ``no_profiling``
    gets no segment, forecast or suggestions.
    """
    return insights_by_customer([customer], runs)[customer.pk]


def _forecast_dict(f: Forecast, run: TrainingRun) -> dict:
    return {
        "as_of": run.as_of, "horizon_days": run.horizon_days,
        "expected_purchases": f.expected_purchases, "expected_spend": f.expected_spend,
        "churn_probability": f.churn_probability, "clv": f.clv, "expected_refund_rate": f.expected_refund_rate,
        "purchases_p10": f.purchases_p10, "purchases_p90": f.purchases_p90,
        "spend_p10": f.spend_p10, "spend_p90": f.spend_p90, "basis": f.basis, "factors": f.factors,
        "run_id": run.pk,
    }


def _suggestion_dict(s: Suggestion) -> dict:
    return {"sku": s.product.sku, "name": s.product.name, "product_id": s.product_id, "kind": s.kind,
            "score": s.score, "reason": s.reason, "evidence": s.evidence, "basis": s.basis, "rank": s.rank}


# --- what a run published and why (run.metrics["outcome"], ["backtest"], ["targets"]) -------------

# Forecast columns -> the forecast target in run.metrics["targets"] that says whether it was forecast.
FORECAST_TARGETS = {"expected_purchases": "orders", "expected_spend": "spend", "churn_probability": "churn",
                    "clv": "clv", "expected_refund_rate": "refund_rate"}
NOT_FORECAST = "not forecast for this data"
# Backtest targets (run.metrics["backtest"]["choice"]) in the pages' words.
TARGET_LABELS = {"orders": "Purchases", "spend": "Spend", "churn": "Churn", "clv": "Lifetime value",
                 "refund_rate": "Refund rate", "cross_sell": "Cross-sell", "reorder": "Reorder",
                 "segments": "Segments"}
# run.metrics["outcome"]["basis"] -> (css class of its badge, the badge's words).
BASIS_BADGES = {"model": ("basis-model", "model"), "baseline": ("basis-baseline", "baseline"),
                "not validated": ("basis-unvalidated", "not yet validated")}
# The simple baselines, in words a salesperson can check against the customer's history.
BASELINE_WORDS = {"naive rate": "the customer's own past rate carried forward",
                  "base rate": "the share of customers who stopped buying in past windows",
                  "popularity": "the best sellers", "repeat_buy": "what the customer bought most often",
                  "rfm": "recency, frequency and spend bands"}


def as_phrase(text) -> str:
    """A reason stored on a run as a phrase the pages can end with their own full stop."""
    return str(text or "").strip().rstrip(".").strip()


# A path on the server (/srv/app/ml/x.py, C:\app\x.py): never shown on a page or by the API.
_SERVER_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:\\|/)(?:[\w.\-]+[/\\])+[\w.\-]*")
_TRACEBACK = "Traceback (most recent call last)"


def run_error_sentence(run: TrainingRun | None) -> str:
    """A run's error as the one sentence the Models page, the API and the admin list show; "" without one.

    A skipped or refused run's reason is stored in words and shown as it is. An unexpected failure
    is stored with its traceback (ml.services.execute_run), which goes to the log and the admin's
    run detail only: here it is named by its first line, with any server path cut out.
    """
    error = str(getattr(run, "error", "") or "").strip()
    if not error:
        return ""
    first = _SERVER_PATH.sub("…", error.splitlines()[0].strip())
    if _TRACEBACK in error:
        if len(first) > 200:
            first = first[:199] + "…"
        return (f"Training failed on an unexpected error ({as_phrase(first)}); the published insights are "
                "unchanged, and the details are in the server log and the run's admin page.")
    return first if len(first) <= 400 else first[:399] + "…"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def ignored_lines(run: TrainingRun | None) -> list[str]:
    """Who and what a run left out, and why, in words, from the counts ml.services._load stores in
    ``run.data_counts`` (runs trained before these counts existed give fewer lines)."""
    counts = (getattr(run, "data_counts", None) or {}) if run is not None else {}
    as_of = run.as_of.isoformat() if run is not None and run.as_of else "the as-of date"
    lines = []
    if counts.get("no_profiling"):
        lines.append(f"{_count(counts['no_profiling'], 'customer')} who objected to profiling: left out of "
                     "training (no segment, forecast or suggestions)")
    without = counts.get("customers_without_purchase")
    if without:
        who = f"{_count(without, 'customer')} without a purchase on or before {as_of}"
        lines.append(who + {
            TrainingRun.Kind.FORECAST: ": no forecast (nothing to forecast from)",
            TrainingRun.Kind.SEGMENTATION: ": grouped as prospects, not clustered",
            TrainingRun.Kind.RECOMMENDATION: ": the best sellers, not personal suggestions",
        }.get(run.kind, ""))
    after = counts.get("interactions_after_as_of")
    if after:
        future = counts.get("future_interactions") or 0
        lines.append(f"{_count(after, 'interaction')} dated after {as_of}: not read"
                     + (f" ({future:,} of them in the future: see the data-quality page)" if future else ""))
    return lines


def _target_order(target: str) -> tuple:
    """Targets in the pages' order (PostgreSQL's jsonb keeps the keys of an object in an order of its own)."""
    return (list(TARGET_LABELS).index(target) if target in TARGET_LABELS else len(TARGET_LABELS), target)


def targets_not_forecast(metrics: dict | None) -> dict:
    """{target: reason} of the targets a forecast run did not forecast (``metrics["targets"]``,
    e.g. {"spend": "no amounts: ...", "clv": "..."}); their Forecast columns are NULL."""
    targets = (metrics or {}).get("targets") or {}
    out = {}
    for target in sorted(targets, key=_target_order):
        entry = targets[target]
        if isinstance(entry, dict) and entry.get("forecast") is False:
            out[target] = as_phrase(entry.get("reason")) or NOT_FORECAST
    return out


def not_forecast_lines(not_forecast: dict) -> list[tuple[str, str]]:
    """:func:`targets_not_forecast` as (labels, reason) lines, the targets sharing a reason on
    one line ("Spend and lifetime value", "no amounts: ...")."""
    by_reason: dict = {}
    for target, reason in not_forecast.items():
        by_reason.setdefault(reason, []).append(TARGET_LABELS.get(target, target.replace("_", " ")))
    lines = []
    for reason, labels in by_reason.items():
        names = [labels[0]] + [label.lower() for label in labels[1:]]
        lines.append((", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0], reason))
    return lines


def published_run_ids_and_not_forecast() -> tuple[dict, dict]:
    """(:func:`published_run_ids`, :func:`targets_not_forecast` of the published forecast run) in
    one query, reading only ``metrics["targets"]`` of the runs (their metrics also hold the
    backtest tables and series)."""
    ids, not_forecast = {}, {}
    for kind, pk, targets in TrainingRun.objects.filter(is_published=True).values_list("kind", "id",
                                                                                        "metrics__targets"):
        ids[kind] = pk
        if kind == TrainingRun.Kind.FORECAST:
            not_forecast = targets_not_forecast({"targets": targets if isinstance(targets, dict) else {}})
    return ids, not_forecast


ALGORITHM_WORDS = {"bgnbd": "BG/NBD", "paretonbd": "Pareto/NBD", "gbm": "gradient boosting", "glm": "GLM",
                   "svr": "SVR", "linear": "linear regression", "polynomial": "polynomial regression"}
HISTORY_WORDS = {"own history": "This customer's figures rest on their own purchase history.",
                 "population averages": "This customer has bought on one day only, so their figures lean on "
                                        "what similar customers did."}


def _algorithm_words(text: str) -> str:
    for code, words in ALGORITHM_WORDS.items():
        text = re.sub(rf"\b{code}\b", words, text)
    return text


def forecast_total_range(target: str, total, width, portfolio: dict | None) -> tuple:
    """P10 and P90 of a forecast total of some customers (``target``: "orders" or "spend"):
    their independent spread (``width``: the square root of the summed squared widths of their
    own P10-P90 ranges) and the live forecast run's level error on its backtest windows
    (``portfolio``: its ``metrics["portfolio"]``), combined as the run checked them. (None,
    None) without a total."""
    from ml.pipelines.forecasting import Z90, total_interval

    if total is None or width is None:
        return None, None
    level_sd = ((portfolio or {}).get(target) or {}).get("level_sd") or 0.0
    return total_interval(float(total), float(width) / (2 * Z90), float(level_sd))


def portfolio_checks(metrics: dict | None) -> list[dict]:
    """How the P10-P90 range of a forecast total held up on the run's backtest windows, per
    target: {"label", "covered", "windows", "errors" (total % error per window, most recent
    first)} from ``metrics["portfolio"]``; empty for runs without it."""
    out = []
    for target in sorted((metrics or {}).get("portfolio") or {}, key=_target_order):
        entry = metrics["portfolio"][target]
        windows = entry.get("windows") or []
        out.append({"label": TARGET_LABELS.get(target, target), "windows": len(windows),
                    "covered": sum(1 for w in windows if w.get("covered")),
                    "errors": [w.get("total_pct_error") for w in windows]})
    return out


def basis_words(basis: str) -> dict:
    """A Forecast.basis label in plain words: {"css": badge class, "badge": short words, "text": sentence}.

    Labels: "model: <algorithm>" (or "model: <algorithm> for orders, <other> for spend and
    churn"), "baseline: <baseline>", "not yet validated: <why>", each optionally followed by
    " · own history" or " · population averages" (what this customer's figures rest on); any
    other label (runs before the rolling-origin backtest) is shown as it is.
    """
    label, _, history = (basis or "").partition(" · ")
    tail = f" {HISTORY_WORDS[history.strip()]}" if history.strip() in HISTORY_WORDS else ""
    head, _, rest = label.partition(":")
    head, rest = head.strip().lower(), rest.strip()
    if head == "model":
        what = (f"{_algorithm_words(rest)}, each" if " for " in rest
                else f"the {_algorithm_words(rest) or 'chosen'} model,")
        return {"css": "basis-model", "badge": "model",
                "text": f"Forecast by {what} chosen over the simple baselines on past windows of this company's "
                        f"own data.{tail}"}
    if head == "baseline":
        words = BASELINE_WORDS.get(rest)
        name = f"{rest} ({words})" if words else (rest or "a simple rule")
        return {"css": "basis-baseline", "badge": "baseline",
                "text": f"Forecast by a simple baseline, {name}: no model beat it on past windows of this "
                        f"company's own data.{tail}"}
    if head in ("not yet validated", "not validated"):
        return {"css": "basis-unvalidated", "badge": "not yet validated",
                "text": f"Not yet validated{f' ({rest})' if rest else ''}: fitted on all the history there is, "
                        f"with none held back to check it.{tail}"}
    return {"css": "", "badge": "", "text": f"Based on {basis or 'the customer’s history'}."}


def forecast_accuracy(run: TrainingRun | None) -> dict | None:
    """How accurate a forecast run was on its most recent backtest window, in the words the pages use.

    ``metrics["model"]`` holds the published forecast's figures on that window and
    ``metrics["baselines"]["naive rate"]`` the naive rate's; the window is the most recent origin
    of ``metrics["backtest"]`` (older runs: ``cut``, ``horizon_days``, ``n_customers``). Targets
    not forecast are left out. A run with nothing held back: {"validated": False, "reason": ...}.
    """
    if run is None or not run.metrics:
        return None
    m = run.metrics
    backtest = m.get("backtest") or {}
    if backtest and not backtest.get("validated", True):
        return {"validated": False, "reason": as_phrase(backtest.get("reason")) or "not yet validated"}
    if "model" not in m:
        return None
    origins = backtest.get("origins") or []
    latest = max(origins, key=lambda o: o.get("cut") or "", default={})
    not_forecast = targets_not_forecast(m)
    naive = m.get("baselines", {}).get("naive rate")
    return {"validated": True, "cut": latest.get("cut") or m.get("cut"), "as_of": m.get("as_of"),
            "horizon_days": backtest.get("window_days") or m.get("horizon_days"),
            "model": {k: v for k, v in m["model"].items() if k not in not_forecast},
            "naive": {k: v for k, v in naive.items() if k not in not_forecast} if naive else None,
            "chosen": m.get("chosen"), "series": m.get("series"),
            "n_customers": latest.get("customers") or m.get("n_customers"),
            "origins": len(origins), "plan_reason": backtest.get("reason", ""), "not_forecast": not_forecast,
            "not_forecast_lines": not_forecast_lines(not_forecast)}


def _metric_text(value) -> str:
    """A backtest score for a table cell: four significant digits, no exponent."""
    if value is None:
        return "–"
    value = float(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) < 1e-4:  # rounding noise of a difference (e.g. 7e-18) reads as what it is, no exponent
        return "0" if abs(value) < 1e-9 else "≈ 0"
    return f"{value:.4g}"


def backtest_tables(backtest: dict | None) -> list[dict]:
    """One table per target of ``metrics["backtest"]["choice"]``: a row per candidate with its
    metric on each origin (the cut dates), the mean and the spread, and which was chosen, which
    was best and which is the baseline, with the choice's reason."""
    backtest = backtest or {}
    origins = backtest.get("origins") or []
    cuts = [{"cut": o.get("cut", ""), "first_day": o.get("first_day", ""), "last_day": o.get("last_day", ""),
             "customers": o.get("customers")} for o in origins]
    tables = []
    choices = backtest.get("choice") or {}
    for target in sorted(choices, key=_target_order):
        choice = choices[target]
        per_origin = choice.get("origins") or {}
        mean, spread = choice.get("mean") or {}, choice.get("spread") or {}
        rows = []
        # Simplest first, the order the choice went through (``order``: a list, since PostgreSQL's
        # jsonb keeps no key order); older runs: the baseline first, then by name.
        names = [*(choice.get("order") or []),
                 *sorted(dict.fromkeys([*per_origin, *mean]), key=lambda n: (n != choice.get("baseline"), n))]
        for name in dict.fromkeys(names):
            values = list(per_origin.get(name) or [])[:len(cuts)]
            values += [None] * (len(cuts) - len(values))
            rows.append({"name": name, "values": [_metric_text(v) for v in values],
                         "mean": _metric_text(mean.get(name)), "spread": _metric_text(spread.get(name)),
                         "chosen": name == choice.get("chosen"), "best": name == choice.get("best"),
                         "baseline": name == choice.get("baseline")})
        tables.append({"target": target, "label": TARGET_LABELS.get(target, target.replace("_", " ").capitalize()),
                       "metric": choice.get("metric", ""),
                       "better": "lower" if choice.get("lower_is_better", True) else "higher",
                       "cuts": cuts, "rows": rows, "chosen": choice.get("chosen", ""),
                       "is_baseline": bool(choice.get("is_baseline")), "reason": choice.get("reason", "")})
    return tables


def _share_text(value) -> str:
    return "–" if value is None else f"{100 * float(value):.1f} %"


def diversity_table(metrics: dict | None) -> dict | None:
    """How personal the cross-sell lists are, from a recommendation run's metrics: per
    candidate (averaged over the backtest windows: its lists for the scored customers) and for
    the published lists (every customer with a history), the catalogue coverage, the share of
    customers whose top 10 differs from their popularity top 10, and the intra-list diversity
    (share of pairs of listed products in different categories). None for other runs."""
    metrics = metrics or {}
    validation = metrics.get("validation") or {}
    choice = ((metrics.get("backtest") or {}).get("choice") or {}).get("cross_sell") or {}
    names = [n for n in dict.fromkeys([*(choice.get("order") or []), *validation])
             if "differs from popularity" in (validation.get(n) or {})]
    published = metrics.get("diversity") or None
    if not names and not published:
        return None

    def row(name, m):
        return {"name": name, "coverage": _share_text(m.get("coverage")),
                "differs": _share_text(m.get("differs from popularity")),
                "diversity": _share_text(m.get("intra-list diversity")),
                "chosen": name == choice.get("chosen")}

    return {"rows": [row(n, validation[n]) for n in names],
            "published": row("published lists", published) if published else None,
            "customers": (published or {}).get("customers")}


def run_outcome(run: TrainingRun | None) -> dict:
    """What a run published and why: {"basis", "css", "badge", "summary", "plan_reason",
    "validated", "tables", "not_forecast_lines", "empty_reasons", "notes", "diversity"} from its
    metrics (``diversity``: see :func:`diversity_table`, recommendation runs only); empty
    strings and lists for runs written before the rolling-origin backtest. ``empty_reasons``:
    {"cross_sell" | "reorder": why a customer's list may be empty} from a recommendation run's
    ``cross_sell_reason`` / ``reorder_reason``; ``notes``: the same as (label, reason) pairs."""
    m = (run.metrics if run is not None else None) or {}
    outcome, backtest = m.get("outcome") or {}, m.get("backtest") or {}
    css, badge = BASIS_BADGES.get(outcome.get("basis"), ("", outcome.get("basis") or ""))
    empty = {target: as_phrase(m[f"{target}_reason"]) for target in ("cross_sell", "reorder")
             if isinstance(m.get(f"{target}_reason"), str) and as_phrase(m[f"{target}_reason"])}
    return {"basis": outcome.get("basis") or "", "css": css, "badge": badge, "summary": outcome.get("summary") or "",
            "plan_reason": backtest.get("reason") or "", "validated": backtest.get("validated"),
            "tables": backtest_tables(backtest), "not_forecast_lines": not_forecast_lines(targets_not_forecast(m)),
            "empty_reasons": empty, "notes": [(TARGET_LABELS[t], reason) for t, reason in empty.items()],
            "diversity": diversity_table(m) if run is not None and run.kind == TrainingRun.Kind.RECOMMENDATION else None}


def skipped_reason(kind: str) -> str:
    """The reason of the latest finished run of ``kind`` when it was skipped (the data cannot
    support the kind), else ""."""
    run = (TrainingRun.objects.filter(kind=kind).exclude(status__in=TrainingRun.ACTIVE)
           .order_by("-created_at", "-id").only("status", "error").first())
    if run is None or run.status != TrainingRun.Status.SKIPPED:
        return ""
    return as_phrase(run.error) or "the data cannot support it"


def segments(run: TrainingRun | None = None):
    run = run or TrainingRun.objects.filter(kind=TrainingRun.Kind.SEGMENTATION, is_published=True).first()
    if run is None:
        return Segment.objects.none()
    return Segment.objects.filter(run=run).order_by("-size", "key")


def similar_products(product: Product, limit: int = 10):
    run_id = published_run_ids().get(TrainingRun.Kind.RECOMMENDATION)
    return (SimilarProduct.objects.filter(run_id=run_id, product=product).select_related("similar")
            .order_by("rank")[:limit])


def prospects(product: Product, limit: int = 20):
    run_id = published_run_ids().get(TrainingRun.Kind.RECOMMENDATION)
    return (Prospect.objects.filter(run_id=run_id, product=product).select_related("customer", "customer__owner")
            .order_by("rank")[:limit])


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
            spoke = row[3] is not None or row[2] is not None
            yield (row[1], row[2] or "", *row[3:8],
                   ";".join(lists.get((cid, Suggestion.Kind.RECOMMENDATION), ())),
                   ";".join(lists.get((cid, Suggestion.Kind.REORDER), ())),
                   as_of if spoke else "", horizon if spoke else "")
        last = rows[-1][0]


def _suggestion_lists(run, first_id: int, last_id: int) -> dict:
    rows = (Suggestion.objects.filter(run=run, customer_id__gte=first_id, customer_id__lte=last_id)
            .order_by("customer_id", "kind", "rank").values_list("customer_id", "kind", "product__sku"))
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
    rows = (Suggestion.objects.filter(run_id=run_id, kind=kind, customer__in=customers.values("pk"),
                                      customer__no_profiling=False)
            .select_related("customer", "product").order_by("-score", "customer_id", "rank"))
    if kind != Suggestion.Kind.RECOMMENDATION:
        return list(rows[:limit])
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
    from ml.models import SuggestionFeedback

    return {(p, k): s for p, k, s in
            SuggestionFeedback.objects.filter(customer=customer).values_list("product_id", "kind", "status")}


def runs_by_kind(limit: int = 10) -> dict:
    """{kind: [latest runs]} for every kind, newest first."""
    out = {kind: [] for kind in TrainingRun.Kind.values}
    for kind in out:
        out[kind] = list(TrainingRun.objects.filter(kind=kind).select_related("requested_by")
                         .order_by("-created_at", "-id")[:limit])
    return out


def previous_segmentation_run(run: TrainingRun | None):
    """The succeeded segmentation run before ``run`` (the one customers moved from)."""
    if run is None:
        return None
    return (TrainingRun.objects.filter(kind=TrainingRun.Kind.SEGMENTATION, status=TrainingRun.Status.SUCCEEDED,
                                       created_at__lte=run.created_at).exclude(pk=run.pk)
            .order_by("-created_at", "-id").first())


def segment_transitions(run: TrainingRun | None, previous: TrainingRun | None) -> dict:
    """How customers moved between the segments of ``previous`` and ``run``, from CustomerSegment rows.

    {"from": [names of previous segments + "(new)"], "to": [names of current segments],
     "rows": [(from name, [count per "to" segment], total)], "moved": n, "total": n}; one GROUP BY.
    """
    if run is None or previous is None:
        return {}
    table = CustomerSegment._meta.db_table
    sql = (f"SELECT p.segment_id, c.segment_id, COUNT(*) FROM {table} c "
           f"LEFT JOIN {table} p ON p.customer_id = c.customer_id AND p.run_id = %s "
           f"WHERE c.run_id = %s GROUP BY p.segment_id, c.segment_id")
    with connection.cursor() as cursor:
        cursor.execute(sql, [previous.pk, run.pk])
        counts = cursor.fetchall()
    names = dict(Segment.objects.filter(run_id__in=[run.pk, previous.pk]).values_list("pk", "name"))
    to_ids = list(Segment.objects.filter(run=run).order_by("-size", "key").values_list("pk", flat=True))
    from_ids = list(Segment.objects.filter(run=previous).order_by("-size", "key").values_list("pk", flat=True))
    grid = {(a, b): n for a, b, n in counts}
    rows = []
    for from_id in [*from_ids, None]:
        cells = [grid.get((from_id, to_id), 0) for to_id in to_ids]
        if from_id is None and not any(cells):
            continue
        rows.append((names.get(from_id, "(not segmented before)"), cells, sum(cells)))
    moved = sum(n for (a, b), n in grid.items() if a is not None and names.get(a) != names.get(b))
    return {"to": [names[i] for i in to_ids], "rows": rows, "moved": moved,
            "total": sum(n for n in grid.values()), "previous": previous, "run": run}


def run_status(run: TrainingRun) -> dict:
    """The small JSON the models page polls while a run is queued or running."""
    return {"id": run.pk, "kind": run.kind, "status": run.status, "stage": run.stage, "progress": run.progress,
            "is_published": run.is_published, "error": run_error_sentence(run),
            "finished": run.status not in TrainingRun.ACTIVE,
            "duration_seconds": run.duration_seconds}


# --- REST API reads (issue 6) -----------------------------------------------------------------

# Suggestion.kind -> the contract's key under ``insights`` (the cross-sell kind is singular, its list plural).
_SUGGESTION_KEYS = {Suggestion.Kind.RECOMMENDATION: "recommendations", Suggestion.Kind.REORDER: "reorder"}


def insight_runs() -> dict:
    """{kind: run} of the published runs, with only the fields insights need (a run's metrics can be large)."""
    return {r.kind: r for r in TrainingRun.objects.filter(is_published=True).only(
        "id", "kind", "finished_at", "as_of", "horizon_days")}


def with_published_rows(customers, runs: dict):
    """Join each customer's published segment membership (with its segment) and forecast into the
    customers' own query, as ``published_membership`` and ``published_forecast`` (None when absent)."""
    from django.db.models import FilteredRelation, Q

    seg_run, fc_run = runs.get(TrainingRun.Kind.SEGMENTATION), runs.get(TrainingRun.Kind.FORECAST)
    return customers.annotate(
        published_membership=FilteredRelation(
            "segment_history", condition=Q(segment_history__run_id=seg_run.pk if seg_run else -1)),
        published_forecast=FilteredRelation("forecasts", condition=Q(forecasts__run_id=fc_run.pk if fc_run else -1)),
    ).select_related("published_membership__segment", "published_forecast")


def insights_by_customer(customers, runs: dict | None = None) -> dict:
    """{customer id: insights} in customer_insights' shape, for many customers in at most four queries.

    Customers read through :func:`with_published_rows` (with the same ``runs``) bring their
    segment and forecast along, so only suggestions are read here.
    """
    runs = insight_runs() if runs is None else runs
    computed = {k: r.finished_at for k, r in runs.items()}
    customers = list(customers)
    out = {c.pk: {"segment": None, "forecast": None, "recommendations": [], "reorder": [],
                  "computed_at": dict(computed), "no_profiling": c.no_profiling} for c in customers}
    ids = [c.pk for c in customers if not c.no_profiling]
    if not ids:
        return out
    joined = all(hasattr(c, "published_forecast") for c in customers)
    profiled = [c for c in customers if not c.no_profiling]
    seg_run = runs.get(TrainingRun.Kind.SEGMENTATION)
    if seg_run:
        members = ([c.published_membership for c in profiled if c.published_membership] if joined else
                   CustomerSegment.objects.filter(run=seg_run, customer_id__in=ids).select_related("segment"))
        for member in members:
            s = member.segment
            out[member.customer_id]["segment"] = {"id": s.pk, "key": s.key, "name": s.name, "profile": s.profile,
                                                  "size": s.size, "figures": s.figures, "run_id": seg_run.pk}
    fc_run = runs.get(TrainingRun.Kind.FORECAST)
    if fc_run:
        forecasts = ([c.published_forecast for c in profiled if c.published_forecast] if joined else
                     Forecast.objects.filter(run=fc_run, customer_id__in=ids))
        for f in forecasts:
            out[f.customer_id]["forecast"] = _forecast_dict(f, fc_run)
    rec_run = runs.get(TrainingRun.Kind.RECOMMENDATION)
    if rec_run:
        for s in (Suggestion.objects.filter(run=rec_run, customer_id__in=ids).select_related("product")
                  .order_by("customer_id", "kind", "rank")):
            out[s.customer_id][_SUGGESTION_KEYS[s.kind]].append(_suggestion_dict(s))
    return out


def visible_prospects(user, product: Product, limit: int = 20):
    """prospects() restricted to the customers the user may see."""
    from crm.access import visible_customers

    run_id = published_run_ids().get(TrainingRun.Kind.RECOMMENDATION)
    return (Prospect.objects.filter(run_id=run_id, product=product, customer__in=visible_customers(user))
            .select_related("customer", "customer__owner").order_by("rank")[:limit])


def training_runs(*, kind: str = "", status: str = ""):
    runs = TrainingRun.objects.select_related("requested_by").order_by("-created_at", "-id")
    if kind:
        runs = runs.filter(kind=kind)
    if status:
        runs = runs.filter(status=status)
    return runs


def segments_of_run(run_id: int | None = None):
    """The segments of a segmentation run (default: the published one), largest first."""
    if run_id is None:
        return segments()
    return Segment.objects.filter(run_id=run_id, run__kind=TrainingRun.Kind.SEGMENTATION).order_by("-size", "key")


def customer_suggestions(customer: Customer, run: TrainingRun | None) -> dict:
    """{"recommendations": [...], "reorder": [...]} of one customer in a recommendation run, best first."""
    out = {"recommendations": [], "reorder": []}
    if run is None or customer.no_profiling:
        return out
    for s in (Suggestion.objects.filter(run=run, customer=customer).select_related("product")
              .order_by("kind", "rank")):
        out[_SUGGESTION_KEYS[s.kind]].append(_suggestion_dict(s))
    return out


# --- prepared reads for the API's customer resource (crm.sql) ------------------------------------

_RUN_ALIASES = (("sr", TrainingRun.Kind.SEGMENTATION), ("fr", TrainingRun.Kind.FORECAST),
                ("rr", TrainingRun.Kind.RECOMMENDATION))
CUSTOMER_RECORD_FIELDS = ("id", "external_id", "name", "email", "phone", "company", "country", "city", "signup_date",
                          "attributes", "no_profiling", "last_purchase_at", "created_at", "updated_at")
_FORECAST_FIELDS = ("expected_purchases", "expected_spend", "churn_probability", "clv", "expected_refund_rate",
                    "purchases_p10", "purchases_p90", "spend_p10", "spend_p90", "basis", "factors")


@functools.cache
def _record_selects():
    from django.contrib.auth import get_user_model

    customers = sql.Select([
        ("c", Customer, CUSTOMER_RECORD_FIELDS), ("o", get_user_model(), ("username",)),
        ("sr", TrainingRun, ("id", "finished_at")), ("fr", TrainingRun, ("id", "finished_at", "as_of", "horizon_days")),
        ("rr", TrainingRun, ("id", "finished_at")),
        ("s", Segment, ("id", "key", "name", "profile", "size", "figures")),
        ("f", Forecast, ("customer",) + _FORECAST_FIELDS),
    ])
    suggestions = sql.Select([("sg", Suggestion, ("customer", "kind", "rank", "score", "reason", "evidence", "basis")),
                              ("p", Product, ("id", "sku", "name"))])
    return customers, suggestions


@functools.lru_cache(maxsize=512)
def _record_query(pinned: bool, key: str, n_ids: int, rule: str) -> str:
    """The customers' query: by pinned run ids or the published runs, by ``n_ids`` ids or one
    ``key`` value, with the row-level ``rule`` (SQL text from crm.selectors.visibility_sql)."""
    from django.contrib.auth import get_user_model

    customers, _ = _record_selects()
    user_model = get_user_model()
    T, q = sql.table, sql.column
    joins = [f"LEFT JOIN {T(user_model)} o ON o.{q(user_model, 'id')} = c.{q(Customer, 'owner')}"]
    for alias, _kind in _RUN_ALIASES:
        if pinned:
            joins.append(f"LEFT JOIN {T(TrainingRun)} {alias} ON {alias}.{q(TrainingRun, 'id')} = %s")
        else:
            joins.append(f"LEFT JOIN {T(TrainingRun)} {alias} ON {alias}.{q(TrainingRun, 'kind')} = %s "
                         f"AND {alias}.{q(TrainingRun, 'is_published')} = %s")
    joins += [
        f"LEFT JOIN {T(CustomerSegment)} cs ON cs.{q(CustomerSegment, 'run')} = sr.{q(TrainingRun, 'id')} "
        f"AND cs.{q(CustomerSegment, 'customer')} = c.{q(Customer, 'id')}",
        f"LEFT JOIN {T(Segment)} s ON s.{q(Segment, 'id')} = cs.{q(CustomerSegment, 'segment')}",
        f"LEFT JOIN {T(Forecast)} f ON f.{q(Forecast, 'run')} = fr.{q(TrainingRun, 'id')} "
        f"AND f.{q(Forecast, 'customer')} = c.{q(Customer, 'id')}",
    ]
    where = (f"c.{q(Customer, key)} IN ({', '.join(['%s'] * n_ids)})" if n_ids else f"c.{q(Customer, key)} = %s")
    if rule:
        where = f"{where} AND {rule}"
    return (f"SELECT {customers.sql()}{_suggestions_column()} FROM {T(Customer)} c {' '.join(joins)} "  # nosec B608
            f"WHERE {where}")                                         # noqa: S608 (identifiers from model metadata)


_SUGGESTION_ITEM = (("sku", "p", Product, "sku"), ("name", "p", Product, "name"), ("product_id", "p", Product, "id"),
                    ("kind", "sg", Suggestion, "kind"), ("score", "sg", Suggestion, "score"),
                    ("reason", "sg", Suggestion, "reason"), ("evidence", "sg", Suggestion, "evidence"),
                    ("basis", "sg", Suggestion, "basis"), ("rank", "sg", Suggestion, "rank"))


def _suggestions_column() -> str:
    """On PostgreSQL, each customer's suggestions of the recommendation run as one JSON array
    column of the customers' query (one round trip less per request); elsewhere nothing, and
    :func:`_suggestion_query` reads them."""
    if connection.vendor != "postgresql":
        return ""
    T, q = sql.table, sql.column
    items = ", ".join(f"'{name}', {alias}.{q(model, field)}" for name, alias, model, field in _SUGGESTION_ITEM)
    return (f", CASE WHEN c.{q(Customer, 'no_profiling')} THEN NULL ELSE ("
            f"SELECT json_agg(json_build_object({items}) ORDER BY sg.{q(Suggestion, 'kind')}, sg.{q(Suggestion, 'rank')}) "
            f"FROM {T(Suggestion)} sg JOIN {T(Product)} p ON p.{q(Product, 'id')} = sg.{q(Suggestion, 'product')} "
            f"WHERE sg.{q(Suggestion, 'run')} = rr.{q(TrainingRun, 'id')} "
            f"AND sg.{q(Suggestion, 'customer')} = c.{q(Customer, 'id')}) END")


@functools.lru_cache(maxsize=512)
def _suggestion_query(n_customers: int) -> str:
    _, suggestions = _record_selects()
    T, q = sql.table, sql.column
    return (f"SELECT {suggestions.sql()} FROM {T(Suggestion)} sg "  # nosec B608 - identifiers only
            f"JOIN {T(Product)} p ON p.{q(Product, 'id')} = sg.{q(Suggestion, 'product')} "  # noqa: S608
            f"WHERE sg.{q(Suggestion, 'run')} = %s AND sg.{q(Suggestion, 'customer')} "
            f"IN ({', '.join(['%s'] * n_customers)}) "
            f"ORDER BY sg.{q(Suggestion, 'customer')}, sg.{q(Suggestion, 'kind')}, sg.{q(Suggestion, 'rank')}")


def customer_records(user, *, ids=None, pk=None, external_id=None, runs: dict | None = None) -> list[dict]:
    """Customers the user may see, by ``ids`` (in that order), ``pk`` or ``external_id``, each as
    {"id", "external_id", ..., "owner": username, "insights": {...}} with the insights in
    :func:`insights_by_customer`'s shape: the API's customer resource in one prepared query on
    PostgreSQL (customers with owner, runs, segment, forecast and suggestions as JSON), two
    elsewhere (suggestions apart), none compiled by the ORM.

    ``runs`` ({kind: run}) pins the runs read (a list page sorted by one run's forecasts shows
    that run's values); without it the published runs are joined in the same query.
    """
    from crm.access import visibility_sql

    rule = visibility_sql(user, "c")
    if rule is None or (ids is not None and not ids):
        return []
    customers, suggestions = _record_selects()
    params = []
    for _alias, kind in _RUN_ALIASES:
        if runs is None:
            params += [kind.value, True]
        else:
            run = runs.get(kind)
            params.append(run.pk if run is not None else None)
    if ids is not None:
        ids = [int(i) for i in ids]
        key, where_params = ("id", len(ids)), ids
    elif pk is not None:
        if not 0 < int(pk) < 2**63:  # beyond the id column's range: no such customer (not a database error)
            return []
        key, where_params = ("id", 0), [int(pk)]
    else:
        if "\x00" in external_id:  # PostgreSQL refuses NUL in a text comparison: nothing can match
            return []
        key, where_params = ("external_id", 0), [external_id]
    query = _record_query(runs is not None, *key, rule[0])
    rows = sql.fetchall(query, params + where_params + rule[1])
    records, rec_run, joined = {}, None, connection.vendor == "postgresql"
    for row in rows:
        v = customers.convert(row)
        computed = {kind.value: v[f"{alias}.finished_at"] for alias, kind in _RUN_ALIASES
                    if v[f"{alias}.id"] is not None}
        insights = {"segment": None, "forecast": None, "recommendations": [], "reorder": [],
                    "computed_at": computed, "no_profiling": v["c.no_profiling"]}
        if not v["c.no_profiling"]:
            if v["s.id"] is not None:
                insights["segment"] = {"id": v["s.id"], "key": v["s.key"], "name": v["s.name"],
                                       "profile": v["s.profile"], "size": v["s.size"], "figures": v["s.figures"],
                                       "run_id": v["sr.id"]}
            if v["f.customer"] is not None:
                insights["forecast"] = {"as_of": v["fr.as_of"], "horizon_days": v["fr.horizon_days"],
                                        **{name: v[f"f.{name}"] for name in _FORECAST_FIELDS},
                                        "run_id": v["fr.id"]}
        rec_run = v["rr.id"]
        record = {name: v[f"c.{name}"] for name in CUSTOMER_RECORD_FIELDS}
        record["owner"] = v["o.username"]
        record["insights"] = insights
        records[record["id"]] = record
        if joined and row[len(customers)] is not None:
            items = row[len(customers)]
            for item in json.loads(items) if isinstance(items, str) else items:
                insights[_SUGGESTION_KEYS[item["kind"]]].append(item)
    profiled = [cid for cid, r in records.items() if not r["no_profiling"]]
    if rec_run is not None and profiled and not joined:
        query = _suggestion_query(len(profiled))
        for row in sql.fetchall(query, [rec_run, *profiled]):
            v = suggestions.convert(row)
            records[v["sg.customer"]]["insights"][_SUGGESTION_KEYS[v["sg.kind"]]].append({
                "sku": v["p.sku"], "name": v["p.name"], "product_id": v["p.id"], "kind": v["sg.kind"],
                "score": v["sg.score"], "reason": v["sg.reason"], "evidence": v["sg.evidence"],
                "basis": v["sg.basis"], "rank": v["sg.rank"]})
    if ids is not None:
        return [records[i] for i in ids if i in records]
    return list(records.values())
