"""The admin site: Django's, refusing staff whose session has not passed its second factor.

django-otp's OTPAdminSite makes the check (``request.user.is_verified()``). Its own login page
asks for the password and the code at once; ours keeps Django's password page, and the OTP step
(web.middleware) follows it exactly as it does after the site's login, so there is one OTP page.
A staff member with no device at all (a sales rep made staff) is refused: the admin login page
says they are signed in but not allowed.
"""
from django.contrib.admin.forms import AdminAuthenticationForm
from django_otp.admin import OTPAdminSite


class CrmAdminSite(OTPAdminSite):
    login_form = AdminAuthenticationForm
    login_template = None  # Django's admin/login.html

    def __init__(self, name="admin"):  # OTPAdminSite names itself "otpadmin"; the URLs say admin:
        super().__init__(name)
