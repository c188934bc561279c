"""The Django admin: every model, with list columns, filters, search and an import page."""
from django import forms
from django.contrib import admin, messages
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from crm import (
    selectors,
    tokens,
    webhook_admin,  # noqa: F401 -- registers the webhook models' admin
)
from crm.access import user_roles
from crm.forms import DATE_FORMAT_CHOICES, import_upload_error
from crm.imports import importer, queue
from crm.models import (
    ROLE_ADMIN,
    ApiToken,
    AuditEvent,
    Customer,
    CustomerTag,
    FollowUp,
    ImportFile,
    ImportRun,
    ImportSource,
    Interaction,
    Product,
    Tag,
)


class RecentInteractionInline(admin.TabularInline):
    model = Interaction
    fields = ("occurred_at", "type", "product", "quantity", "amount", "order_ref", "channel", "notes")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = "Recent interactions (latest 20)"

    def get_queryset(self, request):
        qs = super().get_queryset(request).select_related("product")
        customer_id = request.resolver_match.kwargs.get("object_id") if request.resolver_match else None
        if customer_id is None:
            return qs.none()
        ids = list(qs.filter(customer_id=customer_id).order_by("-occurred_at", "-id").values_list("id", flat=True)[:20])
        return qs.filter(id__in=ids)


class CustomerTagInline(admin.TabularInline):
    model = CustomerTag
    fields = ("tag", "added_by", "added_at")
    readonly_fields = ("added_by", "added_at")
    autocomplete_fields = ("tag",)
    extra = 0
    verbose_name_plural = "Tags"


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("external_id", "name", "company", "email", "country", "city", "owner", "signup_date", "updated_at")
    list_filter = ("owner", "country", "signup_date")
    search_fields = ("external_id", "name", "email", "company", "phone")
    date_hierarchy = "signup_date"
    autocomplete_fields = ("owner",)
    list_select_related = ("owner",)
    readonly_fields = ("created_at", "updated_at")
    inlines = [CustomerTagInline, RecentInteractionInline]
    show_full_result_count = False


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ("name", "customer_count", "created_at")
    search_fields = ("name",)
    readonly_fields = ("created_at",)

    @admin.display(description="customers")
    def customer_count(self, tag):
        return CustomerTag.objects.filter(tag=tag).count()


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("sku", "name", "category", "price", "active", "updated_at")
    list_filter = ("active", "category")
    search_fields = ("sku", "name", "description", "tags")
    readonly_fields = ("created_at", "updated_at")
    show_full_result_count = False


@admin.register(Interaction)
class InteractionAdmin(admin.ModelAdmin):
    list_display = ("occurred_at", "type", "customer", "product", "quantity", "amount", "order_ref", "channel")
    list_filter = ("type", "channel")
    search_fields = ("external_id", "order_ref", "customer__external_id", "customer__name", "product__sku")
    date_hierarchy = "occurred_at"
    autocomplete_fields = ("customer", "product", "created_by")
    list_select_related = ("customer", "product")
    readonly_fields = ("created_at",)
    show_full_result_count = False


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows to look up and filter, never added, changed or deleted here."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(FollowUp)
class FollowUpAdmin(ReadOnlyAdmin):
    """Follow-ups, to look up and filter. Read-only: they are made, completed, cancelled and
    reassigned on the pages and in the API, whose services check the row rule and audit it."""

    list_display = ("due_at", "type", "customer", "owner", "status", "suggestion_kind", "completed_at")
    list_filter = ("status", "type", "suggestion_kind", ("owner", admin.RelatedOnlyFieldListFilter))
    search_fields = ("customer__external_id", "customer__name", "note", "reason")
    date_hierarchy = "due_at"
    list_select_related = ("customer", "owner")
    readonly_fields = [f.name for f in FollowUp._meta.fields]
    show_full_result_count = False


class ImportFileInline(admin.TabularInline):
    model = ImportFile
    fields = ("kind", "filename", "encoding", "delimiter", "column_mapping", "error", "rows_read", "created", "updated",
              "unchanged", "rejected", "warned", "seconds", "rejects")
    readonly_fields = fields
    extra = 0
    can_delete = False

    @admin.display(description="rejected rows")
    def rejects(self, obj):
        if not (obj.rejected or obj.warned):
            return "—"
        url = reverse("admin:crm_importfile_rejects", args=[obj.pk])
        return format_html('<a href="{}">download {} rejected rows and {} warnings</a>', url, obj.rejected, obj.warned)


class ImportUploadForm(forms.Form):
    customers = forms.FileField(required=False, help_text="customers.csv")
    products = forms.FileField(required=False, help_text="products.csv")
    interactions = forms.FileField(required=False, help_text="interactions.csv")
    date_format = forms.ChoiceField(choices=DATE_FORMAT_CHOICES, required=False, help_text="ISO dates always read.")
    source_name = forms.CharField(max_length=100, required=False, label="Source",
                                  help_text="Use (and save) this upload source's column mapping and date format.")
    dry_run = forms.BooleanField(required=False, help_text="Check only: show what would happen, write no data.")

    def clean(self):
        data = super().clean()
        if not any(data.get(k) for k in importer.ORDER):
            raise forms.ValidationError("Choose at least one file.")
        for kind in importer.ORDER:
            error = import_upload_error(kind, data[kind]) if data.get(kind) else None
            if error:
                self.add_error(kind, error)
        return data


