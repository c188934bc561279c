"""Right of access and right to erasure: every door, every role, the planted data in the export,
all of it gone after an erasure (in every stored run), nothing else touched, all or nothing."""
import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.management import call_command
from django.db import IntegrityError
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from crm import privacy, services
from crm.models import AuditEvent, Customer, Interaction, Product
from ml.models import (
    CustomerSegment,
    Forecast,
    Prospect,
    Segment,
    Suggestion,
    SuggestionEvent,
    SuggestionFeedback,
    TrainingRun,
)

ADA = {"name": "Ada Lovelace", "email": "ada.lovelace@example.com", "phone": "+44 20 7946 0001",
       "company": "Analytical Engines Ltd", "city": "Marylebone"}


def _run(kind, published, as_of):
    now = timezone.now()
    return TrainingRun.objects.create(kind=kind, status="succeeded", is_published=published,
                                      published_at=now if published else None, finished_at=now, as_of=as_of)


class World:
    pass


@pytest.fixture
def world(rep, other_rep, manager):
    """Ada (rep's) with interactions and rows in two runs of each kind; Zed (other rep's) likewise."""
    w = World()
    w.ada = Customer.objects.create(external_id="C-ADA", owner=rep, country="UK", signup_date=date(2020, 1, 2),
                                    attributes={"loyalty_card": "LC-77"}, **ADA)
    w.zed = Customer.objects.create(external_id="C-ZED", name="Zed Zebra", email="zed@example.com", owner=other_rep)
    w.widget = Product.objects.create(sku="W-1", name="Widget", price=Decimal("9.50"))
    w.gadget = Product.objects.create(sku="G-1", name="Gadget", price=Decimal("20.00"))
    at = datetime(2025, 6, 1, 12, tzinfo=UTC)
    for c in (w.ada, w.zed):
        Interaction.objects.create(external_id=f"buy-{c.external_id}", customer=c, type="purchase", product=w.widget,
                                   amount=Decimal("19.00"), occurred_at=at, order_ref=f"O-{c.external_id}")
        Interaction.objects.create(external_id=f"call-{c.external_id}", customer=c, type="call", occurred_at=at,
                                   notes=f"Called {c.name} about the invoice")
    w.runs = []
    for as_of, published in ((date(2025, 5, 31), False), (date(2025, 6, 30), True)):
        seg, fc, rec = (_run(k, published, as_of) for k in ("segmentation", "forecast", "recommendation"))
        w.runs += [seg, fc, rec]
        segment = Segment.objects.create(run=seg, key=0, name=f"Regulars {as_of:%b}", size=2)
        for c in (w.ada, w.zed):
            CustomerSegment.objects.create(run=seg, customer=c, segment=segment, distance=0.5)
            Forecast.objects.create(run=fc, customer=c, expected_purchases=2.0, expected_spend=40.0,
                                    churn_probability=0.3, clv=120.0, expected_refund_rate=0.0,
                                    factors=[f"planted factor {as_of:%b} for {c.external_id}"])
            Suggestion.objects.create(run=rec, customer=c, kind="recommendation", rank=1, product=w.gadget,
                                      score=0.7, reason=f"planted reason {as_of:%b}", evidence={"co_buyers": 3})
        Prospect.objects.create(run=rec, product=w.gadget, rank=1, customer=w.ada, score=0.6, reason="prospect ada")
        Prospect.objects.create(run=rec, product=w.gadget, rank=2, customer=w.zed, score=0.5, reason="prospect zed")
    SuggestionFeedback.objects.create(customer=w.ada, product=w.gadget, kind="recommendation", status="declined",
                                      user=rep)
    SuggestionFeedback.objects.create(customer=w.zed, product=w.gadget, kind="recommendation", status="accepted")
    for c in (w.ada, w.zed):
        SuggestionEvent.objects.create(customer=c, product=w.gadget, kind="recommendation", event="offered",
                                       at=timezone.now())
    services.update_customer(user=manager, customer=w.ada, phone=ADA["phone"] + "9")
    w.ada.refresh_from_db()
    return w


def _rows_of(customer_id):
    return {
        "interactions": Interaction.objects.filter(customer_id=customer_id).count(),
        "segments": CustomerSegment.objects.filter(customer_id=customer_id).count(),
        "forecasts": Forecast.objects.filter(customer_id=customer_id).count(),
        "suggestions": Suggestion.objects.filter(customer_id=customer_id).count(),
        "prospects": Prospect.objects.filter(customer_id=customer_id).count(),
        "feedback": SuggestionFeedback.objects.filter(customer_id=customer_id).count(),
        "events": SuggestionEvent.objects.filter(customer_id=customer_id).count(),
    }


