"""Follow-ups (crm.FollowUp): making, completing, cancelling, reassigning and changing them, and
the reads of what is coming due.

Who sees and acts on which follow-up is crm.access's rule (:func:`crm.access.visible_followups`):
a sales rep their own, of customers they see; managers and admins the team's, and only they give
one to someone else. Each write is one transaction with its audit event (crm.audit). Completing a
call, e-mail or meeting logs that interaction (a to-do logs a note) through
crm.interactions.log_interaction, dated at completion: a follow-up never makes a future-dated
interaction, and the planned date stays on the follow-up.
"""
from __future__ import annotations

from datetime import datetime, time, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from crm import audit, limits
from crm.access import (
    NotAllowed,
    check_followup_owner,
    check_manager,
    check_visible,
    is_staff_member,
    visible_followups,
)
from crm.interactions import log_interaction
from crm.models import AuditEvent, Customer, FollowUp, Interaction

# What completing each type of follow-up logs.
LOGS = {FollowUp.Type.CALL: Interaction.Type.CALL, FollowUp.Type.EMAIL: Interaction.Type.EMAIL,
        FollowUp.Type.MEETING: Interaction.Type.MEETING, FollowUp.Type.TODO: Interaction.Type.NOTE}

# Fields a change (the API's PATCH) may set; the owner goes through the manager's reassign rule.
CHANGEABLE = ("due_at", "type", "note")


class FollowUpClosed(Exception):
    """The follow-up is already done or cancelled: it cannot be completed, cancelled or changed again."""


# --- due presets ---------------------------------------------------------------------------------

# "Today" is due at the end of the working day, or within the hour when that has passed.
END_OF_WORKING_DAY = time(17, 0)
# "Tomorrow" and "next week" start the day with it.
START_OF_WORKING_DAY = time(9, 0)
PRESETS = ("today", "tomorrow", "next_week")


def _local(day, at: time) -> datetime:
    return timezone.make_aware(datetime.combine(day, at))


def preset_due(preset: str, now: datetime | None = None) -> datetime:
    """The due time (aware) a preset stands for, in the site's TIME_ZONE: ``today`` 17:00 (or an
    hour from now once that has passed, never past midnight), ``tomorrow`` 09:00, ``next_week``
    next Monday 09:00."""
    now = timezone.localtime(now or timezone.now())
    today = now.date()
    if preset == "today":
        latest = _local(today, time(23, 59, 59))
        return max(_local(today, END_OF_WORKING_DAY), min(now + timedelta(hours=1), latest))
    if preset == "tomorrow":
        return _local(today + timedelta(days=1), START_OF_WORKING_DAY)
    if preset == "next_week":
        return _local(today + timedelta(days=7 - today.weekday()), START_OF_WORKING_DAY)
    raise ValueError(f"unknown preset {preset!r}")


# --- writes --------------------------------------------------------------------------------------

