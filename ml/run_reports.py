"""What a run published and why, in the pages' and the API's words: outcomes, backtests,
targets not forecast, error sentences, run lists and their status."""
from __future__ import annotations

import re

from django.db import connection

from ml.models import CustomerSegment, Segment, TrainingRun

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
    """Who and what a run left out, and why, in words, from the counts ml.training._load stores in
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
    # Imported here: the forecasting module loads scipy and scikit-learn, which a web worker needs
    # only on the pages that show a forecast total's range.
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


def training_runs(*, kind: str = "", status: str = ""):
    runs = TrainingRun.objects.select_related("requested_by").order_by("-created_at", "-id")
    if kind:
        runs = runs.filter(kind=kind)
    if status:
        runs = runs.filter(status=status)
    return runs