FULL = {"interactions": 2, "segments": 2, "forecasts": 2, "suggestions": 2, "prospects": 2, "feedback": 1, "events": 1}
NONE = dict.fromkeys(FULL, 0)


def _api(user):
    client = APIClient()
    client.force_login(user)
    return client


# --- right of access ------------------------------------------------------------------------------------

def test_personal_data_holds_the_profile_interactions_and_insights_of_every_run(world):
    data = privacy.personal_data(world.ada)

    assert data["customer"]["email"] == ADA["email"] and data["customer"]["attributes"] == {"loyalty_card": "LC-77"}
    assert sorted(i["external_id"] for i in data["interactions"]) == ["buy-C-ADA", "call-C-ADA"]
    assert {s["segment"] for s in data["segments"]} == {"Regulars May", "Regulars Jun"}
    assert sorted(f["factors"][0] for f in data["forecasts"]) == ["planted factor Jun for C-ADA",
                                                                   "planted factor May for C-ADA"]
    assert {(s["reason"], s["published"]) for s in data["suggestions"]} == {("planted reason May", False),
                                                                            ("planted reason Jun", True)}
    assert [p["reason"] for p in data["prospects"]] == ["prospect ada", "prospect ada"]
    assert [(f["status"], f["by"]) for f in data["suggestion_feedback"]] == [("declined", "rep1")]
    assert [(e["event"], e["product_sku"]) for e in data["suggestion_events"]] == [("offered", "G-1")]
    assert [e["action"] for e in data["audit_events"]] == ["update"]
    assert "Zed" not in json.dumps(data, default=str)


def test_personal_data_lists_the_customers_tags(world):
    from crm.models import CustomerTag, Tag

    CustomerTag.objects.create(customer=world.ada, tag=Tag.objects.create(name="VIP"))

    assert privacy.personal_data(world.ada)["customer"]["tags"] == ["VIP"]


def test_personal_data_says_why_a_forecast_value_is_null(world):
    # given the live forecast run could not forecast spend and CLV (purchases without amounts)
    reason = "no amounts: purchases carry no amount, so spend and CLV are not forecast"
    live = next(r for r in world.runs if r.kind == "forecast" and r.is_published)
    TrainingRun.objects.filter(pk=live.pk).update(metrics={"targets": {
        "orders": {"forecast": True}, "spend": {"forecast": False, "reason": reason},
        "clv": {"forecast": False, "reason": reason}}})
    Forecast.objects.filter(run=live).update(expected_spend=None, clv=None)

    forecasts = {f["run_id"]: f for f in privacy.personal_data(world.ada)["forecasts"]}

    assert (forecasts[live.pk]["expected_spend"], forecasts[live.pk]["clv"]) == (None, None)
    assert forecasts[live.pk]["not_forecast"] == {"spend": reason, "clv": reason}
    older = next(f for pk, f in forecasts.items() if pk != live.pk)
    assert older["not_forecast"] == {} and older["expected_spend"] == 40.0
    assert json.loads(privacy.to_json(privacy.personal_data(world.ada)))["forecasts"]


def test_personal_data_is_read_in_a_fixed_number_of_queries(world, django_assert_max_num_queries):
    for i in range(20):
        Interaction.objects.create(external_id=f"more-{i}", customer=world.ada, type="view", product=world.widget,
                                   occurred_at=timezone.now())
    # one query per section: the profile, its tags, interactions, audit; ml's segments, forecasts,
    # suggestions, prospects, feedback, events
    with django_assert_max_num_queries(10):
        privacy.personal_data(world.ada)


def test_personal_data_web_download_for_a_manager(client, manager, world):
    client.force_login(manager)

    response = client.get(reverse("customer_personal_data", args=[world.ada.pk]), REMOTE_ADDR="192.0.2.9")

    assert response.status_code == 200 and response["Content-Type"].startswith("application/json")
    assert f'filename="personal-data-customer-{world.ada.pk}.json"' in response["Content-Disposition"]
    data = json.loads(response.content)
    assert data["customer"]["name"] == ADA["name"] and len(data["forecasts"]) == 2
    event = AuditEvent.objects.get(action="personal_data_export")
    assert (event.actor, event.customer_id, event.ip) == (manager, world.ada.pk, "192.0.2.9")


def test_customer_page_offers_the_privacy_buttons_to_managers_only(client, rep, manager, world):
    export_url = reverse("customer_personal_data", args=[world.ada.pk])
    erase_url = reverse("customer_erase", args=[world.ada.pk])
    client.force_login(rep)
    page = client.get(reverse("customer_detail", args=[world.ada.pk])).content.decode()
    assert export_url not in page and erase_url not in page
    client.force_login(manager)
    page = client.get(reverse("customer_detail", args=[world.ada.pk])).content.decode()
    assert export_url in page and erase_url in page


