"""Webhooks: endpoints, the events queued for them, signing, and delivery with retries.

- **queue**: :func:`enqueue` writes one WebhookDelivery per active endpoint subscribed to the
  event, in the caller's transaction (the event exists exactly when what it is about does), and
  asks for a send when that commits. The key (``event_key``) is unique per endpoint: the same
  event queued twice is one delivery.
- **send**: :func:`send_due` (beat's sweep, and after each commit that queued events) hands
  every delivery whose time has come to a worker, by task name (``crm.deliver_webhook``).
- **deliver**: :func:`deliver` claims the row with a conditional UPDATE (pending, due, not held
  by another worker), POSTs it signed (crm.webhook_http), and records the outcome. A 2xx is
  delivered; a network error, 5xx, 408 or 429 is tried again after :data:`BACKOFF`, up to
  WEBHOOK_MAX_ATTEMPTS; anything else is final. The next try is a time in the row, so retries
  survive a worker restart.

Events about ml's runs are queued by ml (ml.run_events); crm never imports ml.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import UTC, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnreachable

from crm import audit, webhook_http
from crm.celery import app as celery_app
from crm.followups import due_between
from crm.models import AuditEvent, WebhookDelivery, WebhookEndpoint
from crm.webhook_models import EVENTS, FOLLOWUP_DUE, PING, new_secret

log = logging.getLogger(__name__)
Status = WebhookDelivery.Status

SIGNATURE_HEADER = "X-CRM-Signature"
# Seconds to wait after attempt n (1-based) failed: n=1 -> 1 min, ... then 12 h until the last attempt.
BACKOFF = (60, 300, 1800, 7200, 21600, 43200)
# A receiver's Retry-After is followed up to this (a day), never beyond.
MAX_RETRY_AFTER = 86400
# A worker holds a claimed delivery this long: far above one attempt (connect + read timeouts), so
# only a worker that died loses it to another.
LEASE = timedelta(minutes=5)
# A due delivery handed to the broker this long ago and still not attempted may have lost its
# message: it is sent again (a duplicate message is harmless, the claim is conditional).
REDISPATCH_AFTER = timedelta(minutes=5)
# Deliveries handed to the broker per sweep: beyond it, the next sweep (or the next commit) goes on.
SEND_BATCH = 2000
# Rows per INSERT when an event fans out (a churn crossing of many customers): a few hundred KB each.
INSERT_BATCH = 1000
# Follow-ups are sent when due time has come, looking back this far: beat and the workers may be
# down up to a day and nothing is lost; older due times are not sent (a flood of stale reminders
# helps nobody).
FOLLOWUP_LOOKBACK = timedelta(days=1)


# --- endpoints -------------------------------------------------------------------------------------

def check_endpoint(url: str, events) -> list[str]:
    """The events, without repeats, if ``url`` may receive them: ValidationError naming the field if not."""
    try:
        webhook_http.check_url(url, allow_private=settings.WEBHOOK_ALLOW_PRIVATE)
    except webhook_http.UnsafeURL as exc:
        raise ValidationError({"url": str(exc)}) from None
    events = list(dict.fromkeys(events or []))
    unknown = [e for e in events if e not in EVENTS]
    if unknown or not events:
        raise ValidationError({"events": f"choose one or more of {', '.join(EVENTS)}"
                                         + (f" (unknown: {', '.join(unknown)})" if unknown else "")})
    return events


def create_endpoint(*, user, url: str, events, description: str = "", active: bool = True) -> WebhookEndpoint:
    """A new endpoint with a new secret (read it from the returned row: the API shows it with the
    answer, the admin on the endpoint's page). Audited (the URL's host, never the secret)."""
    endpoint = WebhookEndpoint(url=url, events=check_endpoint(url, events), description=description, active=active,
                               created_by=user if getattr(user, "is_authenticated", False) else None)
    endpoint.full_clean(exclude=["created_by"])
    with transaction.atomic():
        endpoint.save()
        _audit(AuditEvent.Action.CREATE, user, endpoint, "created")
    return endpoint


def update_endpoint(*, user, endpoint: WebhookEndpoint, **fields) -> WebhookEndpoint:
    """Change ``url``, ``events``, ``description``, ``active``; ``roll_secret=True`` makes a new secret."""
    roll = fields.pop("roll_secret", False)
    unknown = set(fields) - {"url", "events", "description", "active"}
    if unknown:
        raise ValueError(f"cannot change {', '.join(sorted(unknown))}")
    fields["events"] = check_endpoint(fields.get("url", endpoint.url), fields.get("events", endpoint.events))
    changed = audit.changed_fields(endpoint, fields) + (["secret"] if roll else [])
    for name, value in fields.items():
        setattr(endpoint, name, value)
    if roll:
        endpoint.secret = new_secret()
    endpoint.full_clean(exclude=["created_by"])
    with transaction.atomic():
        endpoint.save()
        if changed:
            _audit(AuditEvent.Action.UPDATE, user, endpoint, f"changed: fields {', '.join(changed)}")
    return endpoint


def delete_endpoint(*, user, endpoint: WebhookEndpoint) -> None:
    """Delete an endpoint and its delivery log (nothing more is sent to it). Audited."""
    with transaction.atomic():
        _audit(AuditEvent.Action.DELETE, user, endpoint, "deleted with its deliveries")
        endpoint.delete()


def _audit(action, user, endpoint: WebhookEndpoint, what: str) -> None:
    host = (urlsplit(endpoint.url).hostname or "")[:100]
    audit.record(action, user=user, object_type="webhook_endpoint", object_id=endpoint.pk,
                 summary=f"webhook endpoint {endpoint.pk} ({host}) {what}; events {', '.join(endpoint.events)}")


# --- queueing events ---------------------------------------------------------------------------------

def subscribers(event: str) -> list[tuple[int, object]]:
    """(id, created_at) of the active endpoints subscribed to ``event``. Endpoints are few (one per
    integration), so the subscription list is read and matched here, the same on every database."""
    return [(pk, created) for pk, created, events in
            WebhookEndpoint.objects.filter(active=True).values_list("pk", "created_at", "events") if event in events]


def envelope(event: str, key: str, data: dict, at=None) -> dict:
    """The body of every webhook: ``{"id", "event", "created_at", "data"}``; ``id`` is the event's key,
    the same in each retry and redelivery."""
    return {"id": key, "event": event, "created_at": (at or timezone.now()).astimezone(UTC).isoformat(), "data": data}


def enqueue(event: str, items, *, endpoints=None) -> int:
    """Queue ``items`` (an iterable of ``(event key, data, occurred_at or None)``) of ``event`` for
    every active endpoint subscribed to it (``endpoints``: these ids instead, whatever they
    subscribe to): one delivery per endpoint and key, so a key queued before is skipped. An
    endpoint made after ``occurred_at`` does not get that event. Call it inside the transaction of
    what the events are about; the sends start when it commits. Returns the deliveries queued."""
    targets = ([(pk, None) for pk in endpoints] if endpoints is not None else subscribers(event))
    if not targets:
        return 0
    now, queued, batch = timezone.now(), 0, []
    for key, data, occurred_at in items:
        body = envelope(event, key, data, now)
        for pk, created in targets:
            if occurred_at is None or created is None or occurred_at >= created:
                batch.append(WebhookDelivery(endpoint_id=pk, event=event, event_key=key, payload=body,
                                             occurred_at=occurred_at or now, next_attempt_at=now))
        if len(batch) >= INSERT_BATCH:
            queued += _insert_new(batch)
            batch = []
    queued += _insert_new(batch)
    if queued:
        transaction.on_commit(request_send)
    return queued


def _insert_new(rows: list[WebhookDelivery]) -> int:
    """Insert the rows whose (endpoint, key) is not stored yet: one read and one INSERT per batch.
    The unique constraint settles a race with another process queueing the same event."""
    if not rows:
        return 0
    stored = set(WebhookDelivery.objects.filter(endpoint_id__in={r.endpoint_id for r in rows},
                                                event_key__in={r.event_key for r in rows}).values_list(
        "endpoint_id", "event_key"))
    new = list({(r.endpoint_id, r.event_key): r for r in rows if (r.endpoint_id, r.event_key) not in stored}.values())
    WebhookDelivery.objects.bulk_create(new, batch_size=INSERT_BATCH, ignore_conflicts=True)
    return len(new)


def request_send() -> None:
    """Ask a worker to send the due deliveries now (crm.send_webhooks); with the broker down, beat's
    sweep sends them once it is back."""
    try:
        celery_app.send_task("crm.send_webhooks")
    except BrokerUnreachable as exc:
        log.warning("broker unreachable, webhooks are sent by the next sweep: %s", exc)


def followup_data(followup) -> dict:
    return {"followup": followup.pk, "type": followup.type, "due_at": followup.due_at.astimezone(UTC).isoformat(),
            "note": followup.note, "owner": followup.owner.get_username(),
            "customer": {"id": followup.customer_id, "external_id": followup.customer.external_id,
                         "name": followup.customer.name}}


def queue_due_followups(now=None) -> int:
    """Queue ``followup.due`` for every open follow-up whose due time has come (up to
    :data:`FOLLOWUP_LOOKBACK` back). The key holds the due time: a follow-up moved to a later time
    fires again when that comes, never twice for the same time. Returns the deliveries queued."""
    now = now or timezone.now()
    if not subscribers(FOLLOWUP_DUE):
        return 0
    items = ((f"followup:{f.pk}:{f.due_at.astimezone(UTC).isoformat()}", followup_data(f), f.due_at)
             for f in due_between(now - FOLLOWUP_LOOKBACK, now))
    with transaction.atomic():
        return enqueue(FOLLOWUP_DUE, items)


def send_test_event(*, user, endpoints) -> int:
    """Queue a ``ping`` to each endpoint (the admin's "send test event"), a new event each time."""
    stamp = timezone.now()
    data = {"message": "A test event from the CRM's webhook settings.",
            "sent_by": user.get_username() if getattr(user, "is_authenticated", False) else ""}
    with transaction.atomic():
        return enqueue(PING, [(f"ping:{stamp.timestamp():.6f}", data, None)], endpoints=[e.pk for e in endpoints])


def redeliver(deliveries) -> int:
    """Queue the chosen deliveries again, delivered or failed ones too, with their attempts reset:
    the same body and delivery id (receivers that saw it may recognise it). Returns how many."""
    with transaction.atomic():
        count = WebhookDelivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(
            status=Status.PENDING, attempts=0, next_attempt_at=timezone.now(), locked_until=None, dispatched_at=None,
            delivered_at=None)
        if count:
            transaction.on_commit(request_send)
    return count


# --- sending -----------------------------------------------------------------------------------------

def _due(now):
    return WebhookDelivery.objects.filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now),
                                          status=Status.PENDING, next_attempt_at__lte=now)


