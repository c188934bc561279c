"""HTML pages for sales staff. Thin: reads come from the selectors, writes from the services.

Every page requires login; every customer is fetched through ``visible_customers(user)`` (404
for one the user may not see); manager-only actions answer 403 to other roles.
"""
import csv
from datetime import timedelta
from pathlib import Path

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Page, Paginator
from django.http import FileResponse, Http404, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.shortcuts import render as django_render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_POST

from crm import audit, forms, selectors, services
from crm import imports as importing
from crm.exports import safe_cell
from crm.models import ImportFile, ImportRun, Product
from ml import selectors as ml_selectors
from ml import services as ml_services
from ml.models import Suggestion, SuggestionFeedback, TrainingRun


def manager_required(view):
    """Login required, then 403 unless the user is a manager or admin."""
    @login_required
    def wrapped(request, *args, **kwargs):
        if not selectors.is_manager(request.user):
            raise PermissionDenied("Only managers and admins can do this.")
        return view(request, *args, **kwargs)
    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


def render(request, template, context):
    """django.shortcuts.render plus the user's role flag, which the navigation needs."""
    context.setdefault("is_manager", selectors.is_manager(request.user))
    return django_render(request, template, context)


def chart(type_, labels, datasets, **extra) -> dict:
    """A chart spec for static/crm/site.js: {type, labels, datasets: [{label, data}], ...}."""
    return {"type": type_, "labels": list(labels), "datasets": datasets, **extra}


def _visible_customer(request, pk):
    return get_object_or_404(selectors.visible_customers(request.user), pk=pk)


# --- home ---------------------------------------------------------------------------------------

@login_required
def home(request):
    user = request.user
    now = timezone.now()
    customers = selectors.visible_customers(user)
    runs = ml_selectors.published_runs()
    context = {
        "figures": {
            "customers": customers.count(),
            "revenue_90": selectors.revenue_between(user, now - timedelta(days=90), now),
            "forecast": selectors.forecast_totals(user, (runs[TrainingRun.Kind.FORECAST].metrics or {}).get("portfolio")
                                                  if TrainingRun.Kind.FORECAST in runs else None),
        },
        "at_risk": selectors.high_value_at_risk(user),
        "reorder": ml_selectors.top_suggestions(customers, Suggestion.Kind.REORDER),
        "cross_sell": ml_selectors.top_suggestions(customers, Suggestion.Kind.RECOMMENDATION),
        "new_customers": selectors.new_this_week(user),
        "runs": runs,
        "not_forecast": ml_selectors.targets_not_forecast(
            runs[TrainingRun.Kind.FORECAST].metrics if TrainingRun.Kind.FORECAST in runs else None),
        "rec_outcome": ml_selectors.run_outcome(runs.get(TrainingRun.Kind.RECOMMENDATION)),
        # Why a kind has no live run, when its latest run was skipped (one query per such kind).
        "skipped": {kind: ml_selectors.skipped_reason(kind) for kind in TrainingRun.Kind.values if kind not in runs},
    }
    segments = selectors.segment_sizes(user)
    churn = selectors.churn_distribution(user)
    revenue = selectors.revenue_by_month(user)
    context["charts"] = {
        "segments": chart("bar", [n for n, _ in segments], [{"label": "Customers", "data": [c for _, c in segments]}],
                          colorEach=True, options={"indexAxis": "y"}) if segments else None,
        "churn": chart("bar", [label for label, _ in churn],
                       [{"label": "Customers", "data": [c for _, c in churn],
                         "backgroundColor": ["#1d6b36", "#d9822b", "#a61b1b"]}]) if any(c for _, c in churn) else None,
        "revenue": chart("line", [m.strftime("%b %Y") for m, _t, _n in revenue],
                         [{"label": "Revenue", "data": [round(t, 2) for _m, t, _n in revenue], "fill": False}]),
    }
    return render(request, "crm/home.html", context)


