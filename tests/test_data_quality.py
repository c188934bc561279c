"""Data quality: likely duplicates found and merged with nothing lost (audited), outliers, missing
values and dates out of range detected on planted data; the page is for managers."""
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from crm import quality, services
from crm.models import AuditEvent, Customer, Interaction, Product
from ml.models import CustomerSegment, Forecast, Segment, SuggestionFeedback, TrainingRun

T0 = datetime(2025, 1, 1, 12, tzinfo=UTC)


def make_customer(external_id, **fields):
    return Customer.objects.create(external_id=external_id, **fields)


def buy(customer, amount, *, day=0, ref="", external_id=None):
    return Interaction.objects.create(external_id=external_id or f"{customer.external_id}-{day}-{amount}-{ref}",
                                      customer=customer, type="purchase", amount=Decimal(str(amount)),
                                      order_ref=ref, occurred_at=T0 + timedelta(days=day))


def group_ids(groups):
    return sorted(sorted(c.external_id for c in g.customers) for g in groups)


# --- duplicates --------------------------------------------------------------------------------------

def test_duplicates_same_email_ignoring_case_and_spaces(db):
    make_customer("A", name="Ann", email="ann@example.com")
    make_customer("B", name="Ann B.", email=" ANN@Example.com")
    make_customer("C", name="Carl", email="carl@example.com")

    groups, total = quality.duplicate_groups()

    assert group_ids(groups) == [["A", "B"]] and total == 1
    assert groups[0].reasons == ["same e-mail"]


def test_duplicates_same_phone_in_another_format(db):
    make_customer("A", name="Ann", phone="+49 30 1234567")
    make_customer("B", name="Anna", phone="030/123-4567")
    make_customer("C", name="Carl", phone="0")  # too short to identify anyone
    make_customer("D", name="Dora", phone="0")

    groups, _ = quality.duplicate_groups()

    assert group_ids(groups) == [["A", "B"]] and groups[0].reasons == ["same phone"]


def test_duplicates_near_identical_name_and_company(db):
    make_customer("A", name="Jonathan Smith", company="Acme Ltd")
    make_customer("B", name="Jonathon Smith", company="ACME Limited")
    make_customer("C", name="Jonathan Smith", company="Globex")  # same name, another company: another person
    make_customer("D", name="Jonathan Smith")  # no company: matched on e-mail and phone only

    groups, _ = quality.duplicate_groups()

    assert group_ids(groups) == [["A", "B"]] and groups[0].reasons == ["similar name and company"]


def test_duplicates_linked_by_different_rules_form_one_group(db):
    make_customer("A", name="Ann", email="ann@example.com")
    make_customer("B", name="Ann", email="ann@example.com", phone="0301234567")
    make_customer("C", name="A. N.", phone="+49 301234567")

    groups, total = quality.duplicate_groups()

    assert group_ids(groups) == [["A", "B", "C"]] and total == 1
    assert groups[0].reasons == ["same e-mail", "same phone"]


# --- merge ------------------------------------------------------------------------------------------

def _counts():
    return {"interactions": Interaction.objects.count(), "feedback": SuggestionFeedback.objects.count()}


@pytest.fixture
def pair(rep, manager):
    keep = make_customer("KEEP", name="Ann Smith", email="ann@example.com", signup_date=date(2022, 5, 1),
                         attributes={"tier": "gold"})
    dup = make_customer("DUP", name="Ann Smith", email="ANN@example.com", phone="0301234567", company="Acme",
                        signup_date=date(2021, 3, 1), owner=rep, attributes={"tier": "silver", "source": "shop"})
    widget, gadget = Product.objects.create(sku="W", name="Widget"), Product.objects.create(sku="G", name="Gadget")
    buy(keep, 10, day=1)
    buy(dup, 20, day=5)
    Interaction.objects.create(external_id="note-dup", customer=dup, type="note", occurred_at=T0, created_by=rep)
    SuggestionFeedback.objects.create(customer=keep, product=widget, kind="recommendation", status="offered")
    SuggestionFeedback.objects.create(customer=dup, product=gadget, kind="recommendation", status="accepted")
    run = TrainingRun.objects.create(kind="segmentation", status="succeeded", is_published=True)
    segment = Segment.objects.create(run=run, key=0, name="All", size=2)
    for c in (keep, dup):
        CustomerSegment.objects.create(run=run, customer=c, segment=segment)
    return keep, dup