def test_personal_data_web_refused_to_reps_even_for_their_own_customer(client, rep, world):
    client.force_login(rep)

    assert client.get(reverse("customer_personal_data", args=[world.ada.pk])).status_code == 403
    assert client.get(reverse("customer_personal_data", args=[world.zed.pk])).status_code == 403
    assert not AuditEvent.objects.filter(action="personal_data_export").exists()


def test_personal_data_api_for_a_manager(manager, world):
    response = _api(manager).get(f"/api/v1/customers/{world.ada.pk}/personal-data/")

    assert response.status_code == 200
    data = json.loads(response.content)
    assert data["format"] == privacy.FORMAT and len(data["suggestions"]) == 2
    assert AuditEvent.objects.filter(action="personal_data_export", customer_id=world.ada.pk).count() == 1


def test_personal_data_api_refused_to_reps(rep, world):
    client = _api(rep)

    assert client.get(f"/api/v1/customers/{world.ada.pk}/personal-data/").status_code == 403
    assert client.get(f"/api/v1/customers/{world.zed.pk}/personal-data/").status_code == 403


def test_personal_data_api_unknown_customer_is_404(manager, world):
    assert _api(manager).get("/api/v1/customers/999999/personal-data/").status_code == 404


def test_export_personal_data_command_writes_the_file(world, tmp_path):
    out = tmp_path / "ada.json"

    call_command("export_personal_data", "C-ADA", output=str(out))

    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["customer"]["external_id"] == "C-ADA" and len(data["interactions"]) == 2
    assert AuditEvent.objects.get(action="personal_data_export").actor is None


# --- right to erasure -------------------------------------------------------------------------------------

def test_erase_deletes_their_rows_in_every_run_and_leaves_others_untouched(manager, world):
    zed_before = _rows_of(world.zed.pk)
    assert _rows_of(world.ada.pk) == FULL

    counts = privacy.erase_customer(user=manager, customer=world.ada)

    assert _rows_of(world.ada.pk) == NONE
    assert _rows_of(world.zed.pk) == zed_before == FULL
    assert counts == {"interactions": 2, "segments": 2, "forecasts": 2, "suggestions": 2, "prospects": 2,
                      "suggestion feedback": 1, "suggestion events": 1}
    zed = Customer.objects.get(pk=world.zed.pk)
    assert (zed.name, zed.email, zed.external_id, zed.no_profiling) == ("Zed Zebra", "zed@example.com", "C-ZED",
                                                                        False)


def test_erase_blanks_the_profile_and_leaves_it_out_of_training(manager, world):
    privacy.erase_customer(user=manager, customer=world.ada)

    ada = Customer.objects.get(pk=world.ada.pk)
    assert all(getattr(ada, f) == "" for f in privacy.PERSONAL_FIELDS)
    assert ada.external_id == f"erased-{ada.pk}" and ada.attributes == {} and ada.signup_date is None
    assert ada.no_profiling and ada.erased_at is not None and ada.last_purchase_at is None
    assert ada.owner == world.ada.owner  # the rep's book keeps its size


def test_erase_leaves_no_personal_data_in_the_audit_trail_or_admin_history(manager, admin_user, world):
    LogEntry.objects.log_actions(user_id=admin_user.pk, queryset=[world.ada], action_flag=CHANGE,
                                 change_message="Changed phone.")
    privacy.export_personal_data(user=manager, customer=world.ada)

    privacy.erase_customer(user=manager, customer=world.ada)

    event = AuditEvent.objects.get(action="erase")
    assert (event.actor, event.actor_username, event.object_id, event.customer_id) == (
        manager, "boss", str(world.ada.pk), world.ada.pk)
    trail = json.dumps(list(AuditEvent.objects.values()), default=str)
    history = json.dumps(list(LogEntry.objects.values()), default=str)
    for value in [*ADA.values(), ADA["phone"] + "9", "C-ADA", "LC-77"]:
        assert value not in trail and value not in history, value
    assert AuditEvent.objects.filter(customer_id=world.ada.pk).count() == 3  # update, export, erase


def test_erase_failing_midway_changes_nothing(manager, world):
    # The tombstone key is taken, so the last step (blanking the row) violates a unique
    # constraint after every delete has run: the whole erasure must roll back.
    Customer.objects.create(external_id=f"erased-{world.ada.pk}")
    events_before = AuditEvent.objects.count()

    with pytest.raises(IntegrityError):
        privacy.erase_customer(user=manager, customer=world.ada)

    assert _rows_of(world.ada.pk) == FULL
    ada = Customer.objects.get(pk=world.ada.pk)
    assert (ada.email, ada.external_id, ada.no_profiling, ada.erased_at) == (ADA["email"], "C-ADA", False, None)
    assert AuditEvent.objects.count() == events_before


