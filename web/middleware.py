"""Refuse an upload request whose declared length is already too long, before its body is read."""
from django.http import JsonResponse

from crm import uploads
from web.api.exceptions import error_body
from web.views.common import render


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
