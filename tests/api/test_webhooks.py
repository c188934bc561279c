"""The webhooks API (/api/v1/webhooks/) and admin: managers and admins manage endpoints, reps get
403; the secret is in the creating answer only; the delivery log; the admin's test event and
redelivery, audited through crm.webhooks."""
import pytest
from django.urls import reverse

from crm import webhooks
from crm.models import AuditEvent, WebhookDelivery, WebhookEndpoint
from tests.api.conftest import error_of

pytestmark = pytest.mark.django_db
URL = "https://hooks.example.com/crm"


def test_webhooks_api_refuses_sales_reps(rep_client):
    assert rep_client.get("/api/v1/webhooks/").status_code == 403
    response = rep_client.post("/api/v1/webhooks/", {"url": URL, "events": ["run.published"]}, format="json")
    assert response.status_code == 403 and not WebhookEndpoint.objects.exists()


def test_webhooks_api_create_shows_the_secret_once(manager_client, manager):
    response = manager_client.post("/api/v1/webhooks/", {"url": URL, "events": ["customer.churn_risk"],
                                                         "description": "retention"}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    endpoint = WebhookEndpoint.objects.get()
    assert body["secret"] == endpoint.secret and body["created_by"] == "boss" and body["events"] == [
        "customer.churn_risk"]
    assert "secret" not in manager_client.get(f"/api/v1/webhooks/{endpoint.pk}/").json()
    assert "secret" not in manager_client.get("/api/v1/webhooks/").json()["results"][0]
    assert AuditEvent.objects.get(object_type="webhook_endpoint").actor == manager


def test_webhooks_api_refuses_an_unknown_event_and_a_private_url(manager_client, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    unknown = manager_client.post("/api/v1/webhooks/", {"url": URL, "events": ["customer.born"]}, format="json")
    private = manager_client.post("/api/v1/webhooks/", {"url": "http://192.168.1.10/", "events": ["run.published"]},
                                  format="json")

    assert unknown.status_code == 400 and "events.0" in error_of(unknown)["fields"]
    assert private.status_code == 400 and "private" in error_of(private)["fields"]["url"][0]
    assert not WebhookEndpoint.objects.exists()


def test_webhooks_api_change_rolls_the_secret_and_delete_is_audited(manager_client):
    endpoint = webhooks.create_endpoint(user=None, url=URL, events=["run.published"])

    changed = manager_client.patch(f"/api/v1/webhooks/{endpoint.pk}/", {"active": False, "roll_secret": True},
                                   format="json")
    deleted = manager_client.delete(f"/api/v1/webhooks/{endpoint.pk}/")

    assert changed.status_code == 200 and changed.json()["active"] is False
    assert changed.json()["secret"] != endpoint.secret and changed.json()["secret"].startswith("whsec_")
    assert deleted.status_code == 204 and not WebhookEndpoint.objects.exists()
    assert list(AuditEvent.objects.order_by("pk").values_list("action", flat=True)) == ["create", "update", "delete"]


def test_webhooks_api_lists_an_endpoints_deliveries(admin_client, django_assert_num_queries):
    endpoint = webhooks.create_endpoint(user=None, url=URL, events=["run.published"])
    other = webhooks.create_endpoint(user=None, url=URL + "/2", events=["run.published"])
    webhooks.enqueue("run.published", [(f"run:{i}", {"run": i}, None) for i in range(3)])
    WebhookDelivery.objects.filter(event_key="run:0").update(status="failed", last_status_code=410,
                                                             last_error="answered 410")

    with django_assert_num_queries(7):  # session, user, OTP device, roles, endpoint, count, page
        response = admin_client.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries/")
    failed = admin_client.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries/", {"status": "failed"}).json()

    rows = response.json()["results"]
    assert [r["event_key"] for r in rows] == ["run:2", "run:1", "run:0"]
    assert {r["id"] for r in rows}.isdisjoint(other.deliveries.values_list("pk", flat=True))
    assert [(r["event_key"], r["last_status_code"]) for r in failed["results"]] == [("run:0", 410)]


def test_webhooks_api_ping_queues_a_test_event(manager_client):
    endpoint = webhooks.create_endpoint(user=None, url=URL, events=["followup.due"])

    response = manager_client.post(f"/api/v1/webhooks/{endpoint.pk}/ping/")

    assert response.status_code == 202 and response.json() == {"queued": 1}
    assert WebhookDelivery.objects.get().event == "ping"


def test_admin_creates_an_endpoint_through_the_service_and_shows_its_secret(client, admin_user):
    client.force_login(admin_user)
    response = client.post(reverse("admin:crm_webhookendpoint_add"),
                           {"url": URL, "events": ["run.published", "followup.due"], "description": "ops",
                            "active": "on"})

    assert response.status_code == 302, response.content[:2000]
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == ["run.published", "followup.due"] and endpoint.created_by == admin_user
    assert AuditEvent.objects.filter(object_type="webhook_endpoint", action="create").count() == 1
    page = client.get(reverse("admin:crm_webhookendpoint_change", args=[endpoint.pk]))
    assert endpoint.secret in page.content.decode()


def test_admin_refuses_a_url_that_is_not_http(client, admin_user):
    client.force_login(admin_user)
    response = client.post(reverse("admin:crm_webhookendpoint_add"),
                           {"url": "file:///etc/passwd", "events": ["run.published"], "active": "on"})

    assert response.status_code == 200 and "only http:// and https://" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_admin_test_event_and_redeliver_actions(client, admin_user):
    client.force_login(admin_user)
    endpoint = webhooks.create_endpoint(user=None, url=URL, events=["run.published"])
    client.post(reverse("admin:crm_webhookendpoint_changelist"),
                {"action": "send_test_event", "_selected_action": [endpoint.pk]})
    ping = WebhookDelivery.objects.get(event="ping")
    WebhookDelivery.objects.filter(pk=ping.pk).update(status="failed", attempts=1, next_attempt_at=None)

    client.post(reverse("admin:crm_webhookdelivery_changelist"),
                {"action": "redeliver", "_selected_action": [ping.pk]})

    ping.refresh_from_db()
    assert (ping.status, ping.attempts) == ("pending", 0) and ping.next_attempt_at is not None
