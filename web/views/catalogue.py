"""The segment and product pages."""
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404
from django.utils import timezone

from crm import selectors
from crm.models import Product
from ml import insights, run_reports
from ml import selectors as ml_selectors
from ml import services as ml_services
from ml.models import TrainingRun
from web.views.common import chart, month_axis, render, wrapped_label


@login_required
def segment_list(request):
    run = ml_services.published_run(TrainingRun.Kind.SEGMENTATION)
    segments = list(ml_selectors.segments(run))
    for s in segments:
        s.top_category = ml_selectors.top_category(s.figures)
    previous = run_reports.previous_segmentation_run(run)
    # Horizontal bars, names in lines on the left: under vertical bars the names were turned and cut.
    names = [wrapped_label(s.name) for s in segments]
    charts = {
        "size": chart("bar", names, [{"label": "Customers", "data": [s.size for s in segments]}], colorEach=True,
                      options={"indexAxis": "y"}),
        "figures": chart("bar", names, [
            {"label": "Median spend", "data": [s.figures.get("median_spend") for s in segments]},
            {"label": "Median orders", "data": [s.figures.get("median_orders") for s in segments], "xAxisID": "x1"},
            {"label": "Median days since last purchase", "data": [s.figures.get("median_recency_days")
                                                                  for s in segments], "xAxisID": "x1"}],
            money=["x"],
            options={"indexAxis": "y",
                     "scales": {"x": {"beginAtZero": True, "title": {"display": True, "text": "spend"}},
                                "x1": {"beginAtZero": True, "position": "top", "grid": {"drawOnChartArea": False},
                                       "title": {"display": True, "text": "orders / days"}}}}),
    } if segments else {}
    return render(request, "crm/segment_list.html", {
        "run": run, "segments": segments, "charts": charts,
        "transitions": run_reports.segment_transitions(run, previous),
        "is_manager": selectors.is_manager(request.user),
    })


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
    months, partial = month_axis([m for m, _t, _n in trend], timezone.localdate())
    return render(request, "crm/product_detail.html", {
        "product": product, "figures": selectors.product_sales_figures(product),
        "trend_partial": months[partial] if partial is not None else None, "today": timezone.localdate(),
        "trend": chart("bar", months,
                       [{"label": "Units bought (orders)", "data": [n for _m, _t, n in trend]},
                        {"label": "Revenue", "data": [round(t, 2) for _m, t, _n in trend], "type": "line",
                         "yAxisID": "y1", "color": "#d9822b"}],
                       options={"scales": {"y": {"beginAtZero": True, "title": {"display": True, "text": "orders"}},
                                           "y1": {"beginAtZero": True, "position": "right",
                                                  "grid": {"drawOnChartArea": False},
                                                  "title": {"display": True, "text": "revenue"}}}},
                       money=["y1"], partial=partial),
        "similar": ml_selectors.similar_products(product),
        "prospects": list(ml_selectors.visible_prospects(request.user, product)),
        "has_recommendations": TrainingRun.Kind.RECOMMENDATION in insights.published_run_ids(),
    })
