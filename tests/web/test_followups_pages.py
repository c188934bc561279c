"""Follow-up pages: planning one from a suggestion or worklist row, the customer page's open list
with Complete and Cancel, "My follow-ups" on the home page, /follow-ups/ and reassigning."""
from datetime import timedelta

from django.test import Client
from django.urls import reverse
from django.utils import timezone

from crm import followups
from crm.models import AuditEvent, FollowUp, Interaction


def _plan(client, customer, **fields):
    data = {"type": "call", "due": "today", "note": "", "next": reverse("customer_detail", args=[customer.pk])}
    data.update(fields)
    return client.post(reverse("followup_new", args=[customer.pk]), data)


def test_customer_page_suggestions_offer_a_follow_up_prefilled_from_the_reason(rep_client, world):
    html = rep_client.get(reverse("customer_detail", args=[world.ada.pk])).content.decode()
    assert html.count(f'action="{reverse("followup_new", args=[world.ada.pk])}"') == 3  # 2 suggestions + own form
    assert 'value="Offer Gadget: Customers who buy Widget often buy Gadget"' in html
    assert "<script>" not in html.split("Open follow-ups")[1]  # no inline script (CSP)


def test_planning_from_a_suggestion_makes_a_follow_up_and_redirects_back(rep_client, world):
    response = _plan(rep_client, world.ada, product=world.gadget.pk, kind="recommendation",
                     note="Offer Gadget: buys Widget", reason="Customers who buy Widget often buy Gadget")
    assert response.status_code == 302 and response.url == reverse("customer_detail", args=[world.ada.pk])
    f = FollowUp.objects.get()
    assert (f.customer, f.owner, f.type, f.product, f.suggestion_kind, f.status) == (
        world.ada, world.rep, "call", world.gadget, "recommendation", "open")
    assert f.due_at == followups.preset_due("today", f.created_at) or f.due_at > timezone.now()
    html = rep_client.get(response.url).content.decode()
    assert "Follow-up planned" in html and "Offer Gadget: buys Widget" in html


def test_planning_with_a_date_and_bad_input(rep_client, world):
    _plan(rep_client, world.ada, due="at", due_at="2030-01-02T10:30")
    assert timezone.localtime(FollowUp.objects.get().due_at).strftime("%Y-%m-%d %H:%M") == "2030-01-02 10:30"
    response = _plan(rep_client, world.ada, due="at", due_at="")
    assert response.status_code == 302 and FollowUp.objects.count() == 1
    html = rep_client.get(response.url).content.decode()
    assert "Could not plan that follow-up" in html
    response = _plan(rep_client, world.ada, type="visit")
    assert response.status_code == 302 and FollowUp.objects.count() == 1


def test_a_rep_cannot_plan_on_another_reps_customer(rep_client, world):
    assert _plan(rep_client, world.zed).status_code == 404
    assert not FollowUp.objects.exists()


def test_redirect_back_stays_on_the_site(rep_client, world):
    response = _plan(rep_client, world.ada, next="https://evil.example/")
    assert response.url == reverse("customer_detail", args=[world.ada.pk]) + "#followups"


def test_home_worklist_rows_have_follow_up_forms_and_my_follow_ups_groups(rep_client, world):
    now = timezone.now()
    followups.create_followup(user=world.rep, customer=world.ada, due_at=now - timedelta(hours=2), note="late one")
    followups.create_followup(user=world.rep, customer=world.ada, due_at=followups.preset_due("today"), note="today one")
    followups.create_followup(user=world.rep, customer=world.bob, due_at=followups.preset_due("next_week") + timedelta(days=30),
                              note="far one")
    html = rep_client.get(reverse("home")).content.decode()
    assert "My follow-ups" in html and "late one" in html and "today one" in html and "far one" not in html
    assert html.index("Overdue") < html.index("late one") < html.index(">Today") < html.index("today one")
    assert 'value="Call: high value at risk: churn 70 %"' in html
    assert 'value="Offer Widget: Buys Widget every 30 days; last bought 31 days ago"' in html
    assert ">Team<" not in html  # reps have no team toggle


