from django.apps import AppConfig


class MlConfig(AppConfig):
    name = "ml"
    verbose_name = "Machine learning"

    def ready(self):
        # ml builds on crm: it tells crm what it keeps about customers, what to do after an
        # import, and how its queued runs are sent (crm.hooks, crm.jobs); crm never imports ml.
        # Imported here because models must be loaded first.
        from crm import hooks, jobs  # noqa: PLC0415 -- after the models (see above)
        from ml import customer_data, scoring, services  # noqa: PLC0415 -- after the models (see above)

        hooks.register_customer_data(customer_data.CUSTOMER_DATA)
        hooks.register_data_changed(services.request_retrain_all)
        jobs.register_pending("runs", services.send_pending_runs)
        jobs.register_pending("scoring chunks", scoring.send_pending_chunks)