# --- customers ----------------------------------------------------------------------------------

def _customer_filter_form(request):
    return forms.CustomerFilterForm(request.GET or None, segments=ml_selectors.segments(),
                                    owners=selectors.customer_owners(request.user))


@login_required
def customer_list(request):
    form = _customer_filter_form(request)
    filters = form.filters()
    per_page = (form.cleaned_data.get("per_page") if form.is_bound and form.is_valid() else None) or forms.PAGE_SIZES[0]
    try:
        number = max(1, int(request.GET.get("page", 1)))
    except ValueError:
        number = 1
    runs, not_forecast = ml_selectors.published_run_ids_and_not_forecast()
    rows, total = selectors.customer_page(request.user, offset=(number - 1) * per_page, limit=per_page, runs=runs,
                                          **filters)
    if not rows and number > 1 and total:  # past the last page: show the last one
        number = (total - 1) // per_page + 1
        rows, total = selectors.customer_page(request.user, offset=(number - 1) * per_page, limit=per_page,
                                              runs=runs, **filters)
    page = Page(rows, number, _CountedPaginator(total, per_page))
    query = request.GET.copy()
    query.pop("page", None)
    sort_query = query.copy()
    sort_query.pop("sort", None)
    return render(request, "crm/customer_list.html", {
        "form": form, "page": page, "query": query.urlencode(), "sort_query": sort_query.urlencode(),
        "sort": filters.get("ordering", "name"), "has_forecast": "forecast" in runs,
        "not_forecast": ml_selectors.not_forecast_lines(not_forecast),
    })


class _CountedPaginator(Paginator):
    """A paginator for a page fetched by crm.selectors.customer_page: the count is known."""

    def __init__(self, count, per_page):
        super().__init__([], per_page)
        self._count = count

    @property
    def count(self):
        return self._count


EXPORT_COLUMNS = ("external_id", "name", "email", "company", "country", "city", "owner", "last_purchase_at",
                  "segment", "expected_purchases", "expected_spend", "churn_probability", "clv",
                  "expected_refund_rate", "value_at_risk")


class _Echo:
    def write(self, value):
        return value


@login_required
def customer_export(request):
    """The filtered list as CSV with its insights; formula-like cells defused."""
    form = _customer_filter_form(request)
    customers = selectors.customer_list(request.user, **form.filters())
    rows = customers.values_list("external_id", "name", "email", "company", "country", "city", "owner__username",
                                 "last_purchase_at", "segment_name", "expected_purchases", "expected_spend",
                                 "churn_probability", "clv", "expected_refund_rate", "value_at_risk")
    writer = csv.writer(_Echo())
    audit.record_export(request.user, "customer list (web CSV)", form.filters())

    def lines():
        yield writer.writerow(EXPORT_COLUMNS)
        for row in rows.iterator(chunk_size=2000):
            yield writer.writerow([safe_cell("" if v is None else v) for v in row])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="customers.csv"'
    return response


@login_required
def customer_detail(request, pk):
    customer = _visible_customer(request, pk)
    runs = ml_selectors.published_runs()
    insights = ml_selectors.customer_insights(customer, runs)
    feedback = ml_selectors.feedback_for_customer(customer)
    for s in insights["recommendations"] + insights["reorder"]:
        s["feedback"] = feedback.get((s["product_id"], s["kind"]))
    timeline_form = forms.TimelineFilterForm(request.GET or None)
    types = timeline_form.cleaned_data["type"] if timeline_form.is_bound and timeline_form.is_valid() else None
    fc_run = runs.get(TrainingRun.Kind.FORECAST)
    return render(request, "crm/customer_detail.html", {
        "customer": customer, "insights": insights, "runs": runs,
        "accuracy": ml_selectors.forecast_accuracy(fc_run),
        "not_forecast": ml_selectors.targets_not_forecast(fc_run.metrics if fc_run else None),
        "basis": ml_selectors.basis_words(insights["forecast"]["basis"]) if insights["forecast"] else None,
        "rec_outcome": ml_selectors.run_outcome(runs.get(TrainingRun.Kind.RECOMMENDATION)),
        # Why a kind has no live run, when its latest run was skipped (one query per such kind).
        "skipped": {kind: ml_selectors.skipped_reason(kind) for kind in TrainingRun.Kind.values if kind not in runs},
        "timeline": _with_edit_flags(request.user, selectors.customer_timeline(customer, types=types)),
        "timeline_form": timeline_form, "log_form": forms.LogInteractionForm(),
        "feedback_statuses": forms.FeedbackForm.base_fields["status"].choices,
        "is_manager": selectors.is_manager(request.user),
    })


