"""Webhooks (crm.webhooks, ml.run_events): signed, retried on 5xx, final on 4xx, never sent twice,
the churn crossing and the due follow-ups, the SSRF guard. A real receiver on 127.0.0.1
(tests/webhook_receiver.py), the real database; the task functions are called directly."""
import json
import socket
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from crm import followups, webhooks
from crm.models import AuditEvent, Customer, FollowUp, WebhookDelivery, WebhookEndpoint
from crm.tasks import deliver_webhook_task, sweep_webhooks_task
from ml import services as ml_services
from ml.models import Forecast, TrainingRun
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    with Receiver() as r:
        yield r


def make_endpoint(url, events=("run.published", "customer.churn_risk", "followup.due"), user=None):
    return webhooks.create_endpoint(user=user, url=url, events=list(events))


def queue_one(key="test:1", data=None):
    webhooks.enqueue("run.published", [(key, data or {"run": 1}, None)])
    return WebhookDelivery.objects.get(event_key=key)


def deliver_all(now=None):
    """What the workers do with everything due now: one attempt each."""
    now = now or timezone.now()
    for pk in WebhookDelivery.objects.filter(status="pending", next_attempt_at__lte=now).values_list("pk", flat=True):
        webhooks.deliver(pk, now=now)


def make_run(kind="forecast", **fields):
    now = timezone.now()
    return TrainingRun.objects.create(kind=kind, status="succeeded", started_at=now, finished_at=now,
                                      metrics={"outcome": {"basis": "model", "summary": "beat the baselines"}},
                                      **fields)


# --- signing ---------------------------------------------------------------------------------------

def test_delivery_is_signed_with_the_endpoint_secret(receiver):
    endpoint = make_endpoint(receiver.url)
    delivery = queue_one(data={"run": 7})

    deliver_webhook_task(delivery.pk)  # the task's function, called here

    [(headers, body)] = receiver.requests
    assert webhooks.verify(endpoint.secret, headers["X-CRM-Signature"], body)
    assert not webhooks.verify(webhooks.new_secret(), headers["X-CRM-Signature"], body)
    assert not webhooks.verify(endpoint.secret, headers["X-CRM-Signature"], body.replace(b"7", b"8"))
    assert headers["X-CRM-Event"] == "run.published" and headers["X-CRM-Delivery"] == str(delivery.pk)
    assert json.loads(body) == {"id": "test:1", "event": "run.published", "created_at": delivery.payload["created_at"],
                                "data": {"run": 7}}
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)


def test_signature_older_than_the_tolerance_is_refused():
    header = webhooks.sign("whsec_x", 1_000_000, b"{}")

    assert webhooks.verify("whsec_x", header, b"{}", now=1_000_100)
    assert not webhooks.verify("whsec_x", header, b"{}", now=1_000_301)
    assert not webhooks.verify("whsec_x", "nonsense", b"{}")


# --- retries ---------------------------------------------------------------------------------------

def test_delivery_answered_500_is_retried_and_ends_delivered_after_two_attempts(receiver):
    make_endpoint(receiver.url)
    receiver.answers = [500, 200]
    delivery = queue_one()

    first = webhooks.deliver(delivery.pk)
    assert (first.status, first.attempts, first.last_status_code) == ("pending", 1, 500)
    assert timedelta(seconds=55) < first.next_attempt_at - timezone.now() <= timedelta(seconds=60)
    assert webhooks.deliver(delivery.pk) is None  # not due yet: nothing sent
    assert len(receiver.requests) == 1

    second = webhooks.deliver(delivery.pk, now=first.next_attempt_at)

    assert (second.status, second.attempts, second.last_status_code, second.last_error) == ("delivered", 2, 200, "")
    assert second.next_attempt_at is None and second.delivered_at is not None
    assert [h["X-CRM-Delivery"] for h, _ in receiver.requests] == [str(delivery.pk)] * 2
    assert receiver.requests[0][1] == receiver.requests[1][1]


