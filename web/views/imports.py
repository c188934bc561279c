"""The import pages: upload, mapping and dry run, status, rejected rows."""
from django.contrib import messages
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET, require_POST

from crm import forms, selectors, services
from crm import imports as importing
from crm.models import ImportFile, ImportRun
from web.views.common import manager_required, render


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
    report = selectors.import_report(f)
    if report is None:
        raise Http404("No rejected rows are kept for this file.")
    return FileResponse(report[0], as_attachment=True, content_type="text/csv",
                        filename=f"import-{pk}-{kind}.rejected.csv")