@login_required
@require_POST
def customer_log(request, pk):
    customer = _visible_customer(request, pk)
    form = forms.LogInteractionForm(request.POST)
    if form.is_valid():
        try:
            services.log_interaction(user=request.user, customer=customer, type=form.cleaned_data["type"],
                                     occurred_at=form.cleaned_data["occurred_at"], notes=form.cleaned_data["notes"],
                                     channel="web")
        except services.NotAllowed as exc:
            raise PermissionDenied(str(exc)) from exc
        messages.success(request, f"{form.cleaned_data['type'].title()} logged.")
    else:
        messages.error(request, "Could not log that: " + "; ".join(
            f"{form.fields[field].label if field in form.fields else field}: {' '.join(errs)}"
            for field, errs in form.errors.items()))
    return redirect(reverse("customer_detail", args=[customer.pk]) + "#timeline")


def _with_edit_flags(user, interactions) -> list:
    rows = list(interactions)
    for interaction in rows:
        interaction.editable = selectors.can_change_interaction(user, interaction)
    return rows


def _editable_interaction(request, pk):
    """An interaction of a customer the user sees (else 404) that they may change (else 403)."""
    interaction = get_object_or_404(selectors.visible_interactions(request.user).select_related(
        "customer", "product", "created_by"), pk=pk)
    if not selectors.can_change_interaction(request.user, interaction):
        raise PermissionDenied("A sales rep can change only the interactions they logged.")
    return interaction


@login_required
def interaction_edit(request, pk):
    """Correct a logged interaction (its type, time, notes, quantity, amount); delete it from here too."""
    interaction = _editable_interaction(request, pk)
    customer = interaction.customer
    form = forms.InteractionEditForm(request.POST or None, initial=forms.InteractionEditForm.initial_for(interaction))
    if request.method == "POST" and form.is_valid():
        fields = {name: form.cleaned_data[name] for name in forms.InteractionEditForm.FIELDS}
        try:
            services.update_interaction(user=request.user, interaction=interaction, **fields)
        except services.NotAllowed as exc:
            raise PermissionDenied(str(exc)) from exc
        except ValidationError as exc:
            for field, errors in (exc.error_dict if hasattr(exc, "error_dict") else {None: exc.error_list}).items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            messages.success(request, f"{interaction.get_type_display()} of {interaction.occurred_at:%Y-%m-%d} saved.")
            return redirect(reverse("customer_detail", args=[customer.pk]) + "#timeline")
    return render(request, "crm/interaction_form.html", {"form": form, "interaction": interaction,
                                                         "customer": customer})


@login_required
@require_POST
def interaction_delete(request, pk):
    """Delete an interaction (the edit page's Delete button posts ``confirm=delete``)."""
    interaction = _editable_interaction(request, pk)
    customer = interaction.customer
    if request.POST.get("confirm") != "delete":
        messages.error(request, "Nothing deleted: use the Delete button on the interaction's page.")
        return redirect("interaction_edit", pk=interaction.pk)
    what = f"{interaction.get_type_display()} of {interaction.occurred_at:%Y-%m-%d}"
    try:
        services.delete_interaction(user=request.user, interaction=interaction)
    except services.NotAllowed as exc:
        raise PermissionDenied(str(exc)) from exc
    messages.success(request, f"{what} deleted.")
    return redirect(reverse("customer_detail", args=[customer.pk]) + "#timeline")