def test_merge_moves_everything_to_the_kept_customer_with_nothing_lost(pair, manager):
    keep, dup = pair
    before = _counts()

    moved = services.merge_customers(user=manager, keep=keep, duplicates=[dup])

    assert _counts() == before
    assert set(Interaction.objects.values_list("customer_id", flat=True)) == {keep.pk}
    assert set(SuggestionFeedback.objects.values_list("customer_id", flat=True)) == {keep.pk}
    assert moved["interactions"] == 2 and moved["suggestion feedback"] == 1
    assert not Customer.objects.filter(pk=dup.pk).exists()
    assert CustomerSegment.objects.filter(customer=keep).count() == 1  # the kept one's insight rows stay


def test_merge_fills_the_kept_profile_and_keeps_the_duplicates(pair, manager, rep):
    keep, dup = pair

    services.merge_customers(user=manager, keep=keep, duplicates=[dup])

    keep.refresh_from_db()
    assert (keep.email, keep.phone, keep.company, keep.owner) == ("ann@example.com", "0301234567", "Acme", rep)
    assert keep.signup_date == date(2021, 3, 1)  # the earliest
    assert keep.attributes["tier"] == "gold" and keep.attributes["source"] == "shop"
    (snapshot,) = keep.attributes["merged_customers"]
    assert (snapshot["external_id"], snapshot["email"], snapshot["owner"]) == ("DUP", "ANN@example.com", "rep1")
    assert keep.last_purchase_at == T0 + timedelta(days=5)


def test_merge_is_audited_with_ids_and_counts(pair, manager):
    keep, dup = pair

    services.merge_customers(user=manager, keep=keep, duplicates=[dup])

    event = AuditEvent.objects.get(action="merge")
    assert (event.customer_id, event.object_id, event.actor) == (keep.pk, str(keep.pk), manager)
    assert f"customers {dup.pk} merged into customer {keep.pk}" in event.summary
    assert "2 interactions" in event.summary and "ann@example.com" not in event.summary.lower()


def test_merge_keeps_the_most_recent_feedback_on_the_same_suggestion(pair, manager):
    keep, dup = pair
    widget = Product.objects.get(sku="W")
    later = SuggestionFeedback.objects.create(customer=dup, product=widget, kind="recommendation", status="declined")

    moved = services.merge_customers(user=manager, keep=keep, duplicates=[dup])

    assert moved["suggestion feedback superseded"] == 1
    assert SuggestionFeedback.objects.get(customer=keep, product=widget).pk == later.pk


def test_merge_an_objection_to_profiling_stands(pair, manager):
    keep, dup = pair
    Customer.objects.filter(pk=dup.pk).update(no_profiling=True)
    dup.refresh_from_db()

    services.merge_customers(user=manager, keep=keep, duplicates=[dup])

    keep.refresh_from_db()
    assert keep.no_profiling


def test_merge_is_refused_to_a_sales_rep(pair, rep):
    keep, dup = pair

    with pytest.raises(services.NotAllowed):
        services.merge_customers(user=rep, keep=keep, duplicates=[dup])
    assert Customer.objects.filter(pk=dup.pk).exists()


def test_merge_into_itself_is_refused(pair, manager):
    keep, _dup = pair

    with pytest.raises(services.MergeRefused):
        services.merge_customers(user=manager, keep=keep, duplicates=[keep])


def test_merge_page_previews_then_merges(client, pair, manager):
    keep, dup = pair
    client.force_login(manager)
    url = reverse("data_quality_merge")

    preview = client.get(url, {"keep": keep.pk, "remove": [keep.pk, dup.pk]})
    assert preview.status_code == 200 and "Merge into Ann Smith" in preview.content.decode()
    assert Customer.objects.filter(pk=dup.pk).exists()

    response = client.post(url, {"keep": keep.pk, "remove": [dup.pk]})
    assert response.status_code == 302 and response.url == reverse("customer_detail", args=[keep.pk])
    assert not Customer.objects.filter(pk=dup.pk).exists()


