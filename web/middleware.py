"""The site's own middleware: the second factor's gate, and the upload size check.

The gate: a signed-in session that still owes its OTP step reaches nothing else. After the
password, a user with an authenticator is sent to the OTP page, and a user who must have one
(crm.second_factor.required) and has none to enrolment; both come back to the page they asked
for. Open to them meanwhile: the OTP pages, log-in (to switch account) and log-out, the static
files and /favicon.ico. The API answers such a session 403 in its error format instead of redirecting. API calls
with a token carry no session: the token was issued after the second factor
(crm.second_factor.check_api_sign_in).
"""
from urllib.parse import urlencode

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import redirect
from django.urls import Resolver404, resolve, reverse

from crm import second_factor, uploads
from web.api.exceptions import error_body
from web.views.common import render

OPEN_URL_NAMES = frozenset({"login", "logout", "account_otp_verify", "account_otp_enrol", "favicon"})
STEP_URL_NAMES = {"verify": "account_otp_verify", "enrol": "account_otp_enrol"}


class SecondFactorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        step = second_factor.pending_step(request.user)
        if step is None or self._open(request.path_info):
            return self.get_response(request)
        if request.path_info.startswith("/api/"):
            return JsonResponse(error_body(
                "second_factor_required", "This session has not passed its second factor: finish signing in on "
                                          "the web site (or use an API token)."), status=403)
        return redirect(f"{reverse(STEP_URL_NAMES[step])}?{urlencode({'next': request.get_full_path()})}")

    @staticmethod
    def _open(path: str) -> bool:
        if path.startswith("/" + settings.STATIC_URL.lstrip("/")):
            return True
        try:
            return resolve(path).url_name in OPEN_URL_NAMES
        except Resolver404:
            return False


class UploadSizeMiddleware:
    """A multipart request whose Content-Length is over what the import's files can add up to
    (crm.uploads.request_limit_bytes) is answered 413 with the limit named: the pages with a
    page, the API in its error format. It runs before any middleware reads the body (the CSRF
    check parses the form), so not a byte of it is read or stored. A request within that length
    is parsed, and each file is cut off at the limit while it streams in (crm.uploads)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method == "POST" and request.content_type == "multipart/form-data":
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0  # Django's parser refuses a malformed length itself
            if length > uploads.request_limit_bytes():
                return self._refuse(request, uploads.request_too_large_message(length))
        return self.get_response(request)

    @staticmethod
    def _refuse(request, message):
        if request.path.startswith("/api/"):
            return JsonResponse(error_body("too_large", message), status=413)
        return render(request, "crm/upload_too_large.html", {"message": message}, status=413)
