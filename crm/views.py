"""HTML pages for sales staff. Thin: reads come from crm.selectors, writes from crm.services."""
from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from crm import selectors


@login_required
def home(request):
    return render(request, "crm/home.html", {"figures": selectors.key_figures(request.user)})
