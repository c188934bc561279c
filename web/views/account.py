"""The account page and its API token."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_POST
from rest_framework.authtoken.models import Token

from crm import second_factor, selectors, services
from web.views.common import render


def _account_page(request, *, new_key=None):
    response = render(request, "crm/account.html", {
        "roles": sorted(selectors.user_roles(request.user)),
        "token": Token.objects.filter(user=request.user).only("created").first(),
        "new_key": new_key,
        "second_factor": second_factor.status(request.user),
    })
    # The page may hold a freshly made key: keep it out of every cache and the back/forward history.
    add_never_cache_headers(response)
    return response


@login_required
@require_GET
def account(request):
    return _account_page(request)


@login_required
@require_POST
def account_token_create(request):
    """Create an API token and show its key in this response only (it is never shown again)."""
    try:
        token = services.create_token(request.user)
    except services.TokenExists:
        messages.error(request, "You already have an API token. Regenerate it to get a new key.")
        return redirect("account")
    return _account_page(request, new_key=token.key)


@login_required
@require_POST
def account_token_regenerate(request):
    token = services.regenerate_token(request.user)
    return _account_page(request, new_key=token.key)


@login_required
@require_POST
def account_token_revoke(request):
    if services.revoke_token(request.user):
        messages.success(request, "API token revoked: requests with it are refused from now on.")
    else:
        messages.info(request, "You had no API token.")
    return redirect("account")
