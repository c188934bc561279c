"""The second factor (django-otp): who must have one, enrolment, recovery codes, and the one
check every door makes of a code.

A user's second factor is one TOTP device (an authenticator app) plus one static device holding
ten one-time recovery codes. Admins and managers (superusers count as admins) must have a
confirmed TOTP device; with ``REQUIRE_2FA_FOR_ALL`` everyone signed in must. A user who has a
device must pass it at every sign-in, whether or not their role needs it.

Codes are checked only by :func:`check_code`: inside one transaction, with the device locked,
counting a wrong code against the device's throttle (django-otp's ThrottlingMixin: after n wrong
codes in a row the next try is refused until 2^(n-1) seconds have passed) and writing an
``otp_failure`` audit event, so a guesser is slowed down and seen.
"""
from __future__ import annotations

import math

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from crm import access, audit
from crm.models import AuditEvent

RECOVERY_CODE_COUNT = 10  # enough for a lost phone and several sign-ins until a new one is enrolled
TOTP_NAME = "authenticator"
RECOVERY_NAME = "recovery codes"


class CodeRefused(Exception):
    """The code was missing, wrong, already used, or the device is throttled (the message says which)."""


class AlreadyEnrolled(Exception):
    """The user already has a confirmed authenticator: disable it first to enrol another."""


# --- who must, and what a session still owes ------------------------------------------------------

def required(user) -> bool:
    """Whether the user must have a confirmed authenticator: admins and managers, or everyone
    signed in when ``REQUIRE_2FA_FOR_ALL`` is on."""
    if not user.is_authenticated:
        return False
    return settings.REQUIRE_2FA_FOR_ALL or access.is_manager(user)


def authenticator(user, *, confirmed: bool = True) -> TOTPDevice | None:
    return TOTPDevice.objects.devices_for_user(user, confirmed=confirmed).order_by("pk").first()


def has_authenticator(user) -> bool:
    """Whether the user has a confirmed authenticator; asked once per request (kept on the user
    object, as crm.access keeps the roles), since the gate asks on every request."""
    cached = getattr(user, "_crm_has_authenticator", None)
    if cached is None:
        cached = user._crm_has_authenticator = TOTPDevice.objects.devices_for_user(user, confirmed=True).exists()
    return cached


def pending_step(user) -> str | None:
    """What a signed-in session that has not passed a second factor must do before anything else:
    ``"verify"`` (the user has an authenticator), ``"enrol"`` (they must have one and have none),
    or None (nothing: a user who needs no second factor and has none)."""
    if not user.is_authenticated or user.is_verified():
        return None
    if has_authenticator(user):
        return "verify"
    return "enrol" if required(user) else None


def status(user) -> dict:
    """For the account page: enrolled or not, required or not, recovery codes left."""
    enrolled = has_authenticator(user)
    left = StaticToken.objects.filter(device__user=user, device__confirmed=True).count() if enrolled else 0
    return {"enrolled": enrolled, "required": required(user), "recovery_left": left}


# --- checking a code ----------------------------------------------------------------------------

def _normalise(code) -> str:
    return "".join(str(code or "").split()).replace("-", "").lower()


def _is_totp_code(code: str) -> bool:
    return code.isdigit() and len(code) == 6


def check_code(user, code, *, purpose: str, device: Device | None = None) -> Device:
    """Check ``code``, a current authenticator code (6 digits) or an unused recovery code, for ``user``.

    ``purpose`` names the door in the audit trail (``sign-in``, ``api token``, ...). ``device``
    checks against that device only (enrolment: the unconfirmed authenticator being set up).
    Returns the device that accepted the code; a recovery code is used up. Raises CodeRefused with
    a message for the user. An empty code is refused without counting; a wrong or throttled one is
    counted (django-otp's throttle) and recorded as an ``otp_failure`` event.
    """
    code = _normalise(code)
    if not code:
        raise CodeRefused("Enter the code from your authenticator app, or a recovery code.")
    refusal = None
    with transaction.atomic():  # the throttle count and the event are committed with the refusal
        if device is not None:
            found = type(device).objects.select_for_update().filter(pk=device.pk, user=user).first()
        elif _is_totp_code(code):
            found = TOTPDevice.objects.devices_for_user(user, confirmed=True).select_for_update().order_by("pk").first()
        else:
            found = StaticDevice.objects.devices_for_user(user, confirmed=True).select_for_update().first()
        if found is None:
            refusal, summary = "That code is not right.", f"{purpose}: no device for this kind of code"
        else:
            allowed, why = found.verify_is_allowed()
            if not allowed:
                locked_until = (why or {}).get("locked_until") or timezone.now()
                wait = max(1, math.ceil((locked_until - timezone.now()).total_seconds()))
                refusal = f"Too many wrong codes: try again in {wait} s."
                summary = f"{purpose}: refused by the throttle after {found.throttling_failure_count} wrong codes"
            elif not found.verify_token(code):
                refusal = "That code is not right, or it was already used."
                summary = f"{purpose}: wrong code ({found.throttling_failure_count} in a row)"
            elif isinstance(found, StaticDevice):
                audit.record(AuditEvent.Action.OTP_RECOVERY_USED, user=user, object_type="otp_device",
                             object_id=found.persistent_id,
                             summary=f"{purpose}: recovery code used; {found.token_set.count()} left")
        if refusal:
            audit.record(AuditEvent.Action.OTP_FAILURE, user=user, object_type="otp_device",
                         object_id=found.persistent_id if found else "", summary=summary)
    if refusal:
        raise CodeRefused(refusal)
    return found


