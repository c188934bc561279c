"""Who may use which endpoint; the rules themselves live in crm.selectors (the same as the pages)."""
from rest_framework.permissions import SAFE_METHODS, BasePermission

from crm import selectors


class HasCrmRole(BasePermission):
    """Signed in with a CRM role (sales rep, manager or admin). The default for every endpoint."""

    message = "Your account has no CRM role."

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated and selectors.is_staff_member(request.user))


class IsManager(HasCrmRole):
    """Managers and admins."""

    message = "Only managers and admins may do this."

    def has_permission(self, request, view):
        return super().has_permission(request, view) and selectors.is_manager(request.user)


class ManagerOfAllCustomers(IsManager):
    """Managers and admins, but not with an own-customers-only token: what this does (an import)
    may change any customer."""

    message = "Only managers and admins may do this, and not with an own-customers-only token."

    def has_permission(self, request, view):
        return super().has_permission(request, view) and selectors.sees_all_customers(request.user)


class ManagerWritesOnly(HasCrmRole):
    """Everyone with a role reads; managers and admins write."""

    message = "Only managers and admins may change this."

    def has_permission(self, request, view):
        if not super().has_permission(request, view):
            return False
        return request.method in SAFE_METHODS or selectors.is_manager(request.user)
