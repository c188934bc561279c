"""The customer pages: list, CSV export, detail with insights, timeline, feedback, editing."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Page, Paginator
from django.db.models import prefetch_related_objects
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from crm import audit, exports, followups, forms, selectors, services
from crm import tags as crm_tags
from crm.models import Product
from ml import customer_lists, run_reports
from ml import insights as ml_insights
from ml import selectors as ml_selectors
from ml import services as ml_services
from ml.models import TrainingRun
from web import cursors
from web import forms as web_forms
from web.views import customer_bulk
from web.views.common import render, visible_customer


def _customer_filter_form(request):
    return web_forms.CustomerFilterForm(request.GET or None, segments=ml_selectors.segments(),
                                    owners=selectors.customer_owners(request.user), tags=selectors.tag_names())


# Pages 1..KEYSET_AFTER_PAGE of the customer list are read by offset (their numbers are links);
# "Next" beyond them, "Previous" back to them and "Last" read by keyset (a signed cursor of the
# row next to the page, web.cursors), so page 200 and the last page cost what page 1 costs.
KEYSET_AFTER_PAGE = 20


@login_required
def customer_list(request):
    form = _customer_filter_form(request)
    filters = form.filters()
    ordering = filters.get("ordering", "name")
    per_page = (form.cleaned_data.get("per_page") if form.is_bound and form.is_valid() else None) or web_forms.PAGE_SIZES[0]
    runs, not_forecast = run_reports.published_run_ids_and_not_forecast()

    def read(**where):
        return customer_lists.customer_page(request.user, limit=per_page, runs=runs, **where, **filters)

    after, reverse, number = None, False, None
    if request.GET.get("cursor"):
        try:
            after, reverse, number = cursors.loads(request.GET["cursor"], "customers", ordering,
                                                   customer_lists.sort_key_lengths(ordering))
        except cursors.BadCursor:
            messages.warning(request, "That page link is not valid for this list (it may be outdated): "
                                      "showing the first page.")
    if after is not None:
        rows, listed = read(after=after, reverse=reverse)
        keyed = True
    elif request.GET.get("page") == "last":
        rows, listed, keyed = [], None, True
    else:
        try:
            number = max(1, int(request.GET.get("page", 1)))
        except ValueError:
            number = 1
        rows, listed = read(offset=(number - 1) * per_page)
        keyed = False
    if listed is None or not rows and (number or 1) > 1 and listed.total:
        # The last page (asked for, or a page past the end): the list's end read backwards.
        rows, listed = read(reverse=True)
        number = max(1, (listed.total - 1) // per_page + 1)
        shown = listed.total - (number - 1) * per_page
        rows, listed.keys = rows[len(rows) - shown:], listed.keys[len(listed.keys) - shown:]
        after, reverse, keyed, listed.more = None, True, True, False
    prefetch_related_objects(rows, "tags")  # one query for the page's tags
    paginator = _CountedPaginator(listed.total, per_page)
    page = Page(rows, min(number or 1, paginator.num_pages), paginator)
    query = request.GET.copy()
    for name in ("page", "cursor"):
        query.pop(name, None)
    sort_query = query.copy()
    sort_query.pop("sort", None)
    # More rows after the page: the forward read said so; read backwards, the key's row was after it.
    has_next = listed.more if not reverse else after is not None
    has_previous = page.number > 1 and bool(listed.keys)
    links = {}
    if has_previous:
        links["first"] = "page=1"
        links["previous"] = (f"page={page.number - 1}" if page.number - 1 <= KEYSET_AFTER_PAGE else
                             "cursor=" + cursors.dumps("customers", ordering, listed.keys[0], reverse=True,
                                                         page=page.number - 1))
    if has_next and listed.keys:
        links["next"] = (f"page={page.number + 1}" if not keyed and page.number < KEYSET_AFTER_PAGE else
                         "cursor=" + cursors.dumps("customers", ordering, listed.keys[-1], page=page.number + 1))
        links["last"] = "page=last"
    return render(request, "crm/customer_list.html", {
        "form": form, "page": page, "links": links, "query": query.urlencode(), "sort_query": sort_query.urlencode(),
        "sort": ordering, "has_forecast": "forecast" in runs,
        "not_forecast": run_reports.not_forecast_lines(not_forecast),
        # The bulk action bar, for managers only (the POST checks the role again).
        "bulk_form": customer_bulk.bulk_form(request.user) if selectors.is_manager(request.user) else None,
        "tag_names": [value for value, _label in form.fields["tag"].choices[1:]],
        "list_query": request.GET.urlencode(),
    })


class _CountedPaginator(Paginator):
    """A paginator for a page fetched by ml.customer_lists.customer_page: the count is known."""

    def __init__(self, count, per_page):
        super().__init__([], per_page)
        self._count = count

    @property
    def count(self):
        return self._count


EXPORT_COLUMNS = ("external_id", "name", "email", "phone", "company", "country", "city", "owner", "last_purchase_at",
                  "segment", "expected_purchases", "expected_spend", "churn_probability", "clv",
                  "expected_refund_rate", "value_at_risk")
# Decimal places of the figures: expected orders as the list shows them, probabilities to a tenth
# of a percent, money to the cent. Full float precision (0.06472453997060523) is noise to a reader.
EXPORT_DECIMALS = {"expected_purchases": 2, "expected_spend": 2, "churn_probability": 3, "clv": 2,
                   "expected_refund_rate": 3, "value_at_risk": 2}


class _Echo:
    def write(self, value):
        return value


@login_required
def customer_export(request):
    """The filtered list as CSV with its insights, figures rounded; formula-like cells defused.
    ``?format=excel`` adds the byte-order mark Excel needs to read UTF-8; ``?format=excel-eu`` is also
    ``;``-separated with decimal commas (crm.exports.Flavour); anything else is the plain file."""
    form = _customer_filter_form(request)
    flavour = exports.FLAVOURS.get(request.GET.get("format", ""), exports.FLAVOURS["plain"])
    customers = customer_lists.customer_list(request.user, **form.filters())
    rows = customers.values_list("external_id", "name", "email", "phone", "company", "country", "city",
                                 "owner__username", "last_purchase_at", "segment_name", *EXPORT_DECIMALS)
    places = [EXPORT_DECIMALS.get(column) for column in EXPORT_COLUMNS]
    when = EXPORT_COLUMNS.index("last_purchase_at")
    writer = exports.writer(_Echo(), delimiter=flavour.delimiter)
    audit.record_export(request.user, "customer list (web CSV)", form.filters())

    def cells(row):
        out = [value if n is None else flavour.number(value, n) for value, n in zip(row, places)]
        if out[when] is not None and flavour.bom:  # Excel reads "2026-03-01 14:05:00", not an offset
            out[when] = timezone.localtime(out[when]).strftime("%Y-%m-%d %H:%M:%S")
        return out

    def lines():
        yield ("\ufeff" if flavour.bom else "") + writer.writerow(EXPORT_COLUMNS)
        for row in rows.iterator(chunk_size=2000):
            yield writer.writerow(cells(row))

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    name = "customers.csv" if flavour.name == "plain" else f"customers-{flavour.name}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@login_required
def customer_detail(request, pk):
    customer = visible_customer(request, pk)
    runs = ml_insights.published_runs()
    insights = ml_insights.customer_insights(customer, runs)
    feedback = ml_selectors.feedback_for_customer(customer)
    for s in insights["recommendations"] + insights["reorder"]:
        s["feedback"] = feedback.get((s["product_id"], s["kind"]))
        s["due"] = ml_insights.due_words(s.get("expected_on"))
    timeline_form = forms.TimelineFilterForm(request.GET or None)
    types = timeline_form.cleaned_data["type"] if timeline_form.is_bound and timeline_form.is_valid() else None
    fc_run = runs.get(TrainingRun.Kind.FORECAST)
    return render(request, "crm/customer_detail.html", {
        "customer": customer, "insights": insights, "runs": runs, "tags": crm_tags.tag_names(customer),
        "accuracy": run_reports.forecast_accuracy(fc_run),
        "not_forecast": run_reports.targets_not_forecast(fc_run.metrics if fc_run else None),
        "basis": run_reports.basis_words(insights["forecast"]["basis"]) if insights["forecast"] else None,
        "rec_outcome": run_reports.run_outcome(runs.get(TrainingRun.Kind.RECOMMENDATION)),
        # Why a kind has no live run, when its latest run was skipped (one query per such kind).
        "skipped": {kind: run_reports.skipped_reason(kind) for kind in TrainingRun.Kind.values if kind not in runs},
        "timeline": _with_edit_flags(request.user, selectors.customer_timeline(customer, types=types)),
        "timeline_form": timeline_form, "log_form": forms.LogInteractionForm(),
        "feedback_statuses": web_forms.FeedbackForm.base_fields["status"].choices,
        "is_manager": selectors.is_manager(request.user),
        "open_followups": followups.open_followups_of(request.user, customer),
    })


@login_required
@require_POST
def customer_log(request, pk):
    customer = visible_customer(request, pk)
    form = forms.LogInteractionForm(request.POST)
    if form.is_valid():
        try:
            services.log_interaction(user=request.user, customer=customer, type=form.cleaned_data["type"],
                                     occurred_at=form.cleaned_data["occurred_at"], notes=form.cleaned_data["notes"],
                                     channel="web")
        except services.NotAllowed as exc:
            raise PermissionDenied(str(exc)) from exc
        messages.success(request, f"{form.cleaned_data['type'].title()} logged.")
    else:
        messages.error(request, "Could not log that: " + "; ".join(
            f"{form.fields[field].label if field in form.fields else field}: {' '.join(errs)}"
            for field, errs in form.errors.items()))
    return redirect(reverse("customer_detail", args=[customer.pk]) + "#timeline")


def _with_edit_flags(user, interactions) -> list:
    rows = list(interactions)
    for interaction in rows:
        interaction.editable = selectors.can_change_interaction(user, interaction)
    return rows


def _editable_interaction(request, pk):
    """An interaction of a customer the user sees (else 404) that they may change (else 403)."""
    interaction = get_object_or_404(selectors.visible_interactions(request.user).select_related(
        "customer", "product", "created_by"), pk=pk)
    if not selectors.can_change_interaction(request.user, interaction):
        raise PermissionDenied("A sales rep can change only the interactions they logged.")
    return interaction


@login_required
def interaction_edit(request, pk):
    """Correct a logged interaction (its type, time, notes, quantity, amount); delete it from here too."""
    interaction = _editable_interaction(request, pk)
    customer = interaction.customer
    form = forms.InteractionEditForm(request.POST or None, initial=forms.InteractionEditForm.initial_for(interaction))
    if request.method == "POST" and form.is_valid():
        fields = {name: form.cleaned_data[name] for name in forms.InteractionEditForm.FIELDS}
        try:
            services.update_interaction(user=request.user, interaction=interaction, **fields)
        except services.NotAllowed as exc:
            raise PermissionDenied(str(exc)) from exc
        except ValidationError as exc:
            for field, errors in (exc.error_dict if hasattr(exc, "error_dict") else {None: exc.error_list}).items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            messages.success(request, f"{interaction.get_type_display()} of {interaction.occurred_at:%Y-%m-%d} saved.")
            return redirect(reverse("customer_detail", args=[customer.pk]) + "#timeline")
    return render(request, "crm/interaction_form.html", {"form": form, "interaction": interaction,
                                                         "customer": customer})


@login_required
@require_POST
def interaction_delete(request, pk):
    """Delete an interaction (the edit page's Delete button posts ``confirm=delete``)."""
    interaction = _editable_interaction(request, pk)
    customer = interaction.customer
    if request.POST.get("confirm") != "delete":
        messages.error(request, "Nothing deleted: use the Delete button on the interaction's page.")
        return redirect("interaction_edit", pk=interaction.pk)
    what = f"{interaction.get_type_display()} of {interaction.occurred_at:%Y-%m-%d}"
    try:
        services.delete_interaction(user=request.user, interaction=interaction)
    except services.NotAllowed as exc:
        raise PermissionDenied(str(exc)) from exc
    messages.success(request, f"{what} deleted.")
    return redirect(reverse("customer_detail", args=[customer.pk]) + "#timeline")


@login_required
@require_POST
def customer_feedback(request, pk):
    customer = visible_customer(request, pk)
    form = web_forms.FeedbackForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Unknown suggestion or status.")
        return redirect("customer_detail", pk=customer.pk)
    product = get_object_or_404(Product, pk=form.cleaned_data["product"])
    try:
        ml_services.record_feedback(user=request.user, customer=customer, product=product,
                                    kind=form.cleaned_data["kind"], status=form.cleaned_data["status"])
    except services.NotAllowed as exc:
        raise PermissionDenied(str(exc)) from exc
    messages.success(request, f"{product.name}: marked {form.cleaned_data['status']}.")
    return redirect(reverse("customer_detail", args=[customer.pk]) + "#suggestions")


def _customer_form(request, *, customer=None):
    user = request.user
    any_owner = selectors.sees_all_customers(user)
    if customer is not None:
        initial = forms.CustomerForm.initial_for(customer)
    else:  # a rep's new customer is theirs unless they say otherwise
        initial = {"owner": None if any_owner else user.pk}
    return forms.CustomerForm(request.POST if request.method == "POST" else None, initial=initial,
                              owners=selectors.assignable_owners(user, current=customer and customer.owner_id),
                              any_owner=any_owner)


def _save_customer(form, write):
    """Run a create/update service with the form's data; its refusals become form errors. None if refused."""
    try:
        return write(**form.cleaned_data)
    except ValidationError as exc:  # the model's own rules (e.g. external_id already used)
        errors = exc.error_dict if hasattr(exc, "error_dict") else {None: exc.error_list}
        for field, messages_ in errors.items():
            form.add_error(field if field in form.fields else None, messages_)
    except services.NotAllowed as exc:
        form.add_error("owner", str(exc))
    return None


@login_required
def customer_create(request):
    if not selectors.is_staff_member(request.user):
        raise PermissionDenied("Your account has no CRM role.")
    form = _customer_form(request)
    if request.method == "POST" and form.is_valid():
        customer = _save_customer(form, lambda **fields: services.create_customer(user=request.user, **fields))
        if customer is not None:
            messages.success(request, f"Customer {customer} created.")
            return redirect("customer_detail", pk=customer.pk)
    return render(request, "crm/customer_form.html", {"form": form, "customer": None, "title": "New customer",
                                                      "tag_names": selectors.tag_names()})


@login_required
def customer_edit(request, pk):
    customer = visible_customer(request, pk)
    title = f"Edit {customer}"  # before a refused save leaves the instance holding the rejected input
    form = _customer_form(request, customer=customer)
    if request.method == "POST" and form.is_valid():
        saved = _save_customer(form, lambda **fields: services.update_customer(
            user=request.user, customer=customer, **fields))
        if saved is not None:
            messages.success(request, f"Customer {saved} saved.")
            return redirect("customer_detail", pk=saved.pk)
    return render(request, "crm/customer_form.html", {"form": form, "customer": customer, "title": title,
                                                      "tag_names": selectors.tag_names()})