@login_required
@require_POST
def customer_feedback(request, pk):
    customer = _visible_customer(request, pk)
    form = forms.FeedbackForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Unknown suggestion or status.")
        return redirect("customer_detail", pk=customer.pk)
    product = get_object_or_404(Product, pk=form.cleaned_data["product"])
    try:
        ml_services.record_feedback(user=request.user, customer=customer, product=product,
                                    kind=form.cleaned_data["kind"], status=form.cleaned_data["status"])
    except services.NotAllowed as exc:
        raise PermissionDenied(str(exc)) from exc
    messages.success(request, f"{product.name}: marked {form.cleaned_data['status']}.")
    return redirect(reverse("customer_detail", args=[customer.pk]) + "#suggestions")


# --- segments -------------------------------------------------------------------------------------

@login_required
def segment_list(request):
    run = ml_services.published_run(TrainingRun.Kind.SEGMENTATION)
    segments = list(ml_selectors.segments(run))
    previous = ml_selectors.previous_segmentation_run(run)
    names = [s.name for s in segments]
    charts = {
        "size": chart("bar", names, [{"label": "Customers", "data": [s.size for s in segments]}], colorEach=True),
        "figures": chart("bar", names, [
            {"label": "Median spend", "data": [s.figures.get("median_spend") for s in segments]},
            {"label": "Median orders", "data": [s.figures.get("median_orders") for s in segments], "yAxisID": "y1"},
            {"label": "Median days since last purchase", "data": [s.figures.get("median_recency_days")
                                                                  for s in segments], "yAxisID": "y1"}],
            options={"scales": {"y": {"beginAtZero": True, "title": {"display": True, "text": "spend"}},
                                "y1": {"beginAtZero": True, "position": "right", "grid": {"drawOnChartArea": False},
                                       "title": {"display": True, "text": "orders / days"}}}}),
    } if segments else {}
    return render(request, "crm/segment_list.html", {
        "run": run, "segments": segments, "charts": charts,
        "transitions": ml_selectors.segment_transitions(run, previous),
        "is_manager": selectors.is_manager(request.user),
    })


# --- products -------------------------------------------------------------------------------------

@login_required
def product_list(request):
    q = request.GET.get("q", "").strip()
    category = request.GET.get("category", "")
    paginator = Paginator(selectors.product_list(q=q, category=category), 50)
    page = paginator.get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "crm/product_list.html", {
        "page": page, "q": q, "category": category, "categories": selectors.categories(),
        "query": query.urlencode(),
    })


@login_required
def product_detail(request, pk):
    product = get_object_or_404(Product, pk=pk)
    trend = selectors.revenue_by_month(request.user, product=product)
    return render(request, "crm/product_detail.html", {
        "product": product, "figures": selectors.product_sales_figures(product),
        "trend": chart("bar", [m.strftime("%b %Y") for m, _t, _n in trend],
                       [{"label": "Units bought (orders)", "data": [n for _m, _t, n in trend]},
                        {"label": "Revenue", "data": [round(t, 2) for _m, t, _n in trend], "type": "line",
                         "yAxisID": "y1", "color": "#d9822b"}],
                       options={"scales": {"y": {"beginAtZero": True, "title": {"display": True, "text": "orders"}},
                                           "y1": {"beginAtZero": True, "position": "right",
                                                  "grid": {"drawOnChartArea": False},
                                                  "title": {"display": True, "text": "revenue"}}}}),
        "similar": ml_selectors.similar_products(product),
        "prospects": list(ml_selectors.visible_prospects(request.user, product)),
        "has_recommendations": TrainingRun.Kind.RECOMMENDATION in ml_selectors.published_run_ids(),
    })