def test_erase_refused_to_reps(rep, world):
    with pytest.raises(services.NotAllowed):
        privacy.erase_customer(user=rep, customer=world.ada)
    assert _rows_of(world.ada.pk) == FULL


def test_erase_web_asks_for_confirmation_first(client, manager, world):
    client.force_login(manager)
    url = reverse("customer_erase", args=[world.ada.pk])

    page = client.get(url)
    wrong = client.post(url, {"confirm": "C-ZED"})

    assert page.status_code == 200 and "cannot be undone" in page.content.decode()
    assert wrong.status_code == 400 and _rows_of(world.ada.pk) == FULL


def test_erase_web_erases_after_confirmation(client, manager, world):
    client.force_login(manager)

    response = client.post(reverse("customer_erase", args=[world.ada.pk]), {"confirm": "C-ADA"})

    assert response.status_code == 302 and response["Location"] == reverse("customer_detail", args=[world.ada.pk])
    assert _rows_of(world.ada.pk) == NONE
    page = client.get(response["Location"]).content.decode()
    assert "Personal data erased" in page and ADA["email"] not in page


def test_erase_web_refused_to_reps(client, rep, world):
    client.force_login(rep)

    assert client.get(reverse("customer_erase", args=[world.ada.pk])).status_code == 403
    assert client.post(reverse("customer_erase", args=[world.ada.pk]), {"confirm": "C-ADA"}).status_code == 403
    assert _rows_of(world.ada.pk) == FULL


def test_erase_api_for_a_manager(manager, world):
    response = _api(manager).post(f"/api/v1/customers/{world.ada.pk}/erase/")

    assert response.status_code == 200
    assert response.json()["deleted"]["interactions"] == 2 and response.json()["erased_at"]
    assert _rows_of(world.ada.pk) == NONE


def test_erase_api_refused_to_reps(rep, world):
    response = _api(rep).post(f"/api/v1/customers/{world.ada.pk}/erase/")

    assert response.status_code == 403 and _rows_of(world.ada.pk) == FULL


def test_erase_customer_command(world):
    call_command("erase_customer", "C-ADA", interactive=False)

    assert _rows_of(world.ada.pk) == NONE
    assert AuditEvent.objects.get(action="erase").actor is None


def test_erase_customer_command_without_confirmation_erases_nothing(world, monkeypatch):
    from django.core.management.base import CommandError

    monkeypatch.setattr("builtins.input", lambda prompt: "no")  # the terminal: an edge, not our code
    with pytest.raises(CommandError):
        call_command("erase_customer", "C-ADA")
    assert _rows_of(world.ada.pk) == FULL


# --- retraining after an erasure --------------------------------------------------------------------------

AS_OF = date(2025, 6, 30)


@pytest.mark.slow
def test_retrain_after_erase_has_no_rows_and_no_data_of_the_erased_customer(db, manager):
    from ml import services as ml_services

    call_command("seed_demo", customers=150, seed=5, end=AS_OF.isoformat())
    for kind in ("segmentation", "recommendation"):
        ml_services.run_now(kind, as_of=AS_OF)
    # A customer who bought, was segmented, got suggestions and was named as a prospect.
    buyers = set(Prospect.objects.values_list("customer_id", flat=True)) & set(
        Suggestion.objects.values_list("customer_id", flat=True))
    victim = Customer.objects.filter(pk__in=buyers, interactions__type="purchase").distinct().first()
    assert victim is not None
    seen_before = TrainingRun.objects.get(kind="recommendation", is_published=True).data_counts["interactions"]
    victims = Interaction.objects.filter(customer=victim, occurred_at__lt=datetime(2025, 7, 1, tzinfo=UTC)).count()

    privacy.erase_customer(user=manager, customer=victim)
    runs = {kind: ml_services.run_now(kind, as_of=AS_OF) for kind in ("segmentation", "recommendation")}

    assert not Interaction.objects.filter(customer=victim).exists()
    for run in runs.values():
        assert run.status == "succeeded", run.error
        assert run.data_counts["interactions"] == seen_before - victims > 0
    assert not CustomerSegment.objects.filter(customer=victim).exists()
    assert not Suggestion.objects.filter(customer=victim).exists()
    assert not Prospect.objects.filter(customer=victim).exists()
    assert CustomerSegment.objects.filter(run=runs["segmentation"]).exists()
    assert Prospect.objects.filter(run=runs["recommendation"]).exists()
