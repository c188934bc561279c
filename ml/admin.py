"""Admin for training runs (with publish / rollback and retrain actions) and their insights."""
from django.contrib import admin, messages

from crm.jobs import BackgroundUnavailable
from ml import run_reports, services
from ml.models import CustomerSegment, Forecast, Prospect, Segment, SimilarProduct, Suggestion, TrainingRun


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "is_published", "chosen_algorithm", "outcome", "as_of", "horizon_days",
                    "progress", "stage", "created_at", "trigger")
    list_filter = ("kind", "status", "is_published", "trigger")
    date_hierarchy = "created_at"
    # The run's page shows its error whole, traceback included (admins only: it names the server's
    # paths); the list and every other page show one sentence (ml.run_reports.run_error_sentence).
    readonly_fields = [f.name for f in TrainingRun._meta.fields]
    actions = ["publish_selected", "retrain_same_kind"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="Outcome")
    def outcome(self, run):
        """What the run published and why: its outcome line, or why it was skipped or failed (one sentence)."""
        if run.status == TrainingRun.Status.SKIPPED:
            return f"skipped: {run_reports.run_error_sentence(run)}"
        if run.error:
            return run_reports.run_error_sentence(run)
        return ((run.metrics or {}).get("outcome") or {}).get("summary") or "–"

    @admin.action(description="Publish the selected run (roll back to it)", permissions=["change"])
    def publish_selected(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Choose exactly one run to publish.", messages.ERROR)
            return
        run = queryset.get()
        try:
            services.publish_run(run.pk)
        except services.RunNotPublishable as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, f"Run #{run.pk} is now the published {run.kind} model.", messages.SUCCESS)

    @admin.action(description="Retrain these kinds now", permissions=["change"])
    def retrain_same_kind(self, request, queryset):
        for kind in sorted(set(queryset.values_list("kind", flat=True))):
            try:
                run, created = services.request_retrain(kind, user=request.user, trigger="manual")
            except BackgroundUnavailable as exc:
                self.message_user(request, f"{kind}: {exc}", messages.WARNING)
                continue
            self.message_user(request, f"{kind}: run #{run.pk} {'queued' if created else 'was already queued'}.")


class _InsightAdmin(admin.ModelAdmin):
    """An insight row's list shows its run by name only: the run's JSON (metrics with the backtest
    tables, artefact, ...) is not read once per row."""

    def get_queryset(self, request):
        return super().get_queryset(request).defer(*(f"run__{name}" for name in _RUN_JSON))


_RUN_JSON = ("params", "data_counts", "timings", "metrics", "library_versions", "artefact")


@admin.register(Segment)
class SegmentAdmin(_InsightAdmin):
    list_display = ("name", "run", "size", "profile")
    list_filter = ("run__is_published",)
    search_fields = ("name", "profile")
    list_select_related = ("run",)


@admin.register(CustomerSegment)
class CustomerSegmentAdmin(_InsightAdmin):
    list_display = ("customer", "segment", "run", "distance")
    list_select_related = ("customer", "segment", "run")
    autocomplete_fields = ("customer",)
    raw_id_fields = ("segment", "run")
    search_fields = ("customer__external_id", "customer__name")
    show_full_result_count = False


@admin.register(Forecast)
class ForecastAdmin(_InsightAdmin):
    list_display = ("customer", "run", "expected_purchases", "expected_spend", "churn_probability", "clv",
                    "expected_refund_rate", "basis")
    list_select_related = ("customer", "run")
    empty_value_display = "not forecast"  # a NULL target: not forecast for this data (the run's metrics say why)
    autocomplete_fields = ("customer",)
    raw_id_fields = ("run",)
    search_fields = ("customer__external_id", "customer__name")
    show_full_result_count = False


@admin.register(Suggestion)
class SuggestionAdmin(_InsightAdmin):
    list_display = ("customer", "kind", "rank", "product", "score", "reason", "control", "run")
    list_filter = ("kind", "control")
    list_select_related = ("customer", "product", "run")
    autocomplete_fields = ("customer", "product")
    raw_id_fields = ("run",)
    search_fields = ("customer__external_id", "product__sku")
    show_full_result_count = False


@admin.register(SimilarProduct)
class SimilarProductAdmin(_InsightAdmin):
    list_display = ("product", "rank", "similar", "score", "reason", "run")
    list_select_related = ("product", "similar", "run")
    autocomplete_fields = ("product", "similar")
    raw_id_fields = ("run",)
    show_full_result_count = False


@admin.register(Prospect)
class ProspectAdmin(_InsightAdmin):
    list_display = ("product", "rank", "customer", "score", "reason", "control", "run")
    list_select_related = ("product", "customer", "run")
    autocomplete_fields = ("product", "customer")
    raw_id_fields = ("run",)
    show_full_result_count = False