# --- models ---------------------------------------------------------------------------------------

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
    not_forecast = ml_selectors.targets_not_forecast(metrics)
    columns = [("model", metrics["model"])] + list((metrics.get("baselines") or {}).items())
    rows = [(label, better, [(col.get(group) or {}).get(measure) for _name, col in columns])
            for group, measure, label, better in FORECAST_MEASURES if group not in not_forecast]
    return {"columns": [name for name, _ in columns], "rows": rows}


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
    runs = ml_selectors.runs_by_kind()
    published = ml_selectors.published_runs()
    forecast_run = published.get(TrainingRun.Kind.FORECAST)
    rec_run = published.get(TrainingRun.Kind.RECOMMENDATION)
    accuracy = ml_selectors.forecast_accuracy(forecast_run)
    feedback_all = ml_services.feedback_counts()
    feedback_live = ml_services.feedback_counts(rec_run.pk) if rec_run else {}
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
                xTitle="customers grouped by forecast (deciles, lowest first)", yTitle=f"mean {key}")))
    kinds = []
    for kind, label in TrainingRun.Kind.choices:
        live = published.get(kind)
        latest = next((r for r in runs[kind] if r.status not in TrainingRun.ACTIVE), None)
        for r in runs[kind]:  # one sentence, never a traceback or a server path (those are in the admin)
            r.error_sentence = ml_selectors.run_error_sentence(r)
        kinds.append({"kind": kind, "label": label, "runs": runs[kind], "live": live,
                      "ignored": ml_selectors.ignored_lines(live),
                      "outcome": ml_selectors.run_outcome(live),
                      # The latest finished run was skipped: why (with a live run, that one stays).
                      "skipped": latest if latest and latest.status == TrainingRun.Status.SKIPPED else None,
                      "skipped_reason": ml_selectors.as_phrase(latest.error) if latest else "",
                      "metrics": _flat_metrics(live.metrics) if live else []})
    return render(request, "crm/model_list.html", {
        "series_charts": series_charts,
        "kinds": kinds,
        "forecast_table": _forecast_table(forecast_run.metrics if forecast_run else {}),
        "portfolio": ml_selectors.portfolio_checks(forecast_run.metrics if forecast_run else None),
        "accuracy": accuracy,
        "forecast_run": forecast_run,
        "feedback": [(label, feedback_all.get(value, 0), feedback_live.get(value, 0))
                     for value, label in SuggestionFeedback.Status.choices],
        "is_manager": selectors.is_manager(request.user),
    })


@login_required
@require_GET
def run_status(request, pk):
    run = get_object_or_404(TrainingRun, pk=pk)
    return JsonResponse(ml_selectors.run_status(run))


@manager_required
@require_POST
def model_retrain(request):
    form = forms.RetrainForm(request.POST)
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


# --- import ---------------------------------------------------------------------------------------

@manager_required
def import_list(request):
    if request.method == "POST":
        form = forms.ImportForm(request.POST, request.FILES)
        if form.is_valid():
            uploads = {k: form.cleaned_data[k] for k in forms.KINDS if form.cleaned_data.get(k)}
            dry_run = request.POST.get("action") == "check"
            try:
                run = services.enqueue_import(uploads, user=request.user, source="upload", dry_run=dry_run,
                                              date_format=form.cleaned_data["date_format"],
                                              source_name=form.cleaned_data["source_name"].strip())
            except services.BackgroundUnavailable as exc:
                messages.warning(request, str(exc))
                return redirect("import_list")
            messages.success(request, f"{'Dry run' if dry_run else 'Import'} #{run.pk} queued.")
            return redirect("import_detail", pk=run.pk)
    else:
        form = forms.ImportForm()
    return render(request, "crm/import_list.html", {"form": form, "history": selectors.import_history(),
                                                    "sources": selectors.import_sources()})


