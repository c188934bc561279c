"""One error format for every API error: ``{"error": {"code", "message", "fields"}}``.

Domain exceptions of the services map to HTTP here, so views stay free of try/except:
NotAllowed -> 403, refused or conflicting state -> 409, Django validation -> 400, task queue
unreachable -> 503 (the work stays queued).
"""
import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler, set_rollback

from crm.access import NotAllowed
from crm.customer_upsert import UpsertConflict
from crm.followups import FollowUpClosed
from crm.imports.importer import ImportFailed
from crm.jobs import BackgroundUnavailable
from crm.merging import MergeRefused
from crm.records import InUse
from crm.tokens import TokenRefused
from ml.services import RetrainRefused, RunNotPublishable

log = logging.getLogger(__name__)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Background work is unavailable right now."
    default_code = "background_unavailable"


class LockedOut(exceptions.APIException):
    """Too many failed sign-ins for this username from this address (django-axes counts them)."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "locked_out"

    def __init__(self):
        super().__init__(settings.AXES_COOLOFF_MESSAGE)
        self.wait = int(settings.AXES_COOLOFF_TIME.total_seconds())  # the handler sends it as Retry-After


def _as_api_exception(exc):
    if isinstance(exc, Http404):
        return exceptions.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied()
    if isinstance(exc, DjangoValidationError):
        return exceptions.ValidationError(as_serializer_error(exc))
    if isinstance(exc, NotAllowed):
        return exceptions.PermissionDenied(str(exc))
    if isinstance(exc, TokenRefused):
        return exceptions.ValidationError(str(exc))
    if isinstance(exc, (RetrainRefused, RunNotPublishable, InUse, MergeRefused, FollowUpClosed, UpsertConflict)):
        return Conflict(str(exc))
    if isinstance(exc, BackgroundUnavailable):
        return ServiceUnavailable(str(exc))
    if isinstance(exc, ImportFailed):
        return exceptions.ValidationError({"files": [str(exc)]})
    return exc


def _messages(detail) -> list[str]:
    if isinstance(detail, dict):
        return [m for value in detail.values() for m in _messages(value)]
    if isinstance(detail, list):
        return [m for value in detail for m in _messages(value)]
    return [str(detail)]


def _fields(detail, prefix="") -> dict:
    """Field errors flattened to {"field": [messages]}; nested ones as "field.sub" or "items.3.type"."""
    out = {}
    for key, value in (detail.items() if isinstance(detail, dict) else enumerate(detail)):
        name = f"{prefix}{key}"
        if isinstance(value, dict) or (isinstance(value, list) and value
                                       and all(isinstance(v, (dict, list)) for v in value)):
            out.update(_fields(value, f"{name}."))
        elif value:
            out[name] = _messages(value)
    return out


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def api_exception_handler(exc, context):
    exc = _as_api_exception(exc)
    response = exception_handler(exc, context)
    if response is None:
        log.exception("unhandled API error", exc_info=exc)
        set_rollback()
        return Response(error_body("server_error", "The server could not handle the request."),
                        status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        fields = _fields(detail) if isinstance(detail, dict) else {}
        fields.pop("non_field_errors", None)
        messages = _messages(detail.get("non_field_errors", detail) if isinstance(detail, dict) else detail)
        first = next(iter(fields.items()), None)
        message = messages[0] if not fields and messages else (
            f"{first[0]}: {first[1][0]}" if first and first[1] else "Invalid input.")
        response.data = error_body("invalid", message, fields)
    else:
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        response.data = error_body(codes if isinstance(codes, str) else "error", " ".join(_messages(exc.detail)))
    return response
