"""The customer list's bulk actions (managers): assign an owner, add or remove a tag on the
selected customers, then back to the same list page with its filters."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import QueryDict
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from crm import forms, selectors, tags
from crm.access import NotAllowed

PREFIX = "bulk"


def bulk_form(user, data=None):
    return forms.CustomerBulkForm(data, prefix=PREFIX, owners=selectors.assignable_owners(user))


def _back_to_list(query: str) -> str:
    """The list page the action was made from: its query string re-encoded onto the list's own
    path (never another address)."""
    query = QueryDict(query[:2000]).urlencode()
    return reverse("customer_list") + (f"?{query}" if query else "")


def _plural(n: int) -> str:
    return f"{n} customer{'s' if n != 1 else ''}"


@login_required
@require_POST
def customer_bulk(request):
    if not selectors.is_manager(request.user):
        raise PermissionDenied("Only managers can change many customers at once.")
    back = _back_to_list(request.POST.get(f"{PREFIX}-back", ""))
    form = bulk_form(request.user, request.POST)
    if not form.is_valid():
        messages.error(request, "Nothing changed: " + " ".join(
            " ".join(errors) for errors in form.errors.values()))
        return redirect(back)
    data = form.cleaned_data
    ids, selected = data["ids"], len(set(data["ids"]))
    try:
        if data["action"] == "assign":
            owner = data["owner"]
            n = tags.bulk_assign_owner(user=request.user, ids=ids, owner=owner)
            text = f"Assigned {_plural(n)} to {owner.get_username()}"
        elif data["action"] == "add_tag":
            tag, n = tags.bulk_add_tag(user=request.user, ids=ids, name=data["tag"])
            text = f"Tagged {_plural(n)} “{tag.name}”"
        else:
            tag, n = tags.bulk_remove_tag(user=request.user, ids=ids, name=data["tag"])
            text = f"Removed the tag “{tag.name}” from {_plural(n)}" if tag else f"No tag “{data['tag']}”: nothing changed"
    except NotAllowed as exc:
        messages.error(request, f"Nothing changed: {exc}.")
        return redirect(back)
    except ValidationError as exc:
        messages.error(request, "Nothing changed: " + " ".join(exc.messages))
        return redirect(back)
    rest = {"assign": "already had that owner", "add_tag": "already had it", "remove_tag": "did not have it"}
    if selected > n and (data["action"] != "remove_tag" or tag):
        text += f" ({selected - n} of the {selected} selected {rest[data['action']]})"
    messages.success(request, text + ".")
    return redirect(back)
