"""Follow-ups (crm.followups): the row rule, the manager's reassign, completing logs exactly one
interaction in the same transaction, the due presets and due_between."""
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from crm import followups
from crm.access import NotAllowed, visible_followups
from crm.models import ROLE_SALES_REP, AuditEvent, Customer, FollowUp, Interaction, Product
from ml.models import Suggestion

pytestmark = pytest.mark.django_db


@pytest.fixture
def book(rep, other_rep):
    return {"mine": Customer.objects.create(external_id="C-MINE", name="Mine", owner=rep),
            "theirs": Customer.objects.create(external_id="C-THEIRS", name="Theirs", owner=other_rep),
            "free": Customer.objects.create(external_id="C-FREE", name="Free")}


def soon(hours=2):
    return timezone.now() + timedelta(hours=hours)


def make(user, customer, **fields):
    return followups.create_followup(user=user, customer=customer, due_at=fields.pop("due_at", soon()), **fields)


def test_followup_suggestion_kinds_are_ml_suggestion_kinds():
    assert set(FollowUp.SuggestionKind.values) == set(Suggestion.Kind.values)


def test_create_followup_defaults_owner_to_the_customers_owner(book, rep, manager):
    followup = make(manager, book["mine"], note="Ask about spring")

    assert followup.owner == rep and followup.created_by == manager and followup.status == "open"
    event = AuditEvent.objects.get(object_type="followup", object_id=str(followup.pk))
    assert event.action == "create" and event.actor == manager and event.customer_id == book["mine"].pk
    assert "spring" not in event.summary  # names, not values


def test_create_followup_on_an_unassigned_customer_belongs_to_its_creator(book, rep):
    assert make(rep, book["free"]).owner == rep


def test_create_followup_on_another_reps_customer_is_refused(book, rep):
    with pytest.raises(NotAllowed):
        make(rep, book["theirs"])

    assert not FollowUp.objects.exists() and not AuditEvent.objects.exists()


def test_create_followup_for_someone_else_is_refused_to_a_rep(book, rep, other_rep):
    with pytest.raises(NotAllowed):
        make(rep, book["free"], owner=other_rep)


def test_create_followup_refuses_an_owner_who_cannot_see_the_customer(book, manager, other_rep):
    with pytest.raises(ValidationError) as caught:
        make(manager, book["mine"], owner=other_rep)

    assert "owner" in caught.value.message_dict


def test_create_followup_refuses_a_naive_due_time_and_a_long_note(book, rep):
    with pytest.raises(ValidationError) as naive:
        make(rep, book["mine"], due_at=datetime(2030, 1, 1, 9))
    with pytest.raises(ValidationError) as long:
        make(rep, book["mine"], note="x" * 2001)

    assert "due_at" in naive.value.message_dict and "note" in long.value.message_dict


def test_create_followup_from_a_suggestion_keeps_its_source(book, rep):
    product = Product.objects.create(sku="G-1", name="Gadget")

    followup = make(rep, book["mine"], product=product, suggestion_kind="reorder", reason="due again",
                    note="Offer Gadget: due again")

    followup.refresh_from_db()
    assert (followup.product, followup.suggestion_kind, followup.reason) == (product, "reorder", "due again")


def test_visible_followups_rep_sees_own_manager_sees_the_teams(book, rep, other_rep, manager):
    own = make(rep, book["mine"])
    theirs = make(other_rep, book["theirs"])
    given_to_other = make(manager, book["free"], owner=other_rep)

    assert list(visible_followups(rep)) == [own]
    assert set(visible_followups(other_rep)) == {theirs, given_to_other}
    assert set(visible_followups(manager)) == {own, theirs, given_to_other}


def test_visible_followups_of_a_customer_reassigned_away_are_hidden_from_the_rep(book, rep, other_rep):
    followup = make(rep, book["mine"])
    Customer.objects.filter(pk=book["mine"].pk).update(owner=other_rep)

    assert followup not in visible_followups(rep)


def test_complete_followup_logs_exactly_one_interaction_dated_now(book, rep):
    followup = make(rep, book["mine"], type="meeting", note="Quarterly review", due_at=soon(48))
    before = timezone.now()

    done = followups.complete_followup(user=rep, followup=followup, outcome="Agreed a trial order")

    logged = Interaction.objects.get(customer=book["mine"])
    assert done.status == "done" and done.completed_by == rep and done.interaction == logged
    assert logged.type == "meeting" and logged.created_by == rep
    assert logged.notes == "Quarterly review\n\nOutcome: Agreed a trial order"
    assert before <= logged.occurred_at <= timezone.now()  # completion time, not the planned due time
    assert AuditEvent.objects.filter(action="complete", object_id=str(followup.pk)).count() == 1
    assert AuditEvent.objects.filter(action="create", object_type="interaction").count() == 1


def test_complete_followup_a_todo_logs_a_note(book, rep):
    followup = make(rep, book["mine"], type="todo", note="Send the price list")

    followups.complete_followup(user=rep, followup=followup)

    assert Interaction.objects.get(customer=book["mine"]).type == "note"


