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
    assert "P10–P90: 1.0 – 4.0" in html and "P10–P90: $100.00 – $400.00" in html
    assert "70 %" in html and "last purchase 10 days ago, usually buys every 35 days" in html


def test_customer_page_shows_amounts_in_the_currency(rep_client, world, settings):
    settings.CRM_CURRENCY = "EUR"

    html = page(rep_client, world.ada).content.decode()

    assert '<span class="value">€250.00</span><span class="label">spend</span>' in html
    assert '<span class="value">€1,000.00</span><span class="label">customer lifetime value</span>' in html
    assert "Widget</a> · €100.00" in html  # the purchase on the timeline
    assert "typically off by €70.00 per customer (simple guess: €80.00)" in html
    assert 'data-currency-symbol="€"' in html


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


# --- what the published runs did and did not forecast (issue 12) -------------------------------

def _publish_forecast(world, metrics, **values):
    """The world's forecast run with ``metrics``, every customer's row updated with ``values``."""
    from ml.models import Forecast

    TrainingRun.objects.filter(pk=world.fc_run.pk).update(metrics=metrics)
    Forecast.objects.filter(run=world.fc_run).update(**values)


def test_customer_page_spend_not_forecast_shows_the_reason_instead_of_a_number(rep_client, world):
    from .run_metrics import NO_AMOUNTS, forecast_metrics

    # given a forecast run on purchases without amounts: spend, its range and CLV are NULL
    _publish_forecast(world, forecast_metrics(spend=False), expected_spend=None, spend_p10=None, spend_p90=None,
                      clv=None, basis="model: ensemble")

    html = page(rep_client, world.ada).content.decode()

    # then spend and CLV say "not forecast" with the run's reason, and the other figures stay
    assert html.count('<span class="value">not forecast</span>') == 2 and NO_AMOUNTS in html
    assert "P10–P90: 1.0 – 4.0" in html and "70 %" in html
    assert "P10–P90: 100" not in html and "None" not in html
    # and the accuracy block leaves out the spend line, saying why instead
    assert "Spend: typically off by" not in html and "Purchases: typically off by 0.80" in html
    assert f"Spend and lifetime value: not forecast ({NO_AMOUNTS})." in html


def test_customer_page_labels_a_baseline_forecast_as_baseline(rep_client, world):
    from .run_metrics import forecast_metrics

    _publish_forecast(world, forecast_metrics(basis="baseline"), basis="baseline: naive rate")

    html = page(rep_client, world.ada).content.decode()

    assert '<span class="badge basis-baseline">baseline</span>' in html
    assert "Forecast by a simple baseline, naive rate (the customer&#x27;s own past rate carried forward): " \
           "no model beat it" in html


def test_customer_page_labels_a_model_forecast_with_its_algorithm(rep_client, world):
    from .run_metrics import forecast_metrics

    _publish_forecast(world, forecast_metrics(), basis="model: ensemble")

    html = page(rep_client, world.ada).content.decode()

    assert '<span class="badge basis-model">model</span>' in html and "Forecast by the ensemble model" in html
    # the accuracy figures are the most recent window's (its cut, window and customers)
    assert "Trained on data up to 2025-11-02" in html and "2,222 customers" in html
    assert "the most recent of 2 such windows" in html


def test_customer_page_names_each_targets_model_and_what_the_customer_rests_on(rep_client, world):
    from .run_metrics import forecast_metrics

    _publish_forecast(world, forecast_metrics(),
                      basis="model: ensemble for orders, bgnbd for spend and churn · population averages")

    html = page(rep_client, world.ada).content.decode()

    assert "Forecast by ensemble for orders, BG/NBD for spend and churn, each chosen over the simple baselines" in html
    assert "has bought on one day only" in html


def test_customer_page_not_yet_validated_says_so_instead_of_accuracy(rep_client, world):
    from .run_metrics import SHORT_HISTORY, forecast_metrics

    _publish_forecast(world, forecast_metrics(windows=0), basis=SHORT_HISTORY)

    html = page(rep_client, world.ada).content.decode()

    assert '<span class="badge basis-unvalidated">not yet validated</span>' in html
    assert "Not yet validated: 18 days of history. The forecast was fitted on all the history" in html
    assert "typically off by" not in html


def test_customer_page_empty_reorder_list_gives_the_runs_reason(rep_client, world):
    from .run_metrics import recommendation_metrics

    reason = "no re-buying: no customer bought any product twice, so no reorder list"
    TrainingRun.objects.filter(pk=world.rec_run.pk).update(metrics=recommendation_metrics(reorder_reason=reason))

    html = page(rep_client, world.una).content.decode()  # Una has no suggestion

    assert "No re-buying: no customer bought any product twice, so no reorder list." in html
    assert "Nothing due for reorder." not in html
    assert "No cross-sell suggestion for this customer." in html  # no cross_sell_reason on this run


def test_customer_page_empty_cross_sell_list_gives_the_runs_reason(rep_client, world):
    from .run_metrics import recommendation_metrics

    reason = "a single product: nothing new to offer."
    TrainingRun.objects.filter(pk=world.rec_run.pk).update(metrics=recommendation_metrics(cross_sell_reason=reason))

    html = page(rep_client, world.una).content.decode()

    assert "A single product: nothing new to offer." in html and "Nothing due for reorder." in html


def test_customer_page_recommendations_skipped_say_why(rep_client, world):
    # given no live recommendation run, the latest one skipped: the data has no product catalogue
    TrainingRun.objects.filter(pk=world.rec_run.pk).update(is_published=False)
    TrainingRun.objects.create(kind="recommendation", status="skipped",
                               error="no product catalogue: purchases name no product, so no recommendations")

    html = page(rep_client, world.ada).content.decode()

    assert html.count("No recommendations: no product catalogue: purchases name no product, so no "
                      "recommendations.") == 2
    assert "No recommendation model yet" not in html


def test_customer_page_with_new_metrics_queries_are_bounded(rep_client, world, django_assert_max_num_queries):
    from .run_metrics import forecast_metrics

    _publish_forecast(world, forecast_metrics(spend=False), expected_spend=None, clv=None)
    TrainingRun.objects.filter(pk=world.rec_run.pk).update(is_published=False)
    TrainingRun.objects.create(kind="recommendation", status="skipped", error="no product catalogue")
    with django_assert_max_num_queries(17):  # the 16 of a page with every model live, and why one was skipped
        page(rep_client, world.ada)
