"""API tokens (issue 18): made with a random key that is shown once, stored as its hash, limited
by scope, customers and time, and revoked at once.

A key is 32 random bytes (``secrets.token_urlsafe``); the database keeps its SHA-256 only, so a
copy of the table opens nothing. A key of that strength needs no salt or slow hash: nobody can
guess one, and the lookup by hash (crm.selectors.token_by_key) is one indexed read. Every
token expires: after ``API_TOKEN_DAYS`` unless asked otherwise, never after
``API_TOKEN_MAX_DAYS``. Creating and revoking are audited (names and scopes, never the key).
"""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from crm import audit, clock
from crm.models import ApiToken, AuditEvent

# last_used_at is a hint for people ("is this token still in use?"), not a log: writing it at
# most once a minute per token spares the hot read a write on every request.
LAST_USED_EVERY = timedelta(minutes=1)


class TokenRefused(ValueError):
    """The token asked for is not allowed (unknown scope, a lifetime out of range)."""


def hash_key(key: str) -> str:
    """The stored form of a key: SHA-256, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_token(user, *, name: str = "", scope: str = ApiToken.Scope.READ_WRITE, own_customers_only: bool = False,
                 expires_in_days: int | None = None) -> tuple[ApiToken, str]:
    """A new token of ``user`` and its key, which exists nowhere else afterwards: show it once.

    ``expires_in_days``: 1 to ``API_TOKEN_MAX_DAYS`` (default ``API_TOKEN_DAYS``). Raises
    :class:`TokenRefused` for a scope or lifetime out of range. One audit event.
    """
    days = settings.API_TOKEN_DAYS if expires_in_days is None else expires_in_days
    if not 1 <= days <= settings.API_TOKEN_MAX_DAYS:
        raise TokenRefused(f"expires_in_days must be between 1 and {settings.API_TOKEN_MAX_DAYS}")
    if scope not in ApiToken.Scope.values:
        raise TokenRefused(f"scope must be one of {', '.join(ApiToken.Scope.values)}")
    now = clock.now()
    key = secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user, name=name.strip()[:100] or f"token of {now:%Y-%m-%d}", key_hash=hash_key(key),
            prefix=key[:ApiToken.PREFIX_LENGTH], scope=scope, own_customers_only=own_customers_only,
            created_at=now, expires_at=now + timedelta(days=days))
        audit.record(AuditEvent.Action.CREATE, user=user, object_type="api_token", object_id=token.pk,
                     summary=f"API token created: scope {scope}"
                             f"{', own customers only' if own_customers_only else ''}, expires in {days} days")
    return token, key


def revoke_tokens(actor, tokens) -> int:
    """Revoke the not yet revoked tokens among ``tokens`` (a queryset); the next request with any
    of them is refused. Returns how many were revoked; one audit event for them all."""
    with transaction.atomic():
        ids = list(tokens.filter(revoked_at__isnull=True).select_for_update().values_list("pk", flat=True))
        if not ids:
            return 0
        ApiToken.objects.filter(pk__in=ids).update(revoked_at=clock.now())
        audit.record(AuditEvent.Action.REVOKE, user=actor, object_type="api_token",
                     object_id=ids[0] if len(ids) == 1 else "",
                     summary=f"{len(ids)} API token{'s' if len(ids) > 1 else ''} revoked")
    return len(ids)


def revoke_token(user, token_id: int) -> bool:
    """Revoke one of the user's own tokens; False if they have no such token or it was revoked already."""
    return revoke_tokens(user, ApiToken.objects.filter(user=user, pk=token_id)) == 1


def note_use(token: ApiToken, at) -> None:
    """Record that ``token`` was used at ``at``, if it was not already within the last minute (see
    LAST_USED_EVERY); the condition is in the UPDATE, so concurrent requests write it once."""
    if token.last_used_at is not None and at - token.last_used_at < LAST_USED_EVERY:
        return
    ApiToken.objects.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lte=at - LAST_USED_EVERY),
                            pk=token.pk).update(last_used_at=at)
    token.last_used_at = at