def _client(user):
    client = Client()
    client.force_login(user)
    return client


def test_home_team_toggle_for_managers(manager_client, world):
    followups.create_followup(user=world.rep, customer=world.ada, due_at=timezone.now() - timedelta(hours=1),
                              note="rep's task")
    assert "rep&#x27;s task" not in manager_client.get(reverse("home")).content.decode()
    html = manager_client.get(reverse("home") + "?followups=team").content.decode()
    assert "The team's follow-ups" in html and "rep&#x27;s task" in html
    assert "The team" not in _client(world.rep).get(reverse("home") + "?followups=team").content.decode()


def test_complete_from_the_customer_page_logs_the_call(rep_client, world):
    f = followups.create_followup(user=world.rep, customer=world.ada, due_at=timezone.now(), note="ring about Gadget")
    html = rep_client.get(reverse("customer_detail", args=[world.ada.pk])).content.decode()
    assert "ring about Gadget" in html and "Cancel follow-up" in html
    response = rep_client.post(reverse("followup_complete", args=[f.pk]), {"outcome": "wants a quote"})
    assert response.status_code == 302
    f.refresh_from_db()
    assert f.status == "done" and f.interaction.type == "call"
    assert f.interaction.notes == "ring about Gadget\n\nOutcome: wants a quote"
    # again: already done, a message, nothing more logged
    rep_client.post(reverse("followup_complete", args=[f.pk]), {"outcome": "x"})
    assert Interaction.objects.filter(customer=world.ada, type="call").count() == 1


def test_cancel_and_other_reps_follow_ups(rep_client, world):
    mine = followups.create_followup(user=world.rep, customer=world.ada, due_at=timezone.now())
    theirs = followups.create_followup(user=world.other_rep, customer=world.zed, due_at=timezone.now())
    assert rep_client.post(reverse("followup_cancel", args=[theirs.pk])).status_code == 404
    assert rep_client.post(reverse("followup_complete", args=[theirs.pk])).status_code == 404
    assert rep_client.post(reverse("followup_cancel", args=[mine.pk])).status_code == 302
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert (mine.status, theirs.status) == ("cancelled", "open")
    assert AuditEvent.objects.filter(object_type="followup", object_id=str(mine.pk), action="cancel").exists()


def test_follow_up_list_filters_and_manager_reassign(manager_client, world):
    rep_client = _client(world.rep)
    a = followups.create_followup(user=world.rep, customer=world.ada, due_at=timezone.now() - timedelta(days=1),
                                  note="overdue task")
    followups.create_followup(user=world.rep, customer=world.ada, due_at=timezone.now() + timedelta(days=3),
                              note="later task")
    followups.create_followup(user=world.other_rep, customer=world.zed, due_at=timezone.now(), note="zed task")
    html = rep_client.get(reverse("followup_list")).content.decode()
    assert "overdue task" in html and "later task" in html and "zed task" not in html and "Reassign" not in html
    html = rep_client.get(reverse("followup_list") + "?overdue=on").content.decode()
    assert "overdue task" in html and "later task" not in html
    html = rep_client.get(reverse("followup_list") + "?scope=team").content.decode()
    assert "zed task" not in html  # a rep's "team" is still their own
    html = manager_client.get(reverse("followup_list") + "?scope=team").content.decode()
    assert "zed task" in html and "Reassign" in html
    assert rep_client.post(reverse("followup_reassign", args=[a.pk]), {"owner": world.other_rep.pk}).status_code == 403
    # other_rep cannot see Ada: refused with a message, not a traceback
    response = manager_client.post(reverse("followup_reassign", args=[a.pk]), {"owner": world.other_rep.pk,
                                                                                "next": reverse("followup_list")})
    assert response.status_code == 302
    a.refresh_from_db()
    assert a.owner == world.rep
    world.ada.owner = None
    world.ada.save()
    manager_client.post(reverse("followup_reassign", args=[a.pk]), {"owner": world.other_rep.pk})
    a.refresh_from_db()
    assert a.owner == world.other_rep
    assert manager_client.get(reverse("followup_list") + "?status=bogus").status_code == 200