def test_complete_followup_twice_is_refused_and_logs_nothing_more(book, rep):
    followup = make(rep, book["mine"])
    followups.complete_followup(user=rep, followup=followup)

    with pytest.raises(followups.FollowUpClosed):
        followups.complete_followup(user=rep, followup=followup)

    assert Interaction.objects.filter(customer=book["mine"]).count() == 1


def test_complete_followup_rolls_back_when_the_interaction_cannot_be_logged(book, rep):
    followup = make(rep, book["mine"])
    # An interaction already holds the key completing it would use: logging fails after the
    # follow-up was marked done...
    Interaction.objects.create(external_id=f"followup-{followup.pk}", customer=book["mine"], type="call",
                               occurred_at=timezone.now())

    with pytest.raises(ValidationError):
        followups.complete_followup(user=rep, followup=followup)

    # ... and the follow-up stays open, with no completion event: both or neither.
    followup.refresh_from_db()
    assert followup.status == "open" and followup.interaction is None
    assert not AuditEvent.objects.filter(action="complete").exists()


def test_complete_followup_of_another_rep_is_refused(book, rep, other_rep):
    followup = make(other_rep, book["theirs"])

    with pytest.raises(NotAllowed):
        followups.complete_followup(user=rep, followup=followup)

    assert not Interaction.objects.exists()


def test_cancel_followup_logs_nothing_and_is_audited(book, rep):
    followup = make(rep, book["mine"])

    cancelled = followups.cancel_followup(user=rep, followup=followup)

    assert cancelled.status == "cancelled" and cancelled.completed_at is not None
    assert not Interaction.objects.exists()
    assert AuditEvent.objects.filter(action="cancel", object_id=str(followup.pk)).exists()
    with pytest.raises(followups.FollowUpClosed):
        followups.complete_followup(user=rep, followup=followup)


def test_reassign_followup_by_a_manager_to_an_active_rep(book, rep, other_rep, manager):
    followup = make(rep, book["free"])

    followups.reassign_followup(user=manager, followup=followup, owner=other_rep)

    followup.refresh_from_db()
    assert followup.owner == other_rep
    assert AuditEvent.objects.filter(action="reassign", object_id=str(followup.pk), actor=manager).exists()
    assert followup in visible_followups(other_rep) and followup not in visible_followups(rep)


def test_reassign_followup_is_refused_to_a_rep(book, rep, other_rep):
    followup = make(rep, book["free"])

    with pytest.raises(NotAllowed):
        followups.reassign_followup(user=rep, followup=followup, owner=other_rep)


def test_reassign_followup_refuses_an_inactive_user(book, rep, manager, make_user):
    gone = make_user("gone", ROLE_SALES_REP, is_active=False)
    followup = make(rep, book["free"])

    with pytest.raises(ValidationError):
        followups.reassign_followup(user=manager, followup=followup, owner=gone)

    followup.refresh_from_db()
    assert followup.owner == rep


def test_update_followup_changes_fields_and_audits_their_names(book, rep):
    followup = make(rep, book["mine"])
    later = soon(72)

    followups.update_followup(user=rep, followup=followup, due_at=later, note="Moved")

    followup.refresh_from_db()
    assert followup.due_at == later and followup.note == "Moved"
    event = AuditEvent.objects.get(action="update", object_type="followup")
    assert "due_at" in event.summary and "note" in event.summary and "Moved" not in event.summary


def test_preset_due_today_tomorrow_next_week(settings):
    settings.TIME_ZONE = "UTC"
    morning = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)  # a Thursday
    evening = datetime(2026, 12, 3, 20, 0, tzinfo=UTC)

    assert followups.preset_due("today", morning) == datetime(2026, 12, 3, 17, 0, tzinfo=UTC)
    assert followups.preset_due("today", evening) == datetime(2026, 12, 3, 21, 0, tzinfo=UTC)
    assert followups.preset_due("tomorrow", evening) == datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    assert followups.preset_due("next_week", morning) == datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def test_due_groups_overdue_today_and_this_week(book, rep, settings):
    settings.TIME_ZONE = "UTC"
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    late = make(rep, book["mine"], due_at=now - timedelta(hours=1))
    today = make(rep, book["mine"], due_at=now + timedelta(hours=3))
    week = make(rep, book["free"], due_at=now + timedelta(days=3))
    make(rep, book["free"], due_at=now + timedelta(days=30))
    followups.cancel_followup(user=rep, followup=make(rep, book["mine"], due_at=now - timedelta(hours=2)))

    groups = followups.due_groups(rep, now=now)

    assert groups == {"overdue": ([late], 1), "today": ([today], 1), "week": ([week], 1)}


def test_due_between_yields_open_followups_of_everyone_in_the_window(book, rep, other_rep):
    start = timezone.now() + timedelta(days=1)
    inside = [make(rep, book["mine"], due_at=start), make(other_rep, book["theirs"], due_at=start + timedelta(hours=1))]
    make(rep, book["mine"], due_at=start + timedelta(hours=2))  # the end is exclusive
    followups.cancel_followup(user=rep, followup=make(rep, book["free"], due_at=start))

    assert list(followups.due_between(start, start + timedelta(hours=2))) == inside