def _mapping_form(run, data=None):
    files = [f for f in run.files.all() if f.header]
    initial = {"date_format": run.date_format or "iso", "source_name": run.source_name}
    return forms.ImportMappingForm(data, files=files, initial=initial)


@manager_required
def import_detail(request, pk, data=None):
    """An import's (or dry run's) format, counts, first rows and rejected rows; a dry run's page
    also holds the column mapping to import its files with (``data``: that form as posted)."""
    run = get_object_or_404(ImportRun.objects.select_related("user").prefetch_related("files"), pk=pk)
    files = []
    for f in run.files.all():
        rows = selectors.rejected_rows(f)
        header = ["row", "outcome", "reason", *(rows[0]["values"] if rows else ())]
        shown = set().union(*(r["values"] for r in f.preview)) if f.preview else set()
        order = [importing.source_of(c) for c in importing.SPECS[f.kind].columns]
        columns = [c for c in order if c in shown]  # the contract's order (JSON keys lose theirs on PostgreSQL)
        preview = [{**r, "cells": [r["values"].get(c, "") for c in columns]} for r in f.preview]
        files.append({"file": f, "header": header, "rows": rows, "preview_columns": columns, "preview": preview,
                      "mapped": f.in_file_order(f.column_mapping)})
    finished = run.status in ImportRun.FINISHED
    mapping_form = _mapping_form(run, data) if run.dry_run and finished and run.files.all() else None
    return render(request, "crm/import_detail.html", {
        "run": run, "files": files, "mapping_form": mapping_form,
        "date_label": importing.DATE_FORMATS.get(run.date_format, "")})


@manager_required
@require_POST
def import_confirm(request, pk):
    """From a dry run's page: import its files with the mapping shown (or check them again)."""
    run = get_object_or_404(ImportRun.objects.prefetch_related("files"), pk=pk, dry_run=True)
    form = _mapping_form(run, request.POST)
    if not form.is_valid():
        messages.error(request, "The column mapping has a problem: see the marked columns.")
        return import_detail(request, pk, data=request.POST)
    dry_run = request.POST.get("action") == "check"
    try:
        new = services.enqueue_checked(run.pk, user=request.user, mapping=form.mapping(),
                                       date_format=form.cleaned_data["date_format"],
                                       source_name=form.cleaned_data["source_name"].strip(), dry_run=dry_run,
                                       source="upload")
    except services.BackgroundUnavailable as exc:
        messages.warning(request, str(exc))
        return redirect("import_list")
    messages.success(request, f"{'Dry run' if dry_run else 'Import'} #{new.pk} of the checked files queued.")
    return redirect("import_detail", pk=new.pk)


@manager_required
@require_GET
def import_status(request, pk):
    run = get_object_or_404(ImportRun.objects.prefetch_related("files"), pk=pk)
    return JsonResponse({"id": run.pk, "status": run.status, "outcome": run.outcome, "dry_run": run.dry_run,
                         "stage": run.stage, "rows_done": run.rows_done, "progress": run.progress_percent,
                         "error": run.error, "finished": run.status in ImportRun.FINISHED})


@manager_required
@require_GET
def import_rejected(request, pk, kind):
    f = get_object_or_404(ImportFile, run_id=pk, kind=kind)
    if not f.rejected_path or not Path(f.rejected_path).exists():
        raise Http404("No rejected rows for this file.")
    return FileResponse(open(f.rejected_path, "rb"), as_attachment=True, content_type="text/csv",
                        filename=f"import-{pk}-{kind}.rejected.csv")


# --- customer editing -----------------------------------------------------------------------------

def _customer_form(request, *, customer=None):
    user = request.user
    any_owner = selectors.sees_all_customers(user)
    if customer is not None:
        initial = forms.CustomerForm.initial_for(customer)
    else:  # a rep's new customer is theirs unless they say otherwise
        initial = {"owner": None if any_owner else user.pk}
    return forms.CustomerForm(request.POST if request.method == "POST" else None, initial=initial,
                              owners=selectors.assignable_owners(user, current=customer and customer.owner_id),
                              any_owner=any_owner)


