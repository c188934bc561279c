"""The audit trail: one event per use case, in the change's transaction, with field names and
counts but no values, readable by admins only (read-only admin)."""
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from crm import audit, services
from crm.models import ROLE_MANAGER, AuditEvent, Customer, Interaction, Product
from ml import services as ml_services
from ml.models import TrainingRun

A = AuditEvent.Action


@pytest.fixture
def ada(rep):
    return Customer.objects.create(external_id="C-ADA", name="Ada Lovelace", email="ada@example.com",
                                   phone="+44 1234", owner=rep)


@pytest.fixture
def widget(db):
    return Product.objects.create(sku="W-1", name="Widget", price=Decimal("9.50"))


def test_record_is_a_single_insert(django_assert_num_queries, manager):
    with django_assert_num_queries(1):
        event = audit.record(A.EXPORT, user=manager, object_type="export", summary="x")
    assert event.actor == manager and event.actor_username == "boss" and event.ip is None


def test_update_customer_records_field_names_not_values(manager, ada):
    services.update_customer(user=manager, customer=ada, email="new@example.com", phone="+44 999", name=ada.name)

    event = AuditEvent.objects.get()
    assert (event.action, event.object_type, event.object_id, event.customer_id) == (
        A.UPDATE, "customer", str(ada.pk), ada.pk)
    assert event.summary == f"customer {ada.pk} updated: fields email, phone"
    assert event.actor == manager and event.actor_username == "boss"


def test_create_and_delete_customer_are_recorded(manager):
    customer = services.create_customer(user=manager, external_id="C-NEW", name="Neville New")
    pk = customer.pk
    services.delete_customer(user=manager, customer=customer)

    assert list(AuditEvent.objects.order_by("id").values_list("action", "object_id")) == [
        (A.CREATE, str(pk)), (A.DELETE, str(pk))]
    assert not AuditEvent.objects.filter(summary__contains="Neville").exists()


def test_refused_change_leaves_no_event(manager, ada, widget):
    Interaction.objects.create(external_id="i1", customer=ada, type="purchase", product=widget,
                               occurred_at=timezone.now())

    with pytest.raises(services.InUse):
        services.delete_product(user=manager, product=widget)

    assert Product.objects.filter(pk=widget.pk).exists()
    assert not AuditEvent.objects.exists()


def test_product_update_records_changed_fields(manager, widget):
    services.update_product(user=manager, product=widget, price=Decimal("12.00"), name="Widget")

    event = AuditEvent.objects.get()
    assert (event.action, event.object_type, event.summary) == (A.UPDATE, "product",
                                                                f"product {widget.pk} updated: fields price")


def test_interaction_log_update_delete_are_recorded_against_the_customer(rep, ada):
    interaction = services.log_interaction(user=rep, customer=ada, type="call", notes="Talked about Ada's secret")
    services.update_interaction(user=rep, interaction=interaction, notes="changed")
    services.delete_interaction(user=rep, interaction=interaction)

    events = list(AuditEvent.objects.order_by("id"))
    assert [e.action for e in events] == [A.CREATE, A.UPDATE, A.DELETE]
    assert {e.customer_id for e in events} == {ada.pk}
    assert events[1].summary.endswith(": fields notes")
    assert not AuditEvent.objects.filter(summary__icontains="secret").exists()


def test_bulk_upsert_records_one_event_with_counts(rep, ada):
    items = [{"customer_external_id": "C-ADA", "type": "call", "occurred_at": f"2025-06-{d:02}", "notes": "n"}
             for d in range(1, 6)] + [{"customer_external_id": "C-NOPE", "type": "call", "occurred_at": "2025-06-01"}]

    services.upsert_interactions(user=rep, items=items)

    event = AuditEvent.objects.get()
    assert event.action == A.BULK_UPSERT and event.actor == rep
    assert event.summary == "6 items: 5 created, 0 updated, 0 unchanged, 1 rejected, 1 customers touched"


def test_import_records_one_event_per_run_with_counts(manager, write_csv):
    customers = write_csv("customers.csv", ["external_id", "name", "email"],
                          [[f"C{i}", f"Person {i}", f"p{i}@example.com"] for i in range(30)])

    run = services.import_files({"customers": customers}, user=manager, batch_size=10)

    event = AuditEvent.objects.get()
    assert (event.action, event.object_type, event.object_id, event.actor) == (A.IMPORT, "import", str(run.pk),
                                                                                manager)
    assert "customers: 30 created" in event.summary and "@" not in event.summary