def check_api_sign_in(user, code) -> None:
    """The token endpoint's second step, after the password: a user with an authenticator must
    send a current code (or a recovery code) as ``otp``; a user who must have one and has none is
    refused (enrolment happens on the account page). Raises ValidationError naming ``otp`` (400)."""
    if not has_authenticator(user):
        if required(user):
            raise ValidationError({"otp": "Your role needs a second factor: sign in on the web site and set up "
                                          "an authenticator on the Account page first."})
        return
    if not _normalise(code):
        raise ValidationError({"otp": "This account has a second factor: send the current code from the "
                                      "authenticator app (or a recovery code) as otp."})
    try:
        check_code(user, code, purpose="api token")
    except CodeRefused as exc:
        raise ValidationError({"otp": str(exc)}) from None


# --- enrolment, recovery codes, disabling -----------------------------------------------------------

def start_enrolment(user) -> TOTPDevice:
    """The unconfirmed authenticator whose secret the enrolment page shows: the same one on every
    visit until it is confirmed, so a reload does not change the QR code already scanned."""
    if has_authenticator(user):
        raise AlreadyEnrolled("You already have an authenticator. Disable it first to set up another.")
    device = authenticator(user, confirmed=False)
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=TOTP_NAME, confirmed=False)
    return device


def confirm_enrolment(user, code) -> tuple[TOTPDevice, list[str]]:
    """Confirm the pending authenticator with a code from it, and make the recovery codes.

    Returns the confirmed device (the caller marks the session verified with it) and the
    recovery codes in clear, to be shown this once. Raises CodeRefused or AlreadyEnrolled.
    """
    pending = start_enrolment(user)
    device = check_code(user, code, purpose="enrolment", device=pending)
    with transaction.atomic():
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
        codes = _replace_recovery_codes(user)
        user._crm_has_authenticator = True
        audit.record(AuditEvent.Action.OTP_ENROL, user=user, object_type="otp_device", object_id=device.persistent_id,
                     summary=f"authenticator confirmed; {len(codes)} recovery codes made")
    return device, codes


def regenerate_recovery_codes(user, code) -> list[str]:
    """Replace the recovery codes (the old ones stop working) after a fresh code; returns the new ones."""
    check_code(user, code, purpose="new recovery codes")
    with transaction.atomic():
        codes = _replace_recovery_codes(user)
        audit.record(AuditEvent.Action.OTP_RECOVERY_CODES, user=user, object_type="otp_device",
                     summary=f"{len(codes)} new recovery codes; the old ones no longer work")
    return codes


def disable_second_factor(user, code) -> None:
    """Remove the user's authenticator and recovery codes after a fresh code. A user whose role
    needs a second factor is sent to enrolment again at their next request."""
    check_code(user, code, purpose="disable")
    with transaction.atomic():
        removed = TOTPDevice.objects.filter(user=user).delete()[0]
        StaticDevice.objects.filter(user=user).delete()
        user._crm_has_authenticator = False
        audit.record(AuditEvent.Action.OTP_DISABLE, user=user, object_type="otp_device",
                     summary=f"second factor disabled; {removed} authenticator(s) and the recovery codes removed")


def _replace_recovery_codes(user) -> list[str]:
    static, _ = StaticDevice.objects.get_or_create(user=user, name=RECOVERY_NAME, defaults={"confirmed": True})
    static.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create([StaticToken(device=static, token=c) for c in codes])
    return codes
