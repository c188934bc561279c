"""What every page shares: the role checks, the rendering with the navigation's flag, charts."""
import textwrap
from datetime import date

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.shortcuts import render as django_render
from django.templatetags.static import static

from crm import selectors


def manager_required(view):
    """Login required, then 403 unless the user is a manager or admin."""
    @login_required
    def wrapped(request, *args, **kwargs):
        if not selectors.is_manager(request.user):
            raise PermissionDenied("Only managers and admins can do this.")
        return view(request, *args, **kwargs)
    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


def render(request, template, context, status=None):
    """django.shortcuts.render plus the user's role flag, which the navigation needs."""
    context.setdefault("is_manager", selectors.is_manager(request.user))
    return django_render(request, template, context, status=status)


def chart(type_, labels, datasets, **extra) -> dict:
    """A chart spec for static/crm/site.js: {type, labels, datasets: [{label, data}], ...}.

    ``money=["y1"]``: the axes whose values are amounts (ticks and tooltips in the currency);
    ``partial=11``: the index of the period not over yet (month_axis), drawn apart."""
    return {"type": type_, "labels": list(labels), "datasets": datasets, **extra}


# Characters per line of a category label: a segment's name ("Prospects / no purchases yet") in
# lines this long fits the left margin of a bar chart in a third of the page, where one long line
# was cut at the canvas' edge.
LABEL_LINE_CHARS = 16


def wrapped_label(text: str, width: int = LABEL_LINE_CHARS):
    """A chart label in lines of at most ``width`` characters (a word longer than that keeps its
    own line): a list, which Chart.js draws one line under the other, or the text when it fits."""
    lines = textwrap.wrap(str(text), width, break_long_words=False, break_on_hyphens=False)
    return lines if len(lines) > 1 else str(text)


def month_axis(months, today: date) -> tuple[list[str], int | None]:
    """Labels of monthly points ("Mar 2026") from their first days, and the index of the month
    that ``today`` falls in, which is not over: its label says "(to date)" (None when no month is)."""
    labels, partial = [], None
    for i, first_day in enumerate(months):
        label = first_day.strftime("%b %Y")
        if (first_day.year, first_day.month) == (today.year, today.month):
            label, partial = f"{label} (to date)", i
        labels.append(label)
    return labels, partial


def visible_customer(request, pk):
    return get_object_or_404(selectors.visible_customers(request.user), pk=pk)


def favicon(request):
    """/favicon.ico, which browsers ask for whatever the page's <link rel="icon"> says: the SVG icon.
    Resolved per request, since the static file's name carries its hash in production."""
    return redirect(static("crm/favicon.svg"))
