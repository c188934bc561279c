"""Customer page: insight cards, timeline, logging, suggestion feedback; 404 for others' customers."""
import pytest
from django.urls import reverse

from crm.models import Interaction
from ml.models import SuggestionFeedback, TrainingRun


def page(client, customer, **params):
    return client.get(reverse("customer_detail", args=[customer.pk]), params)


def test_customer_page_shows_segment_with_profile(rep_client, world):
    html = page(rep_client, world.ada).content.decode()
    assert "Champions: buy every 4 weeks, spend 3x the median buyer." in html


def test_customer_page_shows_forecast_with_range_and_factors(rep_client, world):
    html = page(rep_client, world.ada).content.decode()
    assert "P10–P90: 1.0 – 4.0" in html and "P10–P90: 100 – 400" in html
    assert "70 %" in html and "last purchase 10 days ago, usually buys every 35 days" in html


def test_customer_page_shows_suggestions_with_reasons(rep_client, world):
    html = page(rep_client, world.ada).content.decode()
    assert "Customers who buy Widget often buy Gadget" in html
    assert "Buys Widget every 30 days; last bought 31 days ago" in html


def test_customer_page_shows_holdout_accuracy(rep_client, world):
    html = page(rep_client, world.ada).content.decode()
    assert "How accurate has this forecast been?" in html and "91 %" in html and "2025-11-01" in html


def test_customer_page_without_models_says_retrain(manager_client, world):
    TrainingRun.objects.update(is_published=False)
    html = page(manager_client, world.ada).content.decode()
    assert "No forecast yet" in html and "No segmentation yet" in html and "No recommendation model yet" in html


def test_customer_page_no_profiling_shows_no_insights(rep_client, world):
    world.ada.no_profiling = True
    world.ada.save()
    html = page(rep_client, world.ada).content.decode()
    assert "objected to profiling" in html and "Customers who buy Widget" not in html


def test_customer_page_other_reps_customer_is_404(rep_client, world):
    assert page(rep_client, world.zed).status_code == 404


def test_customer_page_unassigned_customer_visible_to_rep(rep_client, world):
    assert page(rep_client, world.una).status_code == 200


@pytest.mark.parametrize("role", ["manager_client", "admin_client_"])
def test_customer_page_any_customer_visible_to_managers(request, world, role):
    assert page(request.getfixturevalue(role), world.zed).status_code == 200


def test_customer_page_queries_are_bounded(rep_client, world, django_assert_max_num_queries):
    with django_assert_max_num_queries(16):
        page(rep_client, world.ada)


def test_customer_log_call_appears_in_timeline(rep_client, world):
    response = rep_client.post(reverse("customer_log", args=[world.ada.pk]),
                               {"type": "call", "notes": "Discussed the spring order"}, follow=True)
    assert "Discussed the spring order" in response.content.decode()
    call = Interaction.objects.get(customer=world.ada, type="call")
    assert call.created_by == world.rep


def test_customer_log_rejects_unknown_type(rep_client, world):
    rep_client.post(reverse("customer_log", args=[world.ada.pk]), {"type": "purchase", "notes": "x"})
    assert not Interaction.objects.filter(customer=world.ada, notes="x").exists()


def test_customer_log_on_other_reps_customer_is_404(rep_client, world):
    response = rep_client.post(reverse("customer_log", args=[world.zed.pk]), {"type": "note", "notes": "sneaky"})
    assert response.status_code == 404
    assert not Interaction.objects.filter(notes="sneaky").exists()


def test_customer_log_requires_post(rep_client, world):
    assert rep_client.get(reverse("customer_log", args=[world.ada.pk])).status_code == 405


def test_customer_timeline_filters_by_type(rep_client, world):
    response = page(rep_client, world.ada, type="email")
    assert [i.type for i in response.context["timeline"]] == ["email"]


def test_customer_feedback_marks_suggestion_accepted(rep_client, world):
    response = rep_client.post(reverse("customer_feedback", args=[world.ada.pk]),
                               {"product": world.gadget.pk, "kind": "recommendation", "status": "accepted"},
                               follow=True)
    feedback = SuggestionFeedback.objects.get(customer=world.ada, product=world.gadget)
    assert feedback.status == "accepted" and feedback.run == world.rec_run
    assert 'class="badge accepted"' in response.content.decode()


def test_customer_feedback_changes_status(rep_client, world):
    url = reverse("customer_feedback", args=[world.ada.pk])
    rep_client.post(url, {"product": world.widget.pk, "kind": "reorder", "status": "offered"})
    rep_client.post(url, {"product": world.widget.pk, "kind": "reorder", "status": "declined"})
    assert list(SuggestionFeedback.objects.values_list("status", flat=True)) == ["declined"]


def test_customer_feedback_on_other_reps_customer_is_404(rep_client, world):
    response = rep_client.post(reverse("customer_feedback", args=[world.zed.pk]),
                               {"product": world.gadget.pk, "kind": "recommendation", "status": "accepted"})
    assert response.status_code == 404 and not SuggestionFeedback.objects.exists()


def test_customer_feedback_counted_on_models_page(rep_client, world):
    rep_client.post(reverse("customer_feedback", args=[world.ada.pk]),
                    {"product": world.gadget.pk, "kind": "recommendation", "status": "accepted"})
    feedback = dict((label, (total, live)) for label, total, live in
                    rep_client.get(reverse("model_list")).context["feedback"])
    assert feedback["Accepted"] == (1, 1)
