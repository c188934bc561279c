"""/api/v1/follow-ups/: list with filters, create, retrieve, partial update, complete (logs the
interaction), row rules (another rep's is a 404), closed ones are a 409."""
from datetime import timedelta

from django.utils import timezone

from crm import followups
from crm.models import FollowUp, Interaction
from tests.api.conftest import error_of

URL = "/api/v1/follow-ups/"


def _due(hours=1):
    return (timezone.now() + timedelta(hours=hours)).isoformat()


def test_create_retrieve_and_list_with_filters(book, rep_client, rep):
    response = rep_client.post(URL, {"customer": book["mine"].pk, "type": "call", "due_at": _due(),
                                     "note": "Offer Ball", "product": "TOY-1", "suggestion_kind": "recommendation"},
                               format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["owner"], body["status"], body["product"], body["interaction"]) == ("rep1", "open", "TOY-1", None)
    assert rep_client.get(f"{URL}{body['id']}/").json()["note"] == "Offer Ball"
    followups.create_followup(user=rep, customer=book["mine"], due_at=timezone.now() + timedelta(days=5))
    listed = rep_client.get(URL, {"owner": "me", "status": "open", "due_before": _due(24)}).json()
    assert [r["id"] for r in listed["results"]] == [body["id"]]
    assert rep_client.get(URL, {"customer": book["mine"].pk}).json()["count"] == 2
    assert rep_client.get(URL, {"due_after": _due(48)}).json()["count"] == 1


def test_bad_input_is_400_with_fields(book, rep_client):
    response = rep_client.post(URL, {"customer": book["mine"].pk, "type": "visit"}, format="json")
    assert response.status_code == 400
    assert {"type", "due_at"} <= set(error_of(response)["fields"])
    assert rep_client.get(URL, {"status": "nope"}).status_code == 400
    assert rep_client.get(URL, {"due_before": "soon"}).status_code == 400


def test_row_rules_other_reps_follow_ups_are_404_and_customers_refused(book, rep_client, other_rep):
    theirs = followups.create_followup(user=other_rep, customer=book["theirs"], due_at=timezone.now())
    assert rep_client.get(f"{URL}{theirs.pk}/").status_code == 404
    assert rep_client.post(f"{URL}{theirs.pk}/complete/", {}, format="json").status_code == 404
    assert rep_client.get(URL).json()["count"] == 0
    response = rep_client.post(URL, {"customer": book["theirs"].pk, "due_at": _due()}, format="json")
    assert response.status_code == 400 and "customer" in error_of(response)["fields"]
    # a rep gives follow-ups only to themselves
    response = rep_client.post(URL, {"customer": book["mine"].pk, "due_at": _due(), "owner": "rep2"}, format="json")
    assert response.status_code == 403


def test_complete_logs_the_interaction_and_again_is_409(book, rep_client, rep):
    f = followups.create_followup(user=rep, customer=book["mine"], due_at=timezone.now(), type="meeting", note="demo")
    response = rep_client.post(f"{URL}{f.pk}/complete/", {"outcome": "went well"}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    interaction = Interaction.objects.get(pk=body["interaction"])
    assert (body["status"], interaction.type, interaction.notes) == ("done", "meeting", "demo\n\nOutcome: went well")
    again = rep_client.post(f"{URL}{f.pk}/complete/", {}, format="json")
    assert again.status_code == 409 and error_of(again)["code"] == "conflict"
    assert rep_client.patch(f"{URL}{f.pk}/", {"note": "x"}, format="json").status_code == 409
    assert Interaction.objects.filter(external_id=f"followup-{f.pk}").count() == 1


def test_partial_update_and_manager_reassign(book, rep_client, manager_client, rep, other_rep):
    f = followups.create_followup(user=rep, customer=book["free"], due_at=timezone.now())
    response = rep_client.patch(f"{URL}{f.pk}/", {"note": "call at noon", "type": "email"}, format="json")
    assert response.status_code == 200 and (response.json()["note"], response.json()["type"]) == ("call at noon", "email")
    assert rep_client.patch(f"{URL}{f.pk}/", {"owner": "rep2"}, format="json").status_code == 403
    response = manager_client.patch(f"{URL}{f.pk}/", {"owner": "rep2"}, format="json")
    assert response.status_code == 200 and response.json()["owner"] == "rep2"
    assert FollowUp.objects.get(pk=f.pk).owner == other_rep
    assert manager_client.get(URL, {"owner": "me"}).json()["count"] == 0
    assert manager_client.get(URL).json()["count"] == 1
    # the customer cannot be changed
    manager_client.patch(f"{URL}{f.pk}/", {"customer": book["mine"].pk}, format="json")
    assert FollowUp.objects.get(pk=f.pk).customer == book["free"]
