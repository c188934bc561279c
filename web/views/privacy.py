"""Right of access and erasure (managers and admins)."""
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET

from crm import privacy
from web.views.common import manager_required, render, visible_customer


@manager_required
@require_GET
def customer_personal_data(request, pk):
    """Everything stored about the customer, as a JSON download (recorded in the audit trail)."""
    customer = visible_customer(request, pk)
    data = privacy.export_personal_data(user=request.user, customer=customer)
    response = HttpResponse(privacy.to_json(data), content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="personal-data-customer-{customer.pk}.json"'
    return response


@manager_required
def customer_erase(request, pk):
    """GET: what erasing removes, and a form asking to type the external id. POST: erase."""
    customer = visible_customer(request, pk)
    error = ""
    if request.method == "POST":
        if request.POST.get("confirm", "").strip() != customer.external_id:
            error = "Type the customer's external id exactly to confirm."
        else:
            counts = privacy.erase_customer(user=request.user, customer=customer)
            messages.success(request, "Personal data erased: " + ", ".join(f"{n} {what}" for what, n in counts.items())
                             + " deleted; the profile is blank and left out of training.")
            return redirect("customer_detail", pk=customer.pk)
    response = render(request, "crm/customer_erase.html", {"customer": customer, "error": error})
    if error:
        response.status_code = 400
    return response
