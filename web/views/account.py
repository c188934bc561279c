"""The account page: who you are, and your API tokens (create one, its key shown once; revoke)."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_POST

from crm import clock, second_factor, selectors, services
from crm.forms import ApiTokenForm
from web.views.common import render


def _status(token, now) -> str:
    if token.revoked_at is not None:
        return "revoked"
    return "active" if token.expires_at > now else "expired"


def _account_page(request, *, form=None, new_token=None, new_key=None, status=200):
    now = clock.now()
    response = render(request, "crm/account.html", {
        "roles": sorted(selectors.user_roles(request.user)),
        "tokens": [(token, _status(token, now)) for token in selectors.api_tokens(request.user)],
        "form": form or ApiTokenForm(),
        "new_token": new_token,
        "new_key": new_key,
        "second_factor": second_factor.status(request.user),
    })
    response.status_code = status
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
    """Create an API token and show its key in this response only (only its hash is stored)."""
    form = ApiTokenForm(request.POST)
    if not form.is_valid():
        return _account_page(request, form=form, status=400)
    token, key = services.create_token(request.user, **form.cleaned_data)
    return _account_page(request, new_token=token, new_key=key)


@login_required
@require_POST
def account_token_revoke(request, pk):
    if services.revoke_token(request.user, pk):
        messages.success(request, "API token revoked: requests with it are refused from now on.")
    else:
        messages.info(request, "You have no such active API token: nothing was revoked.")
    return redirect("account")