def test_delivery_answered_400_is_final(receiver):
    make_endpoint(receiver.url)
    receiver.answers = [400]
    delivery = queue_one()

    done = webhooks.deliver(delivery.pk)

    assert (done.status, done.attempts, done.last_status_code, done.next_attempt_at) == ("failed", 1, 400, None)
    assert "not retried" in done.last_error
    assert webhooks.deliver(delivery.pk, now=timezone.now() + timedelta(days=3)) is None
    assert len(receiver.requests) == 1


def test_delivery_answered_429_waits_as_long_as_retry_after_says(receiver):
    make_endpoint(receiver.url)
    receiver.answers = [429]
    delivery = queue_one()

    done = webhooks.deliver(delivery.pk)

    assert done.status == "pending" and done.last_status_code == 429
    assert done.next_attempt_at - timezone.now() <= timedelta(seconds=60)  # no Retry-After: the first wait


def test_delivery_gives_up_after_the_last_attempt(receiver, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    make_endpoint(receiver.url)
    receiver.answers = [503, 503]
    delivery = queue_one()

    first = webhooks.deliver(delivery.pk)
    last = webhooks.deliver(delivery.pk, now=first.next_attempt_at)

    assert (last.status, last.attempts, last.next_attempt_at) == ("failed", 2, None)
    assert "gave up after 2 attempts" in last.last_error


def test_delivery_to_a_closed_port_is_retried(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    make_endpoint(f"http://127.0.0.1:{port}/")
    delivery = queue_one()

    done = webhooks.deliver(delivery.pk)

    assert (done.status, done.attempts, done.last_status_code) == ("pending", 1, None)
    assert done.last_error.startswith("connection failed")


def test_delivery_held_by_another_worker_is_not_sent(receiver):
    make_endpoint(receiver.url)
    delivery = queue_one()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(locked_until=timezone.now() + timedelta(minutes=5))

    assert webhooks.deliver(delivery.pk) is None
    assert receiver.requests == []


def test_delivery_of_a_worker_that_died_is_taken_over_after_its_lease(receiver):
    make_endpoint(receiver.url)
    delivery = queue_one()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(locked_until=timezone.now() - timedelta(seconds=1),
                                                          attempts=1)

    done = webhooks.deliver(delivery.pk)

    assert (done.status, done.attempts) == ("delivered", 2) and len(receiver.requests) == 1


def test_redeliver_sends_a_delivered_event_again(receiver):
    make_endpoint(receiver.url)
    delivery = queue_one()
    webhooks.deliver(delivery.pk)

    assert webhooks.redeliver([delivery]) == 1
    again = webhooks.deliver(delivery.pk)

    assert (again.status, again.attempts) == ("delivered", 1) and len(receiver.requests) == 2


# --- never twice -----------------------------------------------------------------------------------

def test_same_event_queued_twice_is_one_delivery(receiver):
    make_endpoint(receiver.url)

    assert webhooks.enqueue("run.published", [("run:1", {"run": 1}, None)]) == 1
    assert webhooks.enqueue("run.published", [("run:1", {"run": 1}, None), ("run:2", {"run": 2}, None)]) == 1

    assert sorted(WebhookDelivery.objects.values_list("event_key", flat=True)) == ["run:1", "run:2"]


def test_event_is_queued_only_for_active_endpoints_subscribed_to_it(receiver):
    subscribed = make_endpoint(receiver.url, events=["run.published"])
    make_endpoint(receiver.url, events=["followup.due"])
    paused = make_endpoint(receiver.url, events=["run.published"])
    webhooks.update_endpoint(user=None, endpoint=paused, active=False)

    queue_one()

    assert list(WebhookDelivery.objects.values_list("endpoint", flat=True)) == [subscribed.pk]


def test_publish_run_queues_run_published_once_and_it_is_sent_once(receiver):
    make_endpoint(receiver.url, events=["run.published"])
    run = make_run(kind="segmentation", as_of="2025-06-30")

    ml_services.publish_run(run.pk)
    ml_services.publish_run(run.pk)  # the live run again: nothing new to tell
    deliver_all()
    deliver_all()

    [(headers, body)] = receiver.requests
    data = json.loads(body)["data"]
    assert data == {"run": run.pk, "kind": "segmentation", "algorithm": "", "as_of": "2025-06-30",
                    "horizon_days": 90, "basis": "model", "summary": "beat the baselines",
                    "published_at": data["published_at"], "replaces_run": None, "rollback": False}
    assert WebhookDelivery.objects.get().status == "delivered"


def test_rollback_is_a_new_run_published_event(receiver):
    make_endpoint(receiver.url, events=["run.published"])
    old, new = make_run(kind="segmentation"), make_run(kind="segmentation")
    ml_services.publish_run(old.pk)
    ml_services.publish_run(new.pk)

    ml_services.publish_run(old.pk)

    events = [d.payload["data"] for d in WebhookDelivery.objects.order_by("pk")]
    assert [(e["run"], e["replaces_run"], e["rollback"]) for e in events] == [
        (old.pk, None, False), (new.pk, old.pk, False), (old.pk, new.pk, True)]


# --- churn risk ------------------------------------------------------------------------------------

def forecast_run(probabilities: dict):
    run = make_run()
    Forecast.objects.bulk_create([Forecast(run=run, customer=c, expected_purchases=1.0, churn_probability=p)
                                  for c, p in probabilities.items()])
    return run


def test_churn_risk_fires_only_for_customers_who_crossed_the_threshold(receiver, settings):
    settings.WEBHOOK_CHURN_THRESHOLD = 0.7
    c = {name: Customer.objects.create(external_id=name, name=f"Customer {name}")
         for name in ("rising", "high", "low", "new", "edge", "falling")}
    before = forecast_run({c["rising"]: 0.5, c["high"]: 0.8, c["low"]: 0.2, c["edge"]: 0.69, c["falling"]: 0.9})
    ml_services.publish_run(before.pk)
    make_endpoint(receiver.url, events=["customer.churn_risk"])
    after = forecast_run({c["rising"]: 0.75, c["high"]: 0.9, c["low"]: 0.3, c["new"]: 0.95, c["edge"]: 0.7,
                          c["falling"]: 0.4})

    ml_services.publish_run(after.pk)

    rows = {d.payload["data"]["customer"]["external_id"]: d for d in WebhookDelivery.objects.all()}
    assert set(rows) == {"rising", "new", "edge"}
    assert rows["rising"].event_key == f"churn:{after.pk}:{c['rising'].pk}"
    assert rows["rising"].payload["data"] == {
        "customer": {"id": c["rising"].pk, "external_id": "rising", "name": "Customer rising"},
        "churn_probability": 0.75, "previous": 0.5, "threshold": 0.7, "run": after.pk}
    assert rows["new"].payload["data"]["previous"] is None


def test_churn_risk_first_forecast_sets_the_baseline_and_sends_none(receiver):
    make_endpoint(receiver.url, events=["customer.churn_risk"])
    customer = Customer.objects.create(external_id="X")

    ml_services.publish_run(forecast_run({customer: 0.99}).pk)

    assert not WebhookDelivery.objects.exists()


def test_churn_risk_is_not_queued_without_a_subscriber(receiver):
    make_endpoint(receiver.url, events=["run.published"])
    customer = Customer.objects.create(external_id="X")

    ml_services.publish_run(forecast_run({customer: 0.99}).pk)

    assert list(WebhookDelivery.objects.values_list("event", flat=True)) == ["run.published"]


# --- follow-ups due --------------------------------------------------------------------------------

def test_followup_due_fires_once_and_again_when_moved(receiver, manager):
    make_endpoint(receiver.url, events=["followup.due"])
    now = timezone.now()
    WebhookEndpoint.objects.update(created_at=now - timedelta(days=3))  # made before these follow-ups came due
    customer = Customer.objects.create(external_id="F1", name="Fay")
    due = FollowUp.objects.create(customer=customer, owner=manager, due_at=now - timedelta(minutes=5), note="call")
    FollowUp.objects.create(customer=customer, owner=manager, due_at=now + timedelta(hours=1))  # not yet
    FollowUp.objects.create(customer=customer, owner=manager, due_at=now - timedelta(days=2))  # before the look-back
    FollowUp.objects.create(customer=customer, owner=manager, due_at=now - timedelta(minutes=1), status="done",
                            completed_at=now)

    sweep_webhooks_task()
    sweep_webhooks_task()  # beat's next sweep: nothing new
    deliver_all()

    [(headers, body)] = receiver.requests
    assert headers["X-CRM-Event"] == "followup.due"
    data = json.loads(body)["data"]
    assert (data["followup"], data["customer"]["external_id"], data["owner"], data["note"]) == (due.pk, "F1", "boss",
                                                                                                "call")
    # Moved to a later time that has come too: a new event for the new due time.
    followups.update_followup(user=manager, followup=due, due_at=now - timedelta(minutes=1))
    webhooks.sweep()
    deliver_all()
    assert len(receiver.requests) == 2 and WebhookDelivery.objects.count() == 2


def test_followup_due_before_the_endpoint_existed_is_not_sent(receiver, manager):
    customer = Customer.objects.create(external_id="F2")
    FollowUp.objects.create(customer=customer, owner=manager, due_at=timezone.now() - timedelta(minutes=5))
    make_endpoint(receiver.url, events=["followup.due"])

    assert webhooks.queue_due_followups() == 0


# --- endpoints and the SSRF guard ------------------------------------------------------------------

def test_private_url_is_refused_without_the_setting(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    for url in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.1.2.3/", "http://[::1]/",
                "http://169.254.169.254/latest/meta-data/"):
        with pytest.raises(ValidationError) as error:
            make_endpoint(url)
        assert "private addresses are refused" in str(error.value), url
    assert not WebhookEndpoint.objects.exists()


def test_url_other_than_http_is_refused(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    for url in ("ftp://example.com/", "file:///etc/passwd", "gopher://example.com/"):
        with pytest.raises(ValidationError):
            make_endpoint(url)


def test_private_address_is_refused_when_sending_without_the_setting(receiver, settings):
    make_endpoint(receiver.url)
    delivery = queue_one()
    settings.WEBHOOK_ALLOW_PRIVATE = False

    done = webhooks.deliver(delivery.pk)

    assert done.status == "failed" and done.last_error.startswith("refused: 127.0.0.1 is not a public address")
    assert receiver.requests == []


def test_name_resolving_to_a_private_address_is_refused_when_sending(receiver, settings):
    # This machine's own name: a name (so only its lookup can tell), resolving to a loopback or private address.
    make_endpoint(receiver.url.replace("127.0.0.1", socket.gethostname()))
    delivery = queue_one()
    settings.WEBHOOK_ALLOW_PRIVATE = False

    done = webhooks.deliver(delivery.pk)

    assert done.status == "failed" and "private addresses are refused" in done.last_error
    assert receiver.requests == []


def test_create_and_delete_endpoint_are_audited_without_the_secret(receiver, manager):
    endpoint = make_endpoint(receiver.url, user=manager)

    webhooks.delete_endpoint(user=manager, endpoint=endpoint)

    events = list(AuditEvent.objects.filter(object_type="webhook_endpoint").order_by("pk"))
    assert [(e.action, e.actor) for e in events] == [("create", manager), ("delete", manager)]
    assert not any(endpoint.secret in e.summary for e in events)
    assert endpoint.secret.startswith("whsec_") and len(endpoint.secret) > 40
