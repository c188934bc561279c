"""Reads of the CRM domain, with the row-level rule of who sees which customers."""
from django.db.models import Q

from crm.models import ROLE_ADMIN, ROLE_MANAGER, Customer, Interaction, Product


def user_roles(user) -> set[str]:
    if not user.is_authenticated:
        return set()
    roles = set(user.groups.values_list("name", flat=True))
    if user.is_superuser:
        roles.add(ROLE_ADMIN)
    return roles


def sees_all_customers(user) -> bool:
    return bool(user_roles(user) & {ROLE_MANAGER, ROLE_ADMIN})


def visible_customers(user):
    """Customers this user may see: all for managers and admins; own and unassigned for reps."""
    customers = Customer.objects.all()
    if sees_all_customers(user):
        return customers
    return customers.filter(Q(owner=user) | Q(owner__isnull=True))


def key_figures(user) -> dict:
    customers = visible_customers(user)
    return {
        "customers": customers.count(),
        "products": Product.objects.count(),
        "interactions": Interaction.objects.filter(customer__in=customers).count(),
    }
