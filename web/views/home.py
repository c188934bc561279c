"""The home page: worklists and charts of the visible customers."""
from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.utils import timezone

from crm import selectors
from ml import customer_lists, insights, run_reports
from ml import selectors as ml_selectors
from ml.models import Suggestion, TrainingRun
from web.views.common import chart, month_axis, render, wrapped_label
from web.views.followups import home_followups


@login_required
def home(request):
    user = request.user
    now = timezone.now()
    customers = selectors.visible_customers(user)
    runs = insights.published_runs()
    context = {
        "figures": {
            "customers": customers.count(),
            "revenue_90": selectors.revenue_between(user, now - timedelta(days=90), now),
            "forecast": customer_lists.forecast_totals(user, (runs[TrainingRun.Kind.FORECAST].metrics or {}).get("portfolio")
                                                  if TrainingRun.Kind.FORECAST in runs else None),
        },
        "at_risk": customer_lists.high_value_at_risk(user),
        "reorder": ml_selectors.top_suggestions(customers, Suggestion.Kind.REORDER),
        "cross_sell": ml_selectors.top_suggestions(customers, Suggestion.Kind.RECOMMENDATION),
        "new_customers": selectors.new_this_week(user),
        "runs": runs,
        "not_forecast": run_reports.targets_not_forecast(
            runs[TrainingRun.Kind.FORECAST].metrics if TrainingRun.Kind.FORECAST in runs else None),
        "rec_outcome": run_reports.run_outcome(runs.get(TrainingRun.Kind.RECOMMENDATION)),
        # Why a kind has no live run, when its latest run was skipped (one query per such kind).
        "skipped": {kind: run_reports.skipped_reason(kind) for kind in TrainingRun.Kind.values if kind not in runs},
    }
    context.update(home_followups(request))
    for s in context["reorder"]:
        s.due = insights.due_words(s.expected_on)
    segments = customer_lists.segment_sizes(user)
    churn = customer_lists.churn_distribution(user)
    revenue = selectors.revenue_by_month(user)
    months, partial = month_axis([m for m, _t, _n in revenue], timezone.localdate())
    context["revenue_partial"] = months[partial] if partial is not None else None
    context["today"] = timezone.localdate()
    context["charts"] = {
        "segments": chart("bar", [wrapped_label(n) for n, _ in segments],
                          [{"label": "Customers", "data": [c for _, c in segments]}],
                          colorEach=True, options={"indexAxis": "y"}) if segments else None,
        "churn": chart("bar", [label for label, _ in churn],
                       [{"label": "Customers", "data": [c for _, c in churn],
                         "backgroundColor": ["#1d6b36", "#d9822b", "#a61b1b"]}]) if any(c for _, c in churn) else None,
        "revenue": chart("line", months,
                         [{"label": "Revenue", "data": [round(t, 2) for _m, t, _n in revenue], "fill": False}],
                         money=["y"], partial=partial),
    }
    return render(request, "crm/home.html", context)