def test_web_export_records_filter_names_not_values_and_the_ip(client, manager, ada):
    client.force_login(manager)

    response = client.get(reverse("customer_export"), {"q": "Lovelace"}, REMOTE_ADDR="203.0.113.7")
    b"".join(response.streaming_content)

    event = AuditEvent.objects.get()
    assert event.action == A.EXPORT and event.actor == manager and event.ip == "203.0.113.7"
    assert event.summary == "customer list (web CSV) exported; filters q"


def test_export_insights_command_records_an_event(db, tmp_path):
    call_command("export_insights", out=str(tmp_path / "out.csv"))

    event = AuditEvent.objects.get()
    assert event.action == A.EXPORT and event.actor is None
    assert event.summary == "insights of 0 customers (export_insights command) exported; no filter"


def _succeeded_run(kind, published):
    now = timezone.now()
    return TrainingRun.objects.create(kind=kind, status="succeeded", is_published=published,
                                      published_at=now if published else None, finished_at=now)


def test_retrain_request_is_recorded_with_its_requester(manager):
    run, created = ml_services.request_retrain("forecast", user=manager, enqueue=False)

    event = AuditEvent.objects.get()
    assert created and (event.action, event.object_id, event.actor) == (A.RETRAIN, str(run.pk), manager)


def test_publishing_an_older_run_through_the_api_is_a_rollback(manager):
    older = _succeeded_run("segmentation", published=False)
    newer = _succeeded_run("segmentation", published=True)
    client = APIClient()
    client.force_login(manager)

    response = client.post(f"/api/v1/training-runs/{older.pk}/publish/", REMOTE_ADDR="198.51.100.2")

    assert response.status_code == 200
    event = AuditEvent.objects.get()
    assert (event.action, event.object_id, event.actor, event.ip) == (A.ROLLBACK, str(older.pk), manager,
                                                                      "198.51.100.2")
    assert event.summary == f"segmentation run {older.pk} published, replacing run {newer.pk}"


def test_publishing_a_newer_run_is_a_publish(db):
    _succeeded_run("forecast", published=True)
    newer = _succeeded_run("forecast", published=False)

    ml_services.publish_run(newer.pk)

    assert AuditEvent.objects.get().action == A.PUBLISH


# --- who can read it ---------------------------------------------------------------------------------

@pytest.fixture
def an_event(manager):
    return audit.record(A.EXPORT, user=manager, object_type="export", summary="customer list exported")


def test_admin_reads_the_audit_log_with_filters_and_search(client, admin_user, an_event):
    client.force_login(admin_user)
    url = reverse("admin:crm_auditevent_changelist")

    assert client.get(url).status_code == 200
    page = client.get(url, {"action__exact": "export", "q": "customer list"})
    assert page.status_code == 200 and "customer list exported" in page.content.decode()
    assert client.get(url, {"action__exact": "erase"}).context["cl"].result_count == 0
    assert client.get(reverse("admin:crm_auditevent_change", args=[an_event.pk])).status_code == 200


def test_admin_cannot_add_change_or_delete_audit_events(client, admin_user, an_event):
    client.force_login(admin_user)

    assert client.get(reverse("admin:crm_auditevent_add")).status_code == 403
    assert client.post(reverse("admin:crm_auditevent_delete", args=[an_event.pk]), {"post": "yes"}).status_code == 403
    client.post(reverse("admin:crm_auditevent_change", args=[an_event.pk]), {"summary": "tampered"})
    an_event.refresh_from_db()
    assert an_event.summary == "customer list exported"


def test_manager_made_staff_cannot_see_the_audit_log(client, make_user, an_event):
    # Managers are not staff (only admins have the admin), but an admin may make one staff by hand.
    manager = make_user("staffboss", ROLE_MANAGER, is_staff=True)
    client.force_login(manager)

    assert client.get(reverse("admin:crm_auditevent_changelist")).status_code == 403
    assert "auditevent" not in client.get(reverse("admin:index")).content.decode()


def test_rep_cannot_see_the_audit_log(client, rep, an_event):
    client.force_login(rep)

    response = client.get(reverse("admin:crm_auditevent_changelist"))

    assert response.status_code == 302 and "/admin/login/" in response["Location"]

