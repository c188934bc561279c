"""POST /customers/bulk/: new keys created, known ones changed in the given fields only, bad items
reported by index and field with the good ones written, the single-customer rules and audit."""
import pytest

from crm.interactions import MAX_BULK_ITEMS
from crm.models import AuditEvent, Customer
from tests.api.conftest import error_of

pytestmark = pytest.mark.django_db
URL = "/api/v1/customers/bulk/"


def _tags(external_id):
    return sorted((t.name for t in Customer.objects.get(external_id=external_id).tags.all()), key=str.lower)


def test_bulk_customers_creates_new_keys_and_changes_only_given_fields(book, rep_client, rep):
    items = [{"external_id": "C-NEW", "name": "New one", "email": "new@example.com", "owner": "rep1",
              "signup_date": "2025-05-01", "tags": ["VIP", "trade fair"]},
             {"external_id": "C-MINE", "city": "Lyon"}]

    body = rep_client.post(URL, {"items": items}).json()

    assert body == {"created": 1, "updated": 1, "unchanged": 0, "rejected": 0, "errors": []}
    new = Customer.objects.get(external_id="C-NEW")
    assert (new.name, new.email, new.owner, new.signup_date.isoformat()) == ("New one", "new@example.com", rep,
                                                                          "2025-05-01")
    assert _tags("C-NEW") == ["trade fair", "VIP"]
    mine = Customer.objects.get(external_id="C-MINE")
    assert (mine.city, mine.name, mine.owner) == ("Lyon", "Mine", rep)  # the name and owner were not given


def test_bulk_customers_rejects_bad_items_by_index_and_keeps_good_ones(book, rep_client):
    items = [{"external_id": "C-GOOD-1", "name": "Good"},
             {"external_id": "C-BAD-1", "email": "not an address"},
             "not an object",
             {"name": "no key"},
             {"external_id": "C-BAD-2", "owner": "nobody-here"},
             {"external_id": "C-BAD-3", "signup_date": "2025-02-30", "shoe_size": 44},
             {"external_id": "C-GOOD-1", "name": "Again"},
             {"external_id": "C-GOOD-2", "name": "x" * 201},
             {"external_id": "C-MINE", "no_profiling": True}]

    body = rep_client.post(URL, {"items": items}).json()

    assert (body["created"], body["updated"], body["rejected"]) == (1, 1, 7)
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (1, "email"), (2, None), (3, "external_id"), (4, "owner"), (5, "shoe_size"), (5, "signup_date"),
        (6, "external_id"), (7, "name")]
    assert set(Customer.objects.filter(external_id__startswith="C-GOOD").values_list("name", flat=True)) == {"Good"}
    assert not Customer.objects.filter(external_id__startswith="C-BAD").exists()
    assert Customer.objects.get(external_id="C-MINE").no_profiling is True


def test_bulk_customers_rep_cannot_update_another_reps_customer(book, rep_client, other_rep):
    body = rep_client.post(URL, {"items": [{"external_id": "C-THEIRS", "name": "Taken over"}]}).json()

    assert body["errors"] == [{"index": 0, "field": "external_id",
                               "message": "external_id 'C-THEIRS' belongs to a customer you cannot see"}]
    theirs = Customer.objects.get(external_id="C-THEIRS")
    assert (theirs.name, theirs.owner) == ("Theirs", other_rep)


def test_bulk_customers_rep_cannot_give_an_account_to_another_rep(book, rep_client, rep, other_rep):
    items = [{"external_id": "C-MINE", "owner": "rep2"}, {"external_id": "C-NEW", "owner": "rep2"},
             {"external_id": "C-FREE", "owner": "rep1"}]

    body = rep_client.post(URL, items, format="json").json()

    assert [(e["index"], e["field"]) for e in body["errors"]] == [(0, "owner"), (1, "owner")]
    assert (body["created"], body["updated"]) == (0, 1)
    assert Customer.objects.get(external_id="C-MINE").owner == rep
    assert Customer.objects.get(external_id="C-FREE").owner == rep  # an unassigned account: a rep may take it
    assert not Customer.objects.filter(external_id="C-NEW").exists()


def test_bulk_customers_manager_changes_and_reassigns_any_customer(book, manager_client, rep):
    body = manager_client.post(URL, [{"external_id": "C-THEIRS", "owner": "rep1", "country": "FR"}],
                               format="json").json()

    assert (body["updated"], body["errors"]) == (1, [])
    theirs = Customer.objects.get(external_id="C-THEIRS")
    assert (theirs.owner, theirs.country) == (rep, "FR")


