"""Webhooks: the subscriber URLs (WebhookEndpoint) and every event sent to them (WebhookDelivery).

A delivery row is the event's job and its log at once: written in the transaction of what the
event is about, claimed by a worker with a conditional UPDATE, retried from ``next_attempt_at``
(so retries survive a worker restart), and unique per endpoint and event key, so one event
reaches one endpoint once. Services: crm.webhooks. Imported by crm.models.
"""
import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q

# The events an endpoint may subscribe to (README, "Webhooks").
RUN_PUBLISHED = "run.published"
CUSTOMER_CHURN_RISK = "customer.churn_risk"
FOLLOWUP_DUE = "followup.due"
EVENTS = (RUN_PUBLISHED, CUSTOMER_CHURN_RISK, FOLLOWUP_DUE)
# Not subscribable: the admin's "send test event" sends it to the chosen endpoints whatever they subscribe to.
PING = "ping"

SECRET_PREFIX = "whsec_"  # noqa: S105  # nosec B105 -- the prefix that marks a webhook secret, not one


def new_secret() -> str:
    """256 random bits, URL-safe: the key receivers check the signature with."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


class WebhookEndpoint(models.Model):
    # Not a URLField: its validator refuses one-word host names (http://crm-hooks:8080/ inside a compose
    # network); crm.webhook_http.check_url is the rule, at every door (crm.webhooks).
    url = models.CharField(max_length=2000, verbose_name="URL", help_text="Where the events are POSTed (http or https).")
    events = models.JSONField(default=list, help_text="The events it receives: " + ", ".join(EVENTS) + ".")
    # Stored as is: signing needs it (an HMAC key cannot be kept as a hash). Shown to admins and
    # managers, never logged nor put in the audit trail.
    secret = models.CharField(max_length=100, default=new_secret, editable=False,
                              help_text="The key of the X-CRM-Signature HMAC; receivers verify with it.")
    active = models.BooleanField(default=True, help_text="Inactive: no new event is queued for it.")
    description = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", db_index=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        verbose_name = "webhook endpoint"

    def __str__(self):
        return self.description or self.url


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"        # waiting for its first attempt or a retry (next_attempt_at)
        DELIVERED = "delivered"    # the receiver answered 2xx
        FAILED = "failed"          # final: a 4xx, a refused URL, or every attempt used

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries",
                                 db_index=False)  # the (endpoint, event_key) constraint's index serves it
    event = models.CharField(max_length=40)
    event_key = models.CharField(max_length=200, help_text="The event's identity, e.g. churn:<run>:<customer>: "
                                                           "one delivery per endpoint and key.")
    occurred_at = models.DateTimeField(help_text="When what the event is about happened (a follow-up's due time).")
    payload = models.JSONField(help_text="The JSON body sent, before signing.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True, help_text="Why the last attempt failed, in one sentence.")
    last_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="Empty once delivered or failed.")
    # The claim (crm.webhooks): a worker sending it holds it until then; one that died is replaced after it.
    locked_until = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True, help_text="When its task was handed to the broker.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "webhook delivery"
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event_key"], name="webhook_delivery_once_per_event"),
            models.CheckConstraint(condition=Q(status__in=["pending", "delivered", "failed"]),
                                   name="webhook_delivery_status_allowed"),
        ]
        indexes = [
            # The sweep: pending ones whose time has come, oldest first.
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="webhook_delivery_due_idx"),
            # An endpoint's log, newest first (the API's deliveries/).
            models.Index(fields=["endpoint", "-id"], name="webhook_delivery_endpoint_idx"),
        ]

    def __str__(self):
        return f"{self.event} #{self.pk} to endpoint {self.endpoint_id} ({self.status})"
