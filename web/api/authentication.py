"""API token authentication: the token, its user and the user's CRM roles in one query, then the
token's limits (issue 18).

DRF's TokenAuthentication reads the token with its user, then the role check reads the user's
groups: two ORM queries compiled on every API request. This reads both in one
(crm.selectors.token_by_key, by the key's hash), with DRF's messages for a bad token or an
inactive user, and then applies what the token allows:

- revoked or expired: 401, on the very next request (read from the database every time, no cache);
- ``read-only``: 403 for every unsafe method, here, before any view's own permissions, so no
  endpoint can forget it;
- own customers only: the request's user sees only the customers it owns (crm.access).

Session-authenticated requests do not pass through here and keep the user's full rights.
"""
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.permissions import SAFE_METHODS

from crm import access, clock, selectors, tokens
from crm.models import ApiToken


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate(self, request):
        result = super().authenticate(request)
        if result is not None and result[1].scope == ApiToken.Scope.READ_ONLY and request.method not in SAFE_METHODS:
            raise exceptions.PermissionDenied("This API token is read-only: it may not change anything.")
        return result

    def authenticate_credentials(self, key):
        token = selectors.token_by_key(key)
        if token is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        now = clock.now()
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed("Token revoked.")
        if token.expires_at <= now:
            raise exceptions.AuthenticationFailed("Token expired.")
        user = token.user
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        if token.own_customers_only:
            access.limit_to_own_customers(user)
        tokens.note_use(token, now)
        return user, token
