from django.apps import AppConfig


class CrmConfig(AppConfig):
    name = "crm"
    verbose_name = "CRM"

    def ready(self):
        # Imported here because models must be loaded first.
        from crm import jobs  # noqa: PLC0415 -- after the models (see above)
        from crm.imports import queue  # noqa: PLC0415 -- after the models (see above)

        jobs.register_pending("imports", queue.send_pending_imports)
