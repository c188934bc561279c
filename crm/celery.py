"""The Celery application: configured from Django settings (the ``CELERY_`` names)."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")

app = Celery("crm")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The worker_ready handler that sends queued work lives in crm.tasks (autodiscovered by every
# worker), so this module imports nothing of the project's.