def _save_customer(form, write):
    """Run a create/update service with the form's data; its refusals become form errors. None if refused."""
    try:
        return write(**form.cleaned_data)
    except ValidationError as exc:  # the model's own rules (e.g. external_id already used)
        errors = exc.error_dict if hasattr(exc, "error_dict") else {None: exc.error_list}
        for field, messages_ in errors.items():
            form.add_error(field if field in form.fields else None, messages_)
    except services.NotAllowed as exc:
        form.add_error("owner", str(exc))
    return None


@login_required
def customer_create(request):
    if not selectors.is_staff_member(request.user):
        raise PermissionDenied("Your account has no CRM role.")
    form = _customer_form(request)
    if request.method == "POST" and form.is_valid():
        customer = _save_customer(form, lambda **fields: services.create_customer(user=request.user, **fields))
        if customer is not None:
            messages.success(request, f"Customer {customer} created.")
            return redirect("customer_detail", pk=customer.pk)
    return render(request, "crm/customer_form.html", {"form": form, "customer": None, "title": "New customer"})


@login_required
def customer_edit(request, pk):
    customer = _visible_customer(request, pk)
    title = f"Edit {customer}"  # before a refused save leaves the instance holding the rejected input
    form = _customer_form(request, customer=customer)
    if request.method == "POST" and form.is_valid():
        saved = _save_customer(form, lambda **fields: services.update_customer(
            user=request.user, customer=customer, **fields))
        if saved is not None:
            messages.success(request, f"Customer {saved} saved.")
            return redirect("customer_detail", pk=saved.pk)
    return render(request, "crm/customer_form.html", {"form": form, "customer": customer, "title": title})


# --- account --------------------------------------------------------------------------------------

def _account_page(request, *, new_key=None):
    from rest_framework.authtoken.models import Token

    response = render(request, "crm/account.html", {
        "roles": sorted(selectors.user_roles(request.user)),
        "token": Token.objects.filter(user=request.user).only("created").first(),
        "new_key": new_key,
    })
    # The page may hold a freshly made key: keep it out of every cache and the back/forward history.
    add_never_cache_headers(response)
    return response


@login_required
@require_GET
def account(request):
    return _account_page(request)


@login_required
@require_POST
def account_token_create(request):
    """Create an API token and show its key in this response only (it is never shown again)."""
    try:
        token = services.create_token(request.user)
    except services.TokenExists:
        messages.error(request, "You already have an API token. Regenerate it to get a new key.")
        return redirect("account")
    return _account_page(request, new_key=token.key)


@login_required
@require_POST
def account_token_regenerate(request):
    token = services.regenerate_token(request.user)
    return _account_page(request, new_key=token.key)


@login_required
@require_POST
def account_token_revoke(request):
    if services.revoke_token(request.user):
        messages.success(request, "API token revoked: requests with it are refused from now on.")
    else:
        messages.info(request, "You had no API token.")
    return redirect("account")
# --- privacy: right of access and erasure (managers and admins) ----------------------------------

