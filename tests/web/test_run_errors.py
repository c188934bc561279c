"""A failed run is one sentence on the Models page, in the API, the status poll and the admin list;
its traceback (with the server's paths) only on the admin's run page. The Models page says whom
each live run left out, and why."""
from datetime import date

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from ml import run_reports as ml_selectors
from ml.models import TrainingRun

TRACEBACK_ERROR = (
    "ValueError: cannot reshape an empty array in /srv/crm/ml/pipelines/forecasting.py\n\n"
    "Traceback (most recent call last):\n"
    '  File "/srv/crm/ml/services.py", line 201, in execute_run\n'
    "    outcome = TRAINERS[run.kind](run, progress)\n"
    "ValueError: cannot reshape an empty array in /srv/crm/ml/pipelines/forecasting.py\n")
SENTENCE = ("Training failed on an unexpected error (ValueError: cannot reshape an empty array in …); the "
            "published insights are unchanged, and the details are in the server log and the run's admin page.")


@pytest.fixture
def failed(db):
    return TrainingRun.objects.create(kind="forecast", status="failed", error=TRACEBACK_ERROR)


def test_run_error_sentence_is_one_sentence_without_paths(failed):
    assert ml_selectors.run_error_sentence(failed) == SENTENCE


def test_run_error_sentence_keeps_a_plain_reason():
    run = TrainingRun(kind="forecast", status="failed", error="there are no interactions yet: import data first")

    assert ml_selectors.run_error_sentence(run) == "there are no interactions yet: import data first"


def test_models_page_shows_the_sentence_not_the_traceback(rep_client, failed):
    html = rep_client.get(reverse("model_list")).content.decode()

    assert "Training failed on an unexpected error (ValueError" in html
    assert "Traceback" not in html and "/srv/crm" not in html


def test_api_and_status_poll_show_the_sentence(rep, rep_client, failed):
    api = APIClient()
    api.force_login(rep)

    assert api.get(f"/api/v1/training-runs/{failed.pk}/").json()["error"] == SENTENCE
    assert rep_client.get(reverse("run_status", args=[failed.pk])).json()["error"] == SENTENCE


def test_admin_list_shows_the_sentence_and_the_run_page_the_traceback(admin_client_, failed):
    listing = admin_client_.get(reverse("admin:ml_trainingrun_changelist")).content.decode()
    detail = admin_client_.get(reverse("admin:ml_trainingrun_change", args=[failed.pk])).content.decode()

    assert "Training failed on an unexpected error" in listing and "Traceback" not in listing
    assert "Traceback (most recent call last)" in detail and "/srv/crm/ml/services.py" in detail


def test_models_page_says_whom_the_live_forecast_left_out(rep_client, world):
    world.fc_run.data_counts = {"customers": 10, "buyers": 7, "no_profiling": 2, "customers_without_purchase": 3,
                                "interactions_after_as_of": 4, "future_interactions": 1}
    world.fc_run.as_of = date(2026, 1, 31)
    world.fc_run.save()

    html = rep_client.get(reverse("model_list")).content.decode()

    assert f"Left out by run #{world.fc_run.pk}" in html
    assert "2 customers who objected to profiling: left out of training" in html
    assert "3 customers without a purchase on or before 2026-01-31: no forecast (nothing to forecast from)" in html
    assert "4 interactions dated after 2026-01-31: not read (1 of them in the future" in html
