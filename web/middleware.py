"""The second factor's gate: a signed-in session that still owes its OTP step reaches nothing else.

After the password, a user with an authenticator is sent to the OTP page, and a user who must
have one (crm.second_factor.required) and has none to enrolment; both come back to the page they
asked for. Open to them meanwhile: the OTP pages, log-in (to switch account) and log-out, and the
static files. The API answers such a session 403 in its error format instead of redirecting.
API calls with a token carry no session: the token was issued after the second factor
(crm.second_factor.check_api_sign_in).
"""
from urllib.parse import urlencode

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import redirect
from django.urls import Resolver404, resolve, reverse

from crm import second_factor

OPEN_URL_NAMES = frozenset({"login", "logout", "account_otp_verify", "account_otp_enrol"})
STEP_URL_NAMES = {"verify": "account_otp_verify", "enrol": "account_otp_enrol"}


class SecondFactorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        step = second_factor.pending_step(request.user)
        if step is None or self._open(request.path_info):
            return self.get_response(request)
        if request.path_info.startswith("/api/"):
            return JsonResponse({"error": {
                "code": "second_factor_required", "fields": {},
                "message": "This session has not passed its second factor: finish signing in on the web site "
                           "(or use an API token)."}}, status=403)
        return redirect(f"{reverse(STEP_URL_NAMES[step])}?{urlencode({'next': request.get_full_path()})}")

    @staticmethod
    def _open(path: str) -> bool:
        if path.startswith("/" + settings.STATIC_URL.lstrip("/")):
            return True
        try:
            return resolve(path).url_name in OPEN_URL_NAMES
        except Resolver404:
            return False
