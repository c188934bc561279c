"""The admin of webhooks: endpoints (made, changed and deleted through crm.webhooks, so each is
audited and checked like the API's; the secret shown read-only; "send test event") and the
delivery log (read-only; "redeliver"). Registered by crm.admin."""
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.forms import CheckboxSelectMultiple, ModelForm, MultipleChoiceField

from crm import webhooks
from crm.models import WebhookDelivery, WebhookEndpoint
from crm.webhook_models import EVENTS


class WebhookEndpointForm(ModelForm):
    events = MultipleChoiceField(choices=[(e, e) for e in EVENTS], widget=CheckboxSelectMultiple)

    class Meta:
        model = WebhookEndpoint
        fields = ("url", "events", "description", "active")

    def clean(self):
        data = super().clean()
        try:
            webhooks.check_endpoint(data.get("url") or "", data.get("events") or [])
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                if field in self.fields:
                    self.add_error(field, errors)
        return data


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ("url", "description", "events_display", "active", "created_by", "created_at")
    list_filter = ("active",)
    search_fields = ("url", "description")
    list_select_related = ("created_by",)
    readonly_fields = ("secret", "created_by", "created_at", "updated_at")
    actions = ["send_test_event"]

    @admin.display(description="events")
    def events_display(self, obj):
        return ", ".join(obj.events)

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data[name] for name in ("url", "events", "description", "active")}
        if change:
            webhooks.update_endpoint(user=request.user, endpoint=obj, **fields)
        else:
            saved = webhooks.create_endpoint(user=request.user, **fields)
            obj.pk, obj.secret = saved.pk, saved.secret

    def delete_model(self, request, obj):
        webhooks.delete_endpoint(user=request.user, endpoint=obj)

    def delete_queryset(self, request, queryset):
        for endpoint in queryset:
            webhooks.delete_endpoint(user=request.user, endpoint=endpoint)

    @admin.action(description="Send a test event (ping) to the selected endpoints", permissions=["change"])
    def send_test_event(self, request, queryset):
        count = webhooks.send_test_event(user=request.user, endpoints=list(queryset))
        self.message_user(request, f"{count} test event{'s' if count != 1 else ''} queued: see the webhook "
                                   "deliveries for the answers.", messages.SUCCESS)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """The delivery log: every event sent, or waiting to be, per endpoint. Read-only; *Redeliver*
    queues chosen ones again."""

    list_display = ("id", "created_at", "endpoint", "event", "status", "attempts", "last_status_code", "last_error",
                    "next_attempt_at")
    list_filter = ("status", "event", ("endpoint", admin.RelatedOnlyFieldListFilter))
    search_fields = ("event_key",)
    date_hierarchy = "created_at"
    list_select_related = ("endpoint",)
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    actions = ["redeliver"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and obj is None  # the list's action; no field changes

    @admin.action(description="Redeliver the selected deliveries", permissions=["change"])
    def redeliver(self, request, queryset):
        count = webhooks.redeliver(list(queryset))
        self.message_user(request, f"{count} deliver{'ies' if count != 1 else 'y'} queued again.", messages.SUCCESS)