@admin.register(ImportRun)
class ImportRunAdmin(admin.ModelAdmin):
    list_display = ("id", "created_at", "user", "source", "outcome", "stage", "rows_done", "duration")
    list_filter = ("status", "dry_run", "source")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in ImportRun._meta.fields]
    inlines = [ImportFileInline]
    change_list_template = "admin/crm/importrun/change_list.html"

    def has_add_permission(self, request):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("files")  # the outcome counts the files' rows

    @admin.display(description="outcome", ordering="status")
    def outcome(self, obj):
        return obj.outcome

    @admin.display(description="seconds")
    def duration(self, obj):
        return f"{obj.duration_seconds:.1f}" if obj.duration_seconds is not None else "—"

    def get_urls(self):
        return [
            path("upload/", self.admin_site.admin_view(self.upload_view), name="crm_importrun_upload"),
            path("rejects/<int:file_id>/", self.admin_site.admin_view(self.rejects_view),
                 name="crm_importfile_rejects"),
            *super().get_urls(),
        ]

    def upload_view(self, request):
        if not request.user.has_perm("crm.add_importrun"):
            raise Http404
        form = ImportUploadForm(request.POST, request.FILES) if request.method == "POST" else ImportUploadForm()
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            uploads = {k: data[k] for k in importer.ORDER if data.get(k)}
            try:
                run = queue.import_uploads(uploads, user=request.user, source="admin", dry_run=data["dry_run"],
                                              date_format=data["date_format"], source_name=data["source_name"].strip())
            except importer.ImportFailed as exc:
                form.add_error(None, str(exc))
            else:
                level = messages.SUCCESS if run.status == ImportRun.Status.SUCCEEDED and not run.dry_run else (
                    messages.INFO if run.dry_run else messages.WARNING)
                self.message_user(request, f"{'Dry run' if run.dry_run else 'Import'} #{run.pk} {run.outcome}: "
                                           f"{importer.summary(run)}", level)
                return redirect("admin:crm_importrun_change", run.pk)
        context = {**self.admin_site.each_context(request), "form": form, "title": "Import CSV files",
                   "opts": self.model._meta}
        return TemplateResponse(request, "admin/crm/importrun/upload.html", context)

    def rejects_view(self, request, file_id):
        result = get_object_or_404(ImportFile, pk=file_id)
        report = selectors.import_report(result)
        if report is None:
            raise Http404("No rejected rows are kept for this file.")
        return FileResponse(report[0], as_attachment=True, filename=report[1], content_type="text/csv")


@admin.register(ImportSource)
class ImportSourceAdmin(admin.ModelAdmin):
    """Upload sources: the column mapping and date format their files need (saved by imports)."""

    list_display = ("name", "date_format", "updated_at", "updated_by")
    search_fields = ("name",)
    readonly_fields = ("updated_at", "updated_by")


@admin.register(ImportFile)
class ImportFileAdmin(admin.ModelAdmin):
    list_display = ("run", "kind", "filename", "rows_read", "created", "updated", "unchanged", "rejected")
    list_filter = ("kind",)
    readonly_fields = [f.name for f in ImportFile._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit trail: admins read it; nobody adds, changes or deletes events here. Managers are not
    staff, and one an admin makes staff by hand does not see it either (it records what they did)."""

    list_display = ("at", "actor_display", "action", "object_type", "object_id", "summary", "ip")
    list_filter = ("action", "at", "object_type", ("actor", admin.RelatedOnlyFieldListFilter))
    search_fields = ("actor_username", "object_id", "summary")
    date_hierarchy = "at"
    readonly_fields = [f.name for f in AuditEvent._meta.fields]
    show_full_result_count = False

    @admin.display(description="actor", ordering="actor_username")
    def actor_display(self, obj):
        return obj.actor_username or "system"

    def _is_admin(self, request):
        return request.user.is_active and ROLE_ADMIN in user_roles(request.user)

    def has_module_permission(self, request):
        return self._is_admin(request)

    def has_view_permission(self, request, obj=None):
        return self._is_admin(request)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """API tokens of every user: listed (never their hash), revoked with the action. They are made
    by their owners (account page, POST /api/v1/auth/token/), who alone see the key, once."""

    list_display = ("name", "user", "prefix_display", "scope", "own_customers_only", "created_at", "expires_at",
                    "last_used_at", "revoked_at")
    list_filter = ("scope", "own_customers_only", ("revoked_at", admin.EmptyFieldListFilter), "expires_at")
    search_fields = ("name", "user__username", "prefix")
    list_select_related = ("user",)
    fields = ("name", "user", "prefix", "scope", "own_customers_only", "created_at", "expires_at", "last_used_at",
              "revoked_at")
    readonly_fields = fields
    actions = ["revoke"]
    show_full_result_count = False

    @admin.display(description="key", ordering="prefix")
    def prefix_display(self, obj):
        return f"{obj.prefix}…"

    @admin.action(description="Revoke the selected API tokens", permissions=["change"])
    def revoke(self, request, queryset):
        count = tokens.revoke_tokens(request.user, queryset)
        self.message_user(request, f"{count} API token{'s' if count != 1 else ''} revoked: requests with "
                                   f"{'them' if count != 1 else 'it'} are refused from now on.", messages.SUCCESS)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and obj is None  # the list's action; no field changes
