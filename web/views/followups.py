"""Follow-up pages: plan one from a suggestion or worklist row, complete or cancel it, the
/follow-ups/ list with filters, and (managers) reassigning. The rules are crm.followups' and
crm.access's; these views only turn their refusals into messages and 403s."""
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from crm import followups, selectors
from crm.access import NotAllowed, visible_followups
from crm.models import ROLE_ADMIN, ROLE_MANAGER, ROLE_SALES_REP, FollowUp, Product
from ml import services as ml_services
from web.followup_forms import CompleteForm, FollowUpFilterForm, FollowUpForm, ReassignForm
from web.views.common import render, visible_customer

PAGE_SIZE = 50


def _back(request, default: str):
    """Where the form came from (its ``next`` field, same site only), else ``default``."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return redirect(target)
    return redirect(default)


def _errors(form_or_exc) -> str:
    errors = form_or_exc.errors if hasattr(form_or_exc, "errors") else form_or_exc.message_dict
    return "; ".join(f"{field}: {' '.join(str(m) for m in msgs)}" for field, msgs in errors.items())


def assignable_owners():
    """Active users with a CRM role, for the manager's reassign select."""
    return (get_user_model().objects.filter(is_active=True)
            .filter(groups__name__in=[ROLE_SALES_REP, ROLE_MANAGER, ROLE_ADMIN]).distinct().order_by("username"))


@login_required
@require_POST
def followup_new(request, pk):
    customer = visible_customer(request, pk)
    form = FollowUpForm(request.POST)
    default = reverse("customer_detail", args=[customer.pk]) + "#followups"
    if not form.is_valid():
        messages.error(request, "Could not plan that follow-up: " + _errors(form))
        return _back(request, default)
    data = form.cleaned_data
    product = Product.objects.filter(pk=data["product"]).first() if data.get("product") else None
    try:
        followup = ml_services.plan_followup(  # from a suggestion: also marks it accepted
            user=request.user, customer=customer, due_at=data["due_at"], type=data["type"], note=data["note"],
            product=product, suggestion_kind=data["kind"] if product else "", reason=data["reason"])
    except NotAllowed as exc:
        raise PermissionDenied(str(exc)) from exc
    except ValidationError as exc:
        messages.error(request, "Could not plan that follow-up: " + _errors(exc))
        return _back(request, default)
    messages.success(request, f"Follow-up planned: {followup.get_type_display().lower()} with {customer}, "
                              f"due {followup.due_at:%Y-%m-%d %H:%M}.")
    return _back(request, default)


def _followup(request, pk) -> FollowUp:
    return get_object_or_404(visible_followups(request.user).select_related("customer"), pk=pk)


def _act(request, pk, action, done: str):
    followup = _followup(request, pk)
    default = reverse("customer_detail", args=[followup.customer_id]) + "#followups"
    try:
        action(followup)
    except NotAllowed as exc:
        raise PermissionDenied(str(exc)) from exc
    except followups.FollowUpClosed as exc:
        messages.error(request, str(exc).capitalize() + ".")
        return _back(request, default)
    except ValidationError as exc:
        messages.error(request, "Could not do that: " + _errors(exc))
        return _back(request, default)
    messages.success(request, done)
    return _back(request, default)


@login_required
@require_POST
def followup_complete(request, pk):
    form = CompleteForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Could not complete it: " + _errors(form))
        return _back(request, reverse("followup_list"))
    return _act(request, pk, lambda f: followups.complete_followup(
        user=request.user, followup=f, outcome=form.cleaned_data["outcome"]),
        "Follow-up done: logged in the customer's history.")


@login_required
@require_POST
def followup_cancel(request, pk):
    return _act(request, pk, lambda f: followups.cancel_followup(user=request.user, followup=f),
                "Follow-up cancelled.")


@login_required
@require_POST
def followup_reassign(request, pk):
    if not selectors.is_manager(request.user):
        raise PermissionDenied("Only managers and admins reassign follow-ups.")
    form = ReassignForm(request.POST, owners=assignable_owners())
    if not form.is_valid():
        messages.error(request, "Could not reassign it: " + _errors(form))
        return _back(request, reverse("followup_list"))
    owner = form.cleaned_data["owner"]
    return _act(request, pk, lambda f: followups.reassign_followup(user=request.user, followup=f, owner=owner),
                f"Follow-up given to {owner.get_username()}.")


@login_required
def followup_list(request):
    form = FollowUpFilterForm(request.GET or None)
    data = form.cleaned_data if form.is_bound and form.is_valid() else {}
    manager = selectors.is_manager(request.user)
    team = manager and data.get("scope") == "team"
    status = data.get("status") or "open"
    rows = followups.followup_list(request.user, mine=not team, status="" if status == "all" else status,
                                   overdue=bool(data.get("overdue")))
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "crm/followup_list.html", {
        "form": form, "page": page, "team": team, "status": status, "is_manager": manager,
        "owners": assignable_owners() if manager else (), "query": query.urlencode(),
    })


def home_followups(request) -> dict:
    """The home page's "My follow-ups" card: the due groups, mine or (managers, ?followups=team) the team's."""
    team = request.GET.get("followups") == "team" and selectors.is_manager(request.user)
    groups = followups.due_groups(request.user, team=team)
    titles = {"overdue": "Overdue", "today": "Today", "week": "This week"}
    return {"followup_groups": [(key, titles[key], *groups[key]) for key in titles], "followups_team": team}
