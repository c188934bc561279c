"""Correcting the timeline: reps edit and delete the activities they logged (not others', not
imported rows), managers anyone's; the same rules through the API; every change audited."""
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from crm.models import AuditEvent, Interaction


def logged(customer, user, *, notes="called", days=1):
    return Interaction.objects.create(external_id=f"web-{customer.pk}-{notes}", customer=customer, type="call",
                                      notes=notes, created_by=user, occurred_at=timezone.now() - timedelta(days=days))


def edit_data(**overrides):
    when = timezone.localtime() - timedelta(days=2)
    return {"type": "meeting", "occurred_at": when.strftime("%Y-%m-%dT%H:%M"), "notes": "met instead",
            "quantity": 1, "amount": "", **overrides}


def test_timeline_offers_edit_only_on_the_reps_own_activities(rep_client, world, rep):
    own = logged(world.ada, rep)

    html = rep_client.get(reverse("customer_detail", args=[world.ada.pk])).content.decode()

    assert reverse("interaction_edit", args=[own.pk]) in html
    imported = Interaction.objects.get(external_id=f"p-{world.ada.pk}")
    assert reverse("interaction_edit", args=[imported.pk]) not in html


def test_rep_edits_own_activity_and_it_is_audited(rep_client, world, rep):
    own = logged(world.ada, rep)

    response = rep_client.post(reverse("interaction_edit", args=[own.pk]), edit_data())

    assert response.status_code == 302
    own.refresh_from_db()
    assert (own.type, own.notes) == ("meeting", "met instead")
    event = AuditEvent.objects.get(action="update", object_type="interaction")
    assert event.object_id == str(own.pk) and event.actor == rep and "notes" in event.summary
    assert "met instead" not in event.summary  # field names, never values


def test_rep_cannot_edit_an_imported_activity_of_their_own_customer(rep_client, world):
    imported = Interaction.objects.get(external_id=f"p-{world.ada.pk}")

    assert rep_client.get(reverse("interaction_edit", args=[imported.pk])).status_code == 403
    assert rep_client.post(reverse("interaction_delete", args=[imported.pk]), {"confirm": "delete"}).status_code == 403
    assert Interaction.objects.filter(pk=imported.pk).exists()


def test_rep_cannot_see_another_reps_customers_activity(rep_client, world, other_rep):
    theirs = logged(world.zed, other_rep)

    assert rep_client.get(reverse("interaction_edit", args=[theirs.pk])).status_code == 404
    assert rep_client.post(reverse("interaction_delete", args=[theirs.pk]), {"confirm": "delete"}).status_code == 404


def test_rep_cannot_change_another_reps_activity_on_an_unassigned_customer(rep_client, world, other_rep):
    theirs = logged(world.una, other_rep)

    assert rep_client.get(reverse("interaction_edit", args=[theirs.pk])).status_code == 403


def test_rep_deletes_own_activity_and_it_is_audited(rep_client, world, rep):
    own = logged(world.ada, rep)

    response = rep_client.post(reverse("interaction_delete", args=[own.pk]), {"confirm": "delete"})

    assert response.status_code == 302 and response.url.endswith(f"/customers/{world.ada.pk}/#timeline")
    assert not Interaction.objects.filter(pk=own.pk).exists()
    event = AuditEvent.objects.get(action="delete", object_type="interaction")
    assert (event.object_id, event.customer_id, event.actor) == (str(own.pk), world.ada.pk, rep)


def test_delete_without_confirmation_deletes_nothing(rep_client, world, rep):
    own = logged(world.ada, rep)

    rep_client.post(reverse("interaction_delete", args=[own.pk]))

    assert Interaction.objects.filter(pk=own.pk).exists()


def test_edit_refuses_a_future_date(rep_client, world, rep):
    own = logged(world.ada, rep)

    response = rep_client.post(reverse("interaction_edit", args=[own.pk]), edit_data(occurred_at="2099-01-01T10:00"))

    assert response.status_code == 200
    assert "is in the future" in response.content.decode()
    own.refresh_from_db()
    assert own.type == "call"


def test_manager_edits_and_deletes_anyones_activity(manager_client, world, other_rep):
    theirs = logged(world.zed, other_rep)
    imported = Interaction.objects.get(external_id=f"p-{world.zed.pk}")

    assert manager_client.post(reverse("interaction_edit", args=[theirs.pk]), edit_data()).status_code == 302
    assert manager_client.post(reverse("interaction_delete", args=[imported.pk]), {"confirm": "delete"}).status_code == 302

    theirs.refresh_from_db()
    assert theirs.notes == "met instead" and not Interaction.objects.filter(pk=imported.pk).exists()
    assert AuditEvent.objects.filter(object_type="interaction", action__in=("update", "delete")).count() == 2


@pytest.fixture
def api_for():
    def make(user):
        client = APIClient()
        client.force_login(user)
        return client
    return make


def test_api_rep_deletes_own_activity_not_anothers(api_for, world, rep, other_rep):
    own, theirs = logged(world.ada, rep), logged(world.una, other_rep)
    api = api_for(rep)

    assert api.delete(f"/api/v1/interactions/{own.pk}/").status_code == 204
    assert api.delete(f"/api/v1/interactions/{theirs.pk}/").status_code == 403
    assert api.delete(f"/api/v1/interactions/{logged(world.zed, other_rep, notes='z').pk}/").status_code == 404
    assert list(AuditEvent.objects.filter(object_type="interaction").values_list("action", "object_id")) == [
        ("delete", str(own.pk))]


def test_api_rep_patches_own_activity_audited(api_for, world, rep):
    own = logged(world.ada, rep)

    response = api_for(rep).patch(f"/api/v1/interactions/{own.pk}/", {"notes": "fixed"}, format="json")

    assert response.status_code == 200 and response.json()["notes"] == "fixed"
    assert AuditEvent.objects.get(object_type="interaction").action == "update"
