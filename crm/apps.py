from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class CrmConfig(AppConfig):
    name = "crm"
    verbose_name = "CRM"

    def ready(self):
        # Imported here because models must be loaded first.
        from crm import jobs  # noqa: PLC0415 -- after the models (see above)
        from crm.imports import queue  # noqa: PLC0415 -- after the models (see above)

        jobs.register_pending("imports", queue.send_pending_imports)


class CrmAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin, whose site (``admin.site``) lets staff in only with a verified second factor."""

    default = False  # "crm" in INSTALLED_APPS means CrmConfig; this one is named in full there
    default_site = "crm.admin_site.CrmAdminSite"