def test_bulk_customers_takes_a_bare_list_and_a_wrapped_one_alike(book, rep_client):
    items = [{"external_id": "C-LIST", "name": "From a list"}, {"external_id": "C-LIST-BAD", "email": "x"}]

    bare = rep_client.post(URL, items, format="json").json()
    wrapped = rep_client.post(URL, {"items": items}, format="json").json()

    assert (bare["created"], bare["rejected"], [(e["index"], e["field"]) for e in bare["errors"]]) == (
        1, 1, [(1, "email")])
    assert (wrapped["created"], wrapped["unchanged"], wrapped["rejected"]) == (0, 1, 1)
    assert Customer.objects.get(external_id="C-LIST").name == "From a list"


def test_bulk_customers_needs_an_items_list_or_a_list(book, rep_client):
    response = rep_client.post(URL, {"customers": []}, format="json")

    assert response.status_code == 400 and set(error_of(response)["fields"]) == {"items"}


def test_bulk_customers_refuses_more_than_the_maximum(book, rep_client):
    response = rep_client.post(URL, {"items": [{"external_id": "C-MINE"}] * (MAX_BULK_ITEMS + 1)})

    assert response.status_code == 400 and set(error_of(response)["fields"]) == {"items"}
    assert Customer.objects.count() == 3


def test_bulk_customers_audits_each_customer_like_a_single_write(book, rep_client):
    mine = book["mine"]
    AuditEvent.objects.all().delete()

    rep_client.post(URL, [{"external_id": "C-NEW"}, {"external_id": "C-MINE", "city": "Oslo", "tags": ["vip"]},
                          {"external_id": "C-FREE", "name": "Free"}], format="json")

    new = Customer.objects.get(external_id="C-NEW")
    events = {(e.action, e.customer_id): e.summary for e in AuditEvent.objects.filter(customer_id__isnull=False)}
    assert events == {("create", new.pk): f"customer {new.pk} created (bulk)",
                      ("update", mine.pk): f"customer {mine.pk} updated: fields city, tags (bulk)"}  # C-FREE unchanged
    bulk = AuditEvent.objects.get(action="bulk_upsert", object_type="customer")
    assert bulk.summary == "3 items: 1 created, 1 updated, 1 unchanged, 0 rejected"


def test_bulk_customers_sets_tags_exactly_and_same_tags_are_unchanged(book, rep_client):
    rep_client.post(URL, [{"external_id": "C-MINE", "tags": ["vip", "dogs"]}], format="json")

    again = rep_client.post(URL, [{"external_id": "C-MINE", "tags": ["DOGS", "VIP"]}], format="json").json()
    changed = rep_client.post(URL, [{"external_id": "C-MINE", "tags": ["dogs", "cats"]}], format="json").json()

    assert (again["unchanged"], changed["updated"]) == (1, 1)
    assert _tags("C-MINE") == ["cats", "dogs"]


def test_bulk_customers_rejected_items_leave_no_trace(book, rep_client):
    before = Customer.objects.count(), AuditEvent.objects.filter(customer_id__isnull=False).count()

    body = rep_client.post(URL, [{"external_id": "C-THEIRS", "city": "Rome"}, {"external_id": ""}],
                           format="json").json()

    assert (body["created"], body["updated"], body["rejected"]) == (0, 0, 2)
    assert (Customer.objects.count(), AuditEvent.objects.filter(customer_id__isnull=False).count()) == before


def test_bulk_customers_of_10000_items_is_a_bounded_number_of_queries(book, manager_client,
                                                                      django_assert_max_num_queries):
    items = [{"external_id": f"C-BIG-{i:05}", "name": f"Big {i}", "owner": "rep1"} for i in range(MAX_BULK_ITEMS)]
    manager_client.post(URL, items[:5000], format="json")
    items = [{**item, "city": "Paris"} for item in items]

    # Batched reads and writes, not one per item: tens of statements on PostgreSQL, a few hundred
    # on SQLite (whose bulk statements are cut at 999 parameters).
    with django_assert_max_num_queries(600):
        body = manager_client.post(URL, items, format="json").json()

    assert (body["created"], body["updated"], body["errors"]) == (5000, 5000, [])
    assert Customer.objects.filter(city="Paris").count() == MAX_BULK_ITEMS
