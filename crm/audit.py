"""The audit trail: who did what to which object, when, from where, without the data itself.

Services call :func:`record` inside the transaction of the change they make, so an event
exists exactly when the change does (a rolled-back change leaves no event, a committed one
always has one). One INSERT per use case: imports and interaction upserts record one event per
batch or run with counts, never one per row; bulk changes of customers (the list's actions, the
API's customer upsert) one event per customer changed, in one INSERT (:func:`record_many`), so
each customer's trail (their personal-data export) names every change. Summaries name fields and counts, never values, so
the trail itself holds no personal data and survives an erasure unchanged.

The request's IP address reaches the services through :class:`AuditContextMiddleware` (a
context variable), so service signatures stay free of HTTP details. It is the login lockout's
address (crm.clientip): REMOTE_ADDR, or past the trusted proxies when TRUSTED_PROXY_COUNT /
TRUSTED_PROXIES say there are some (X-Forwarded-For is never read otherwise: it is spoofable).
"""
from __future__ import annotations

from contextvars import ContextVar

from django.utils import timezone

from crm.clientip import client_ip

_request_ip: ContextVar[str | None] = ContextVar("crm_audit_request_ip", default=None)


class AuditContextMiddleware:
    """Make the client's IP address available to :func:`record` for the length of a request."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _request_ip.set(client_ip(request))
        try:
            return self.get_response(request)
        finally:
            _request_ip.reset(token)


def record(action: str, *, user=None, object_type: str = "", object_id="", customer_id: int | None = None,
           summary: str = ""):
    """Write one audit event (one INSERT). Call it inside the change's ``transaction.atomic``.

    ``user``: the acting user, or None for the system (commands, workers, schedules).
    ``customer_id``: the customer the event is about, if any, so the customer's personal-data
    export can list the events about them. ``summary``: field names and counts only, no values.
    """
    from crm.models import AuditEvent  # at call time: the middleware above loads before the models may

    actor = user if user is not None and getattr(user, "is_authenticated", False) else None
    return AuditEvent.objects.create(
        action=action, actor=actor, actor_username=actor.get_username() if actor else "",
        object_type=object_type, object_id="" if object_id is None else str(object_id), customer_id=customer_id,
        summary=summary[:500], ip=_request_ip.get())


def record_many(action: str, *, user=None, object_type: str, events, at=None) -> int:
    """One audit event per object of a bulk change, in one INSERT: ``events`` are (object id,
    customer id or None, summary). Call it inside the change's ``transaction.atomic``."""
    from crm.models import AuditEvent  # at call time: the middleware above loads before the models may

    actor = user if user is not None and getattr(user, "is_authenticated", False) else None
    at, ip = at or timezone.now(), _request_ip.get()
    # By id and name read once: setting the relation on each row goes through request.user's lazy
    # proxy every time (a second per 10,000 rows).
    actor_id, actor_username = (actor.pk, actor.get_username()) if actor else (None, "")
    rows = [AuditEvent(at=at, action=action, actor_id=actor_id, actor_username=actor_username,
                       object_type=object_type, object_id=str(object_id), customer_id=customer_id,
                       summary=summary[:500], ip=ip) for object_id, customer_id, summary in events]
    return len(AuditEvent.objects.bulk_create(rows, batch_size=1000))


def changed_fields(instance, fields: dict) -> list[str]:
    """Names of the fields in ``fields`` whose new value differs from the instance's current one."""
    return sorted(name for name, value in fields.items() if getattr(instance, name, None) != value)


def record_export(user, what: str, filters: dict | None = None):
    """The audit event of a bulk export: what was exported and which filters were set (names only,
    a search text may be a name)."""
    from crm.models import AuditEvent  # at call time: the middleware above loads before the models may

    used = sorted(k for k, v in (filters or {}).items() if v not in (None, "", [], ()) and k != "ordering")
    return record(AuditEvent.Action.EXPORT, user=user, object_type="export",
                  summary=f"{what} exported" + (f"; filters {', '.join(used)}" if used else "; no filter"))
