from django.apps import AppConfig


class CrmConfig(AppConfig):
    name = "crm"
    verbose_name = "CRM"

    def ready(self):
        # Imported here because models must be loaded first.
        from crm import jobs
        from crm.imports import queue

        jobs.register_pending("imports", queue.send_pending_imports)