def _check_text(name: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise ValidationError({name: f"at most {limit:,} characters (this has {len(value):,})"})


def _check_due(due_at) -> None:
    if due_at is None or timezone.is_naive(due_at):
        raise ValidationError({"due_at": "a date and time with its time zone is required"})


def _audit(action, user, followup: FollowUp, what: str) -> None:
    audit.record(action, user=user, object_type="followup", object_id=followup.pk, customer_id=followup.customer_id,
                 summary=f"follow-up {followup.pk} of customer {followup.customer_id} {what}")


def default_owner(user, customer: Customer):
    """The customer's owner when they are an active user with a CRM role, else the user making it."""
    owner = customer.owner
    return owner if owner is not None and owner.is_active and is_staff_member(owner) else user


def create_followup(*, user, customer: Customer, due_at, type: str = FollowUp.Type.CALL, note: str = "",
                    owner=None, product=None, suggestion_kind: str = "", reason: str = "") -> FollowUp:
    """Make a follow-up on a customer the user sees, due at ``due_at`` (aware; the past is allowed:
    it is then overdue). ``owner``: default :func:`default_owner`; someone else than the user only
    for a manager. ``product`` + ``suggestion_kind``: the suggestion it was made from; ``reason``:
    the worklist line it was made from."""
    check_visible(user, customer, "you cannot make follow-ups on this customer")
    owner = owner or default_owner(user, customer)
    check_followup_owner(user, owner, customer)
    _check_due(due_at)
    _check_text("note", note, limits.FOLLOWUP["note"])
    if suggestion_kind and product is None:
        raise ValidationError({"product": "a follow-up made from a suggestion names the suggested product"})
    followup = FollowUp(customer=customer, owner=owner, due_at=due_at, type=type, note=note, product=product,
                        suggestion_kind=suggestion_kind, reason=reason[:limits.FOLLOWUP["reason"]], created_by=user)
    followup.full_clean(exclude=["interaction", "completed_by"])
    with transaction.atomic():
        followup.save()
        _audit(AuditEvent.Action.CREATE, user, followup,
               f"created: {followup.type}" + (f", from a {suggestion_kind} suggestion" if suggestion_kind
                                              else ", from a worklist" if reason else ""))
    return followup


def _open_followup(user, followup: FollowUp) -> FollowUp:
    """The follow-up locked for this change, if the user may act on it and it is still open."""
    locked = visible_followups(user).select_for_update(of=("self",)).filter(pk=followup.pk).first()
    if locked is None:
        raise NotAllowed("you cannot act on this follow-up")
    if not locked.is_open:
        raise FollowUpClosed(f"this follow-up is already {locked.status}")
    return locked


def complete_followup(*, user, followup: FollowUp, outcome: str = "") -> FollowUp:
    """Mark a follow-up done and log what it was (a call, e-mail, meeting; a note for a to-do) on
    its customer, now, with the follow-up's note and the ``outcome``: both or neither, in one
    transaction. The interaction's key is ``followup-<id>``, so a follow-up logs at most one
    whatever happens. Returns the follow-up, with ``interaction`` set."""
    _check_text("outcome", outcome, limits.FOLLOWUP["outcome"])
    with transaction.atomic():
        followup = _open_followup(user, followup)
        now = timezone.now()
        notes = "\n\n".join(part for part in (followup.note, f"Outcome: {outcome}" if outcome else "") if part)
        followup.status, followup.completed_at, followup.completed_by = FollowUp.Status.DONE, now, user
        followup.save(update_fields=["status", "completed_at", "completed_by"])
        followup.interaction = log_interaction(user=user, customer=followup.customer, type=LOGS[followup.type],
                                               occurred_at=now, notes=notes, channel="follow-up",
                                               external_id=f"followup-{followup.pk}")
        followup.save(update_fields=["interaction"])
        interaction = followup.interaction
        _audit(AuditEvent.Action.COMPLETE, user, followup, f"completed: {interaction.type} {interaction.pk} logged")
    return followup


def cancel_followup(*, user, followup: FollowUp) -> FollowUp:
    """Cancel an open follow-up (nothing is logged)."""
    with transaction.atomic():
        followup = _open_followup(user, followup)
        followup.status, followup.completed_at, followup.completed_by = FollowUp.Status.CANCELLED, timezone.now(), user
        followup.save(update_fields=["status", "completed_at", "completed_by"])
        _audit(AuditEvent.Action.CANCEL, user, followup, "cancelled")
    return followup


def reassign_followup(*, user, followup: FollowUp, owner) -> FollowUp:
    """Give an open follow-up to another active rep or manager who sees its customer (managers)."""
    return update_followup(user=user, followup=followup, owner=owner)


def update_followup(*, user, followup: FollowUp, **fields) -> FollowUp:
    """Change an open follow-up's ``due_at``, ``type``, ``note`` and (managers) ``owner``, audited
    as a change and, for a new owner, as a reassignment."""
    unknown = set(fields) - {*CHANGEABLE, "owner"}
    if unknown:
        raise ValueError(f"cannot change {', '.join(sorted(unknown))}")
    if "due_at" in fields:
        _check_due(fields["due_at"])
    if "note" in fields:
        _check_text("note", fields["note"], limits.FOLLOWUP["note"])
    with transaction.atomic():
        followup = _open_followup(user, followup)
        owner = fields.pop("owner", followup.owner)
        reassigned = owner is not None and owner.pk != followup.owner_id
        if reassigned:
            check_manager(user, "only managers and admins reassign follow-ups")
            check_followup_owner(user, owner, followup.customer)
        changed = audit.changed_fields(followup, fields)
        for name, value in fields.items():
            setattr(followup, name, value)
        if reassigned:
            followup.owner = owner
        followup.full_clean(exclude=["interaction", "completed_by", "customer", "owner", "product", "created_by"])
        followup.save()
        if reassigned:
            _audit(AuditEvent.Action.REASSIGN, user, followup, "reassigned: owner changed")
        if changed:
            _audit(AuditEvent.Action.UPDATE, user, followup, f"changed: fields {', '.join(changed)}")
    return followup


# --- reads ---------------------------------------------------------------------------------------

ORDERING = ("due_at", "id")  # never NULL, ends unique: keyset pages (crm.keyset)


def followup_list(user, *, mine: bool = True, status: str = FollowUp.Status.OPEN, overdue: bool = False,
                  customer: int | None = None, owner=None, due_after=None, due_before=None,
                  now: datetime | None = None) -> QuerySet:
    """The follow-ups this user sees, by due date: ``mine`` only their own (a rep's are always
    only theirs), ``owner`` only that user's, ``status`` one status ("" for all), ``overdue`` open
    ones due before now, ``customer`` one customer's, ``due_after`` / ``due_before`` a window
    (from inclusive, to exclusive)."""
    rows = visible_followups(user)
    if mine:
        rows = rows.filter(owner=user)
    if owner is not None:
        rows = rows.filter(owner=owner)
    if status:
        rows = rows.filter(status=status)
    if overdue:
        rows = rows.filter(status=FollowUp.Status.OPEN, due_at__lt=now or timezone.now())
    if customer is not None:
        rows = rows.filter(customer_id=customer)
    if due_after is not None:
        rows = rows.filter(due_at__gte=due_after)
    if due_before is not None:
        rows = rows.filter(due_at__lt=due_before)
    return rows.select_related("customer", "owner", "product").order_by(*ORDERING)


# Rows per group of the home page's "My follow-ups": a screen's worth; /follow-ups/ has them all.
HOME_GROUP_SIZE = 10


def due_groups(user, *, team: bool = False, now: datetime | None = None, size: int = HOME_GROUP_SIZE) -> dict:
    """The open follow-ups of the home page: {"overdue", "today", "week"} -> (up to ``size`` rows,
    how many in all). Overdue: due before now; today: from now to midnight; week: the 7 days after
    today (site TIME_ZONE). ``team``: everyone's a manager sees, else the user's own."""
    now = now or timezone.now()
    midnight = _local(timezone.localtime(now).date() + timedelta(days=1), time.min)
    rows = followup_list(user, mine=not team)
    windows = {"overdue": rows.filter(due_at__lt=now), "today": rows.filter(due_at__gte=now, due_at__lt=midnight),
               "week": rows.filter(due_at__gte=midnight, due_at__lt=midnight + timedelta(days=7))}
    out = {}
    for name, window in windows.items():
        listed = list(window[:size + 1])
        out[name] = (listed[:size], len(listed) if len(listed) <= size else window.count())
    return out


def open_followups_of(user, customer: Customer) -> list:
    """A customer's open follow-ups the user sees (the customer page's list)."""
    return list(followup_list(user, mine=False, customer=customer.pk))


def due_between(start: datetime, end: datetime, *, chunk_size: int = 500):
    """Open follow-ups (everyone's) due from ``start`` (inclusive) to ``end`` (exclusive), by due
    date, with customer and owner: for the system (a "follow-up due" webhook or reminder
    schedule), so no user's row rule applies. Read in chunks, never all at once."""
    return (FollowUp.objects.filter(status=FollowUp.Status.OPEN, due_at__gte=start, due_at__lt=end)
            .select_related("customer", "owner").order_by(*ORDERING).iterator(chunk_size=chunk_size))
