"""The second factor's pages: the OTP step after the password, enrolment (QR code, confirm, recovery
codes), new recovery codes and disabling. The rules and the code checks are crm.second_factor's."""
import base64
import io

import qrcode
import qrcode.image.svg
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST
from django_otp import login as otp_login

from crm import second_factor
from web.views.common import render


def _next_url(request) -> str:
    """Where to go after the OTP step: the page first asked for, on this site, never an OTP page (a loop)."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    on_site = url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                              require_https=request.is_secure())
    if on_site and not any(target.startswith(reverse(name)) for name in ("account_otp_verify", "account_otp_enrol")):
        return target
    return reverse("home")


def _private(response):
    # These pages show secrets (the QR code, recovery codes): keep them out of caches and history.
    add_never_cache_headers(response)
    return response


def _verified(request, device):
    otp_login(request, device)
    request.session.cycle_key()  # a new session id for the now stronger sign-in


def _qr_data_uri(text: str) -> str:
    """The QR code of ``text`` as an SVG data: URI, made here (no network, no inline script or style)."""
    out = io.BytesIO()
    qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2).save(out)
    return "data:image/svg+xml;base64," + base64.b64encode(out.getvalue()).decode()


def _grouped(secret: str) -> str:
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


@login_required
@require_http_methods(["GET", "POST"])
def otp_verify(request):
    """The step after the password for a user with an authenticator: a current code or a recovery code."""
    if request.user.is_verified() or not second_factor.has_authenticator(request.user):
        return redirect(_next_url(request))
    error = None
    if request.method == "POST":
        try:
            device = second_factor.check_code(request.user, request.POST.get("code"), purpose="sign-in")
        except second_factor.CodeRefused as exc:
            error = str(exc)
        else:
            _verified(request, device)
            return redirect(_next_url(request))
    return _private(render(request, "crm/otp_verify.html", {"error": error, "next": _next_url(request)}))


@login_required
@require_http_methods(["GET", "POST"])
def otp_enrol(request):
    """GET: the secret as a QR code and as text. POST: confirm it with a code; then the recovery codes, once."""
    try:
        device = second_factor.start_enrolment(request.user)
    except second_factor.AlreadyEnrolled as exc:
        messages.info(request, str(exc))
        return redirect("account")
    error = None
    if request.method == "POST":
        try:
            device, codes = second_factor.confirm_enrolment(request.user, request.POST.get("code"))
        except second_factor.CodeRefused as exc:
            error = str(exc)
        else:
            _verified(request, device)
            return _private(render(request, "crm/otp_recovery_codes.html", {
                "codes": codes, "next": _next_url(request), "enrolled": True}))
    secret = base64.b32encode(device.bin_key).decode()
    return _private(render(request, "crm/otp_enrol.html", {
        "qr": _qr_data_uri(device.config_url), "secret": _grouped(secret), "error": error,
        "required": second_factor.required(request.user), "next": _next_url(request)}))


@login_required
@require_POST
def otp_recovery_codes(request):
    """New recovery codes after a fresh code; shown in this response only."""
    try:
        codes = second_factor.regenerate_recovery_codes(request.user, request.POST.get("code"))
    except second_factor.CodeRefused as exc:
        messages.error(request, f"No new recovery codes: {exc}")
        return redirect("account")
    return _private(render(request, "crm/otp_recovery_codes.html", {"codes": codes, "next": reverse("account")}))


@login_required
@require_POST
def otp_disable(request):
    """Remove the authenticator and the recovery codes after a fresh code."""
    try:
        second_factor.disable_second_factor(request.user, request.POST.get("code"))
    except second_factor.CodeRefused as exc:
        messages.error(request, f"The second factor is still on: {exc}")
    else:
        messages.success(request, "Second factor disabled." + (
            " Your role needs one: set up a new authenticator now." if second_factor.required(request.user) else ""))
    return redirect("account")