@manager_required
@require_GET
def customer_personal_data(request, pk):
    """Everything stored about the customer, as a JSON download (recorded in the audit trail)."""
    from django.http import HttpResponse

    from crm import privacy

    customer = _visible_customer(request, pk)
    data = privacy.export_personal_data(user=request.user, customer=customer)
    response = HttpResponse(privacy.to_json(data), content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="personal-data-customer-{customer.pk}.json"'
    return response


@manager_required
def customer_erase(request, pk):
    """GET: what erasing removes, and a form asking to type the external id. POST: erase."""
    from crm import privacy

    customer = _visible_customer(request, pk)
    error = ""
    if request.method == "POST":
        if request.POST.get("confirm", "").strip() != customer.external_id:
            error = "Type the customer's external id exactly to confirm."
        else:
            counts = privacy.erase_customer(user=request.user, customer=customer)
            messages.success(request, "Personal data erased: " + ", ".join(f"{n} {what}" for what, n in counts.items())
                             + " deleted; the profile is blank and left out of training.")
            return redirect("customer_detail", pk=customer.pk)
    response = render(request, "crm/customer_erase.html", {"customer": customer, "error": error})
    if error:
        response.status_code = 400
    return response


# --- data quality (managers) ----------------------------------------------------------------------

@manager_required
@require_GET
def data_quality(request):
    """Likely duplicates (with a merge per group), missing values, outlier orders, dates out of range."""
    from crm import quality

    groups, n_groups = quality.duplicate_groups()
    outliers, n_outliers, outliers_complete = quality.outlier_orders()
    missing_key = request.GET.get("missing", "")
    missing = None
    if missing_key:
        try:
            table, column, rows = quality.missing_records(missing_key)
        except KeyError:
            raise Http404("No such column.") from None
        missing = {"key": missing_key, "table": table, "column": column, "rows": rows}
    return render(request, "crm/data_quality.html", {
        "groups": groups, "n_groups": n_groups, "missing_values": quality.missing_values(), "missing": missing,
        "outliers": outliers, "n_outliers": n_outliers, "outliers_complete": outliers_complete,
        "dates": quality.date_findings(), "rules": {
            "outlier_factor": quality.OUTLIER_FACTOR, "ancient_before": quality.ANCIENT_BEFORE,
            "similarity": quality.NAME_SIMILARITY, "phone_digits": quality.PHONE_DIGITS,
            "limit": quality.LIST_LIMIT},
    })


def _merge_choice(request, data):
    """(the customer to keep, the duplicates) named by ``keep`` and ``remove`` ids, or None when invalid."""
    try:
        keep_id = int(data.get("keep", ""))
        remove_ids = {int(v) for v in data.getlist("remove")} - {keep_id}
    except ValueError:
        return None
    customers = selectors.visible_customers(request.user).in_bulk([keep_id, *remove_ids])
    if keep_id not in customers or not remove_ids or len(customers) != len(remove_ids) + 1:
        return None
    return customers[keep_id], [customers[pk] for pk in sorted(remove_ids)]


@manager_required
def data_quality_merge(request):
    """GET ?keep=ID&remove=ID...: what the merge moves, and a button; POST: merge (crm.services.merge_customers)."""
    choice = _merge_choice(request, request.POST if request.method == "POST" else request.GET)
    if choice is None:
        messages.error(request, "Choose the customer to keep and at least one duplicate to merge into it.")
        return redirect(reverse("data_quality") + "#duplicates")
    keep, duplicates = choice
    if request.method == "POST":
        try:
            moved = services.merge_customers(user=request.user, keep=keep, duplicates=duplicates)
        except services.MergeRefused as exc:
            messages.error(request, f"Not merged: {exc}.")
            return redirect(reverse("data_quality") + "#duplicates")
        messages.success(request, f"Merged {len(duplicates)} duplicate{'s' if len(duplicates) != 1 else ''} into "
                         f"{keep}: " + (", ".join(f"{n} {label}" for label, n in moved.items() if n)
                                        or "nothing to move") + ".")
        return redirect("customer_detail", pk=keep.pk)
    counts = selectors.merge_preview([keep, *duplicates])
    columns = [f for f in services.MERGE_FILLED_FIELDS if f != "name"] + ["signup_date", "owner"]
    rows = [{"role": role, "customer": c, "counts": counts[c.pk], "cells": [getattr(c, f) for f in columns]}
            for role, c in [("kept", keep)] + [("merged, then deleted", d) for d in duplicates]]
    return render(request, "crm/data_quality_merge.html", {"keep": keep, "duplicates": duplicates, "rows": rows,
                                                           "columns": [f.replace("_", " ") for f in columns]})