def test_merge_page_is_for_managers(client, pair, rep):
    keep, dup = pair
    client.force_login(rep)

    assert client.post(reverse("data_quality_merge"), {"keep": keep.pk, "remove": [dup.pk]}).status_code == 403
    assert Customer.objects.filter(pk=dup.pk).exists()


# --- outliers, missing values, dates --------------------------------------------------------------------

def test_outlier_an_order_100_times_the_customers_median(db):
    typo = make_customer("TYPO")
    for day, amount in enumerate((10, 12, 11, 9)):
        buy(typo, amount, day=day)
    buy(typo, 1100, day=10)  # 1100 / median(10, 12, 11, 9) = 105x
    steady = make_customer("STEADY")
    for day, amount in enumerate((10, 12, 900)):  # 900 / 11 = 82x: large, not 100x
        buy(steady, amount, day=day)
    thin = make_customer("THIN")
    buy(thin, 1, day=0)
    buy(thin, 5000, day=1)  # one other order is no "usual"

    outliers, total, complete = quality.outlier_orders()

    assert total == 1 and complete
    (o,) = outliers
    assert (o.customer.external_id, o.amount, o.usual) == ("TYPO", 1100.0, 10.5)
    assert round(o.factor) == 105


def test_outlier_orders_sum_their_rows(db):
    customer = make_customer("BULK")
    for day in range(3):
        buy(customer, 10, day=day)
    for line in range(4):
        buy(customer, 300, day=20, ref="ORDER-9", external_id=f"line-{line}")  # one order of 1,200

    (o,), total, _ = quality.outlier_orders()

    assert (o.order, o.amount, o.usual) == ("ORDER-9", 1200.0, 10.0)


def test_missing_values_per_column(db):
    make_customer("A", name="Ann", email="ann@example.com")
    make_customer("B", name="Bob")
    make_customer("C")
    Product.objects.create(sku="P", name="Widget", price=Decimal("1.00"))
    customer = Customer.objects.get(external_id="A")
    buy(customer, 10)
    Interaction.objects.create(external_id="no-amount", customer=customer, type="purchase", occurred_at=T0)
    Interaction.objects.create(external_id="call", customer=customer, type="call", occurred_at=T0)

    tables = {t["table"]: {c["column"]: (c["missing"], c["of"]) for c in t["columns"]}
              for t in quality.missing_values()}

    assert tables["customers"]["email"] == (2, 3) and tables["customers"]["name"] == (1, 3)
    assert tables["products"]["price"] == (0, 1) and tables["products"]["category"] == (1, 1)
    assert tables["interactions"]["amount (purchases and refunds)"] == (1, 2)  # the call has no amount to miss


def test_missing_records_lists_them(db):
    make_customer("A", name="Ann", email="ann@example.com")
    make_customer("B", name="Bob")

    table, column, rows = quality.missing_records("customers.1")

    assert (table, column, [c.external_id for c in rows]) == ("customers", "email", ["B"])


def test_dates_in_the_future_and_before_1990(db):
    customer = make_customer("A", signup_date=date(1900, 1, 1))
    make_customer("B", signup_date=timezone.localdate() + timedelta(days=30))
    Interaction.objects.create(external_id="planned", customer=customer, type="meeting",
                               occurred_at=datetime(2030, 1, 1, tzinfo=UTC))
    Interaction.objects.create(external_id="epoch", customer=customer, type="purchase",
                               occurred_at=datetime(1970, 1, 1, tzinfo=UTC))
    Interaction.objects.create(external_id="fine", customer=customer, type="purchase", occurred_at=T0)

    findings = {(f["what"], f["short"]): [r.external_id for r in f["rows"]]
                for f in quality.date_findings()}

    assert findings[("interactions", "in the future")] == ["planned"]
    assert findings[("interactions", "before 1990-01-01")] == ["epoch"]
    assert findings[("customers", "signed up in the future")] == ["B"]
    assert findings[("customers", "signed up before 1990-01-01")] == ["A"]