def send_due(now=None, limit: int = SEND_BATCH) -> list[int]:
    """Hand each due delivery to a worker (``crm.deliver_webhook``), once: ``dispatched_at`` is taken
    with a conditional UPDATE, and taken again only after :data:`REDISPATCH_AFTER`. Stops at the
    first failed send (the broker is down). Returns the ids sent."""
    now = now or timezone.now()
    # A worker that died during the last allowed attempt leaves a row nobody would ever finish.
    _due(now).filter(attempts__gte=settings.WEBHOOK_MAX_ATTEMPTS).update(
        status=Status.FAILED, next_attempt_at=None, locked_until=None,
        last_error="the worker making the last attempt stopped before it finished")
    unsent = Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=now - REDISPATCH_AFTER)
    sent = []
    for pk in _due(now).filter(unsent).order_by("next_attempt_at", "pk").values_list("pk", flat=True)[:limit]:
        if not _due(now).filter(unsent, pk=pk).update(dispatched_at=now):
            continue  # another sweep took it
        try:
            celery_app.send_task("crm.deliver_webhook", args=[pk])
        except BrokerUnreachable as exc:
            WebhookDelivery.objects.filter(pk=pk).update(dispatched_at=None)
            log.warning("broker unreachable, webhook delivery #%s waits for the next sweep: %s", pk, exc)
            break
        sent.append(pk)
    return sent


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The X-CRM-Signature value: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, *, tolerance: int = 300, now: float | None = None) -> bool:
    """What a receiver does (README, "Webhooks"): the signature matches and is at most ``tolerance``
    seconds old (a replayed request is refused)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    fresh = abs((now if now is not None else time.time()) - timestamp) <= tolerance
    return fresh and hmac.compare_digest(expected, parts.get("v1", ""))


def body_of(delivery: WebhookDelivery) -> bytes:
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()


def _claim(pk: int, now) -> object | None:
    """Take delivery ``pk`` for one attempt: the lease's end, or None if it is not due, delivered,
    failed or held by another worker (a conditional UPDATE: one claimer wins)."""
    until = now + LEASE
    claimed = _due(now).filter(pk=pk, attempts__lt=settings.WEBHOOK_MAX_ATTEMPTS).update(
        locked_until=until, attempts=F("attempts") + 1, last_attempt_at=now)
    return until if claimed else None


def _wait_after(attempt: int, retry_after: int | None) -> timedelta:
    seconds = BACKOFF[min(attempt, len(BACKOFF)) - 1]
    if retry_after:
        seconds = max(seconds, min(retry_after, MAX_RETRY_AFTER))
    return timedelta(seconds=seconds)


def deliver(delivery_id: int, now=None) -> WebhookDelivery | None:
    """Make one attempt at a due delivery: the row after it, or None when there was nothing to do
    (not due, done already, or another worker has it: a redelivered task is harmless)."""
    now = now or timezone.now()
    lease = _claim(delivery_id, now)
    if lease is None:
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    if not endpoint.active:
        outcome = webhook_http.Result(None, "not sent: the endpoint was deactivated", False, None, 0)
    else:
        body, stamp = body_of(delivery), int(time.time())
        headers = {"Content-Type": "application/json", "User-Agent": "CRM-Webhooks/1",
                   "X-CRM-Event": delivery.event, "X-CRM-Delivery": str(delivery.pk),
                   SIGNATURE_HEADER: sign(endpoint.secret, stamp, body)}
        outcome = webhook_http.post(endpoint.url, body, headers, timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
                                    allow_private=settings.WEBHOOK_ALLOW_PRIVATE)
    finished = timezone.now()
    fields = {"last_status_code": outcome.status, "last_error": outcome.error, "last_duration_ms": outcome.duration_ms,
              "locked_until": None, "dispatched_at": None}
    if outcome.status is not None and 200 <= outcome.status < 300:
        fields.update(status=Status.DELIVERED, next_attempt_at=None, delivered_at=finished)
    elif outcome.retry and delivery.attempts < settings.WEBHOOK_MAX_ATTEMPTS:
        fields.update(next_attempt_at=finished + _wait_after(delivery.attempts, outcome.retry_after))
    else:
        if outcome.retry:
            fields["last_error"] = f"{outcome.error} (gave up after {delivery.attempts} attempts)"[:300]
        fields.update(status=Status.FAILED, next_attempt_at=None)
    # Only while this attempt still holds the row: one taken over after the lease is the new holder's.
    WebhookDelivery.objects.filter(pk=delivery_id, locked_until=lease).update(**fields)
    delivery.refresh_from_db()
    return delivery


def sweep(now=None) -> dict:
    """Beat, every WEBHOOK_SWEEP_SECONDS: queue the follow-ups that came due, then send what is due."""
    return {"followups_queued": queue_due_followups(now), "sent": send_due(now)}
