"""The models page: training runs, their figures, retrain and publish."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from crm import selectors, services
from ml import funnel, insights, run_reports
from ml import services as ml_services
from ml.models import SuggestionFeedback, TrainingRun
from web import forms as web_forms
from web.views.common import chart, manager_required, render

FORECAST_MEASURES = (("orders", "mae", "Purchases: mean abs. error", "lower"),
                     ("orders", "rmse", "Purchases: RMSE", "lower"),
                     ("spend", "mae", "Spend: mean abs. error", "lower"),
                     ("spend", "rmse", "Spend: RMSE", "lower"),
                     ("churn", "auc", "Churn: AUC", "higher"),
                     ("churn", "brier", "Churn: Brier score", "lower"))


def _forecast_table(metrics: dict) -> dict:
    """Model vs each baseline on the holdout window: {"columns": [...], "rows": [(label, better, [values])]},
    without the rows of targets the run did not forecast."""
    if not metrics or "model" not in metrics:
        return {}
    not_forecast = run_reports.targets_not_forecast(metrics)
    columns = [("model", metrics["model"])] + list((metrics.get("baselines") or {}).items())
    rows = [(label, better, [(col.get(group) or {}).get(measure) for _name, col in columns])
            for group, measure, label, better in FORECAST_MEASURES if group not in not_forecast]
    # The spend errors are amounts of money, shown as such; the others are counts, AUC and Brier scores.
    money = [label for group, measure, label, _better in FORECAST_MEASURES if group == "spend"]
    return {"columns": [name for name, _ in columns], "rows": rows, "money": money}


def _flat_metrics(metrics: dict, skip=("series", "reliability", "candidates", "params", "validation", "outcome",
                                       "backtest", "targets", "cross_sell_reason", "reorder_reason"),
                  prefix: str = "", depth: int = 0) -> list:
    """Numeric leaves of a run's metrics as (dotted name, value), for kinds without a dedicated table."""
    out = []
    for key, value in (metrics or {}).items():
        if key in skip:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            out.append((name, "yes" if value else "no"))
        elif isinstance(value, (int, float)):
            out.append((name, value))
        elif isinstance(value, str) and len(value) < 120:
            out.append((name, value))
        elif isinstance(value, dict) and depth < 2:
            out.extend(_flat_metrics(value, skip, f"{name} › ", depth + 1))
    return out[:40]


@login_required
def model_list(request):
    runs = run_reports.runs_by_kind()
    published = insights.published_runs()
    forecast_run = published.get(TrainingRun.Kind.FORECAST)
    rec_run = published.get(TrainingRun.Kind.RECOMMENDATION)
    accuracy = run_reports.forecast_accuracy(forecast_run)
    feedback_all = ml_services.feedback_counts()
    feedback_live = ml_services.feedback_counts(rec_run.pk) if rec_run else {}
    default_period = funnel.default_period()
    period_form = web_forms.FunnelPeriodForm(request.GET or None, initial=dict(zip(("funnel_from", "funnel_to"),
                                                                                default_period)))
    first_day, last_day = period_form.period(default_period)
    series_charts = []
    for key, title in (("orders", "Purchases per customer"), ("spend", "Spend per customer")):
        if key in (accuracy or {}).get("not_forecast", {}):
            continue
        series = ((accuracy or {}).get("series") or {}).get(key) or []
        if series:
            series_charts.append((f"chart-series-{key}", title, chart(
                "bar", [f"{row['bin']}" for row in series],
                [{"label": "Forecast", "data": [row["mean_predicted"] for row in series]},
                 {"label": "Actual", "data": [row["mean_actual"] for row in series], "color": "#d9822b"}],
                xTitle="customers grouped by forecast (deciles, lowest first)", yTitle=f"mean {key}",
                money=["y"] if key == "spend" else [])))
    kinds = []
    for kind, label in TrainingRun.Kind.choices:
        live = published.get(kind)
        latest = next((r for r in runs[kind] if r.status not in TrainingRun.ACTIVE), None)
        for r in runs[kind]:  # one sentence, never a traceback or a server path (those are in the admin)
            r.error_sentence = run_reports.run_error_sentence(r)
        kinds.append({"kind": kind, "label": label, "runs": runs[kind], "live": live,
                      "ignored": run_reports.ignored_lines(live),
                      "outcome": run_reports.run_outcome(live),
                      # The latest finished run was skipped: why (with a live run, that one stays).
                      "skipped": latest if latest and latest.status == TrainingRun.Status.SKIPPED else None,
                      "skipped_reason": run_reports.as_phrase(latest.error) if latest else "",
                      "metrics": _flat_metrics(live.metrics) if live else []})
    return render(request, "crm/model_list.html", {
        "series_charts": series_charts,
        "kinds": kinds,
        "forecast_table": _forecast_table(forecast_run.metrics if forecast_run else {}),
        "portfolio": run_reports.portfolio_checks(forecast_run.metrics if forecast_run else None),
        "accuracy": accuracy,
        "forecast_run": forecast_run,
        "feedback": [(label, feedback_all.get(value, 0), feedback_live.get(value, 0))
                     for value, label in SuggestionFeedback.Status.choices],
        "period_form": period_form, "period": (first_day, last_day),
        **funnel.page_figures(first_day, last_day, rec_run),
        "is_manager": selectors.is_manager(request.user),
    })


@login_required
@require_GET
def run_status(request, pk):
    run = get_object_or_404(TrainingRun, pk=pk)
    return JsonResponse(run_reports.run_status(run))


@manager_required
@require_POST
def model_retrain(request):
    form = web_forms.RetrainForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Unknown model kind.")
        return redirect("model_list")
    try:
        run, created = ml_services.request_retrain(form.cleaned_data["kind"], user=request.user)
    except ml_services.RetrainRefused as exc:
        messages.error(request, f"Retrain refused: {exc}")
        return redirect("model_list")
    except services.BackgroundUnavailable as exc:
        messages.warning(request, str(exc))
        return redirect("model_list")
    if created:
        messages.success(request, f"{run.kind.title()} retrain queued (run #{run.pk}).")
    else:
        messages.info(request, f"A {run.kind} retrain was already queued (run #{run.pk}); your request joined it.")
    return redirect(reverse("model_list") + f"#kind-{run.kind}")


@manager_required
@require_POST
def model_publish(request, pk):
    """Roll back (or forward) to an earlier succeeded run."""
    run = get_object_or_404(TrainingRun, pk=pk)
    try:
        ml_services.publish_run(run.pk, user=request.user)
    except ml_services.RunNotPublishable as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Run #{run.pk} is now the live {run.kind} model.")
    return redirect(reverse("model_list") + f"#kind-{run.kind}")