def test_data_quality_page_links_each_finding_to_its_records(client, manager):
    a = make_customer("A", name="Ann", email="ann@example.com")
    b = make_customer("B", name="Ann", email="ann@example.com")
    planned = Interaction.objects.create(external_id="planned", customer=a, type="meeting",
                                         occurred_at=datetime(2030, 1, 1, tzinfo=UTC))
    client.force_login(manager)

    html = client.get(reverse("data_quality")).content.decode()

    assert reverse("customer_detail", args=[a.pk]) in html and reverse("customer_detail", args=[b.pk]) in html
    assert reverse("interaction_edit", args=[planned.pk]) in html
    assert "?missing=customers.2#missing-records" in html  # phone is missing on both
    html = client.get(reverse("data_quality"), {"missing": "customers.2"}).content.decode()
    assert "Customers without phone" in html
    assert client.get(reverse("data_quality"), {"missing": "nope.9"}).status_code == 404


def test_data_quality_page_is_in_the_managers_nav_only(client, manager, rep):
    client.force_login(manager)
    assert reverse("data_quality") in client.get(reverse("home")).content.decode()
    client.force_login(rep)
    assert reverse("data_quality") not in client.get(reverse("home")).content.decode()
    assert client.get(reverse("data_quality")).status_code == 403


def test_data_quality_page_queries_are_bounded(client, manager, django_assert_max_num_queries):
    for i in range(30):
        c = make_customer(f"C{i}", name=f"Person {i}", email=f"p{i % 10}@example.com", company="Acme")
        buy(c, 10 + i)
    client.force_login(manager)

    with django_assert_max_num_queries(30):
        assert client.get(reverse("data_quality")).status_code == 200


def test_forecast_rows_of_a_merged_duplicate_are_dropped(pair, manager):
    keep, dup = pair
    run = TrainingRun.objects.create(kind="forecast", status="succeeded")
    Forecast.objects.create(run=run, customer=dup, expected_purchases=1.0, churn_probability=0.5)

    moved = services.merge_customers(user=manager, keep=keep, duplicates=[dup])

    assert moved["insight rows of past runs dropped"] == 2  # its segment row and its forecast
    assert not Forecast.objects.exists()


def test_api_merge_moves_everything_and_answers_the_counts(pair, manager, rep):
    from rest_framework.test import APIClient

    keep, dup = pair
    api = APIClient()
    api.force_login(rep)
    assert api.post(f"/api/v1/customers/{keep.pk}/merge/", {"duplicates": [dup.pk]}, format="json").status_code == 403
    api.force_login(manager)
    before = _counts()

    body = api.post(f"/api/v1/customers/{keep.pk}/merge/", {"duplicates": [dup.pk]}, format="json").json()

    assert (body["id"], body["merged"], body["moved"]["interactions"]) == (keep.pk, [dup.pk], 2)
    assert _counts() == before and not Customer.objects.filter(pk=dup.pk).exists()
    assert api.post(f"/api/v1/customers/{keep.pk}/merge/", {"duplicates": [dup.pk]},
                    format="json").status_code == 404
    assert api.post(f"/api/v1/customers/{keep.pk}/merge/", {"duplicates": [keep.pk]},
                    format="json").status_code == 409


def test_merge_carries_the_duplicates_tags_once(pair, manager):
    from crm.models import CustomerTag, Tag

    keep, dup = pair
    vip, fair = Tag.objects.create(name="vip"), Tag.objects.create(name="fair 2026")
    CustomerTag.objects.create(customer=keep, tag=vip)
    CustomerTag.objects.create(customer=dup, tag=vip)
    CustomerTag.objects.create(customer=dup, tag=fair)

    moved = services.merge_customers(user=manager, keep=keep, duplicates=[dup])

    assert sorted(CustomerTag.objects.filter(customer=keep).values_list("tag__name", flat=True)) == ["fair 2026", "vip"]
    assert CustomerTag.objects.count() == 2 and moved["tags"] == 1


def test_merge_moves_the_duplicates_follow_ups(pair, manager):
    from datetime import timedelta

    from django.utils import timezone

    from crm.followups import create_followup
    from crm.models import FollowUp

    keep, dup = pair
    made = create_followup(user=manager, customer=dup, due_at=timezone.now() + timedelta(days=1), note="call Ann")

    moved = services.merge_customers(user=manager, keep=keep, duplicates=[dup])

    assert FollowUp.objects.get(pk=made.pk).customer_id == keep.pk and moved["follow ups"] == 1
