"""Data quality: duplicates and their merge, missing values, outliers (managers)."""
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET

from crm import quality, selectors, services
from web.views.common import manager_required, render


@manager_required
@require_GET
def data_quality(request):
    """Likely duplicates (with a merge per group), missing values, outlier orders, dates out of range."""
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
