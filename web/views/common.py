"""What every page shares: the role checks, the rendering with the navigation's flag, charts."""
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
    """A chart spec for static/crm/site.js: {type, labels, datasets: [{label, data}], ...}."""
    return {"type": type_, "labels": list(labels), "datasets": datasets, **extra}


def visible_customer(request, pk):
    return get_object_or_404(selectors.visible_customers(request.user), pk=pk)


def favicon(request):
    """/favicon.ico, which browsers ask for whatever the page's <link rel="icon"> says: the SVG icon.
    Resolved per request, since the static file's name carries its hash in production."""
    return redirect(static("crm/favicon.svg"))
