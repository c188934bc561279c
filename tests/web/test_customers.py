"""Customer list: search, filters, sorting, pagination, CSV export, row-level rule, bounded queries."""
import csv
import io

import pytest
from django.urls import reverse

from crm.models import Customer
from ml.models import Forecast


def names(response):
    return [c.name for c in response.context["page"].object_list]


def test_customer_list_rep_sees_own_and_unassigned_only(rep_client, world):
    assert sorted(names(rep_client.get(reverse("customer_list")))) == ["Ada Lovelace", "Bob Builder", "Una Assigned"]


def test_customer_list_manager_sees_all(manager_client, world):
    assert len(names(manager_client.get(reverse("customer_list")))) == 4


@pytest.mark.parametrize("q", ["ada@example", "Engines", "C-ADA", "lovelace"])
def test_customer_list_search_by_name_email_company_external_id(rep_client, world, q):
    assert names(rep_client.get(reverse("customer_list"), {"q": q})) == ["Ada Lovelace"]


def test_customer_list_rep_cannot_search_others(rep_client, world):
    assert names(rep_client.get(reverse("customer_list"), {"q": "C-ZED"})) == []


def test_customer_list_filter_segment(rep_client, world):
    got = names(rep_client.get(reverse("customer_list"), {"segment": world.champions.pk}))
    assert sorted(got) == ["Ada Lovelace", "Bob Builder"]


def test_customer_list_filter_churn_band(rep_client, world):
    assert names(rep_client.get(reverse("customer_list"), {"churn_band": "high"})) == ["Ada Lovelace"]


def test_customer_list_filter_owner_unassigned(manager_client, world):
    assert names(manager_client.get(reverse("customer_list"), {"owner": "none"})) == ["Una Assigned"]


def test_customer_list_filter_clv_range(manager_client, world):
    got = names(manager_client.get(reverse("customer_list"), {"clv_min": "250", "clv_max": "1500"}))
    assert sorted(got) == ["Ada Lovelace", "Bob Builder"]


def test_customer_list_filter_last_purchase_after(manager_client, world):
    from django.utils import timezone

    Customer.objects.filter(pk=world.ada.pk).update(last_purchase_at=timezone.now())
    got = names(manager_client.get(reverse("customer_list"),
                                   {"last_purchase_after": timezone.localdate().isoformat()}))
    assert got == ["Ada Lovelace"]


def test_customer_list_sort_by_churn_descending(manager_client, world):
    got = names(manager_client.get(reverse("customer_list"), {"sort": "-churn"}))
    assert got == ["Zed Secret", "Ada Lovelace", "Una Assigned", "Bob Builder"]


def test_customer_list_sort_link_marks_column(manager_client, world):
    html = manager_client.get(reverse("customer_list"), {"sort": "-clv"}).content.decode()
    assert 'aria-sort="descending"' in html


def test_customer_list_invalid_filter_is_ignored(manager_client, world):
    response = manager_client.get(reverse("customer_list"), {"clv_min": "lots", "sort": "hack"})
    assert response.status_code == 200 and len(names(response)) == 4


def test_customer_list_paginates(manager_client, world, make_customers):
    make_customers(60)
    response = manager_client.get(reverse("customer_list"), {"per_page": 25, "page": 3})
    assert response.context["page"].number == 3 and len(names(response)) == 14


def test_customer_list_empty_filters_say_how_to_clear(manager_client, world):
    html = manager_client.get(reverse("customer_list"), {"q": "nobody-at-all"}).content.decode()
    assert "No customer matches these filters" in html


@pytest.fixture
def make_customers(world):
    def make(n):
        customers = Customer.objects.bulk_create(
            [Customer(external_id=f"X{i:04d}", name=f"Extra {i:04d}", owner=world.rep if i % 2 else None)
             for i in range(n)])
        Forecast.objects.bulk_create(
            [Forecast(run=world.fc_run, customer=c, expected_purchases=1, expected_spend=10, churn_probability=0.5,
                      clv=100, expected_refund_rate=0) for c in customers])
        return customers
    return make


@pytest.mark.parametrize("role", ["rep_client", "manager_client"])
def test_customer_list_query_count_does_not_grow_with_page_size(request, world, make_customers, role,
                                                                 django_assert_max_num_queries):
    client = request.getfixturevalue(role)
    make_customers(120)
    for per_page in (25, 100):
        with django_assert_max_num_queries(14):  # 10, the second factor's device, the tag filter's names, the page's
            # tags, and for a manager the bulk bar's owner choices
            response = client.get(reverse("customer_list"), {"per_page": per_page, "sort": "-churn"})
        assert len(names(response)) == per_page


def export_rows(response):
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_customer_export_has_insights_of_filtered_list(rep_client, world):
    rows = export_rows(rep_client.get(reverse("customer_export"), {"segment": world.champions.pk}))
    assert sorted(r["external_id"] for r in rows) == ["C-ADA", "C-BOB"]
    ada = next(r for r in rows if r["external_id"] == "C-ADA")
    assert ada["segment"] == "Champions" and float(ada["churn_probability"]) == 0.7
    assert float(ada["value_at_risk"]) == pytest.approx(700.0)


def test_customer_export_excludes_other_reps_customers(rep_client, world):
    rows = export_rows(rep_client.get(reverse("customer_export")))
    assert "C-ZED" not in {r["external_id"] for r in rows}


def test_customer_export_defuses_formula_cells(rep_client, world):
    Customer.objects.filter(pk=world.ada.pk).update(company="=HYPERLINK(\"http://x\")")
    rows = export_rows(rep_client.get(reverse("customer_export"), {"q": "C-ADA"}))
    assert rows[0]["company"].startswith("'=")


def test_customer_export_queries_are_bounded(manager_client, world, make_customers, django_assert_max_num_queries):
    make_customers(150)
    with django_assert_max_num_queries(11):  # 10 reads (the second factor's, the tag filter's names) and the export's audit event
        export_rows(manager_client.get(reverse("customer_export")))


@pytest.mark.parametrize("params", [{}, {"sort": "-name"}, {"q": "extra 00"}, {"owner": "none"},
                                    {"sort": "-churn"}, {"churn_band": "medium", "sort": "name"}])
def test_customer_list_page_matches_full_query(manager_client, world, make_customers, params):
    from ml.customer_lists import customer_list
    from web.forms import CustomerFilterForm

    make_customers(40)
    response = manager_client.get(reverse("customer_list"), {**params, "per_page": 25, "page": 2})
    filters = CustomerFilterForm(params).filters()
    start = (response.context["page"].number - 1) * 25
    expected = [c.name for c in customer_list(response.wsgi_request.user, **filters)[start:start + 25]]
    assert names(response) == expected
    assert response.context["page"].paginator.count == customer_list(response.wsgi_request.user, **filters).count()


def test_customer_list_page_past_the_end_shows_last_page(manager_client, world):
    response = manager_client.get(reverse("customer_list"), {"page": 99})
    assert response.context["page"].number == 1 and len(names(response)) == 4


# --- sorting and filtering by insights (driven by the published run's rows) --------------------

def test_customer_list_sort_by_value_at_risk_returns_planted_order(manager_client, world):
    # value at risk = churn x CLV: Zed 4500, Ada 700, Una 80, Bob 30
    assert names(manager_client.get(reverse("customer_list"), {"sort": "-value_at_risk"})) == [
        "Zed Secret", "Ada Lovelace", "Una Assigned", "Bob Builder"]
    assert names(manager_client.get(reverse("customer_list"), {"sort": "value_at_risk"})) == [
        "Bob Builder", "Una Assigned", "Ada Lovelace", "Zed Secret"]


def test_customer_list_sort_by_insight_keeps_rep_rule(rep_client, world):
    assert names(rep_client.get(reverse("customer_list"), {"sort": "-value_at_risk"})) == [
        "Ada Lovelace", "Una Assigned", "Bob Builder"]
    assert names(rep_client.get(reverse("customer_list"), {"sort": "-churn", "churn_band": "high"})) == [
        "Ada Lovelace"]


def test_customer_list_customers_without_forecast_sort_last_both_ways(manager_client, world):
    Customer.objects.create(external_id="C-NEW", name="Newcomer")
    for sort in ("churn", "-churn", "value_at_risk", "-clv"):
        assert names(manager_client.get(reverse("customer_list"), {"sort": sort}))[-1] == "Newcomer"


def test_customer_list_no_profiling_customer_has_no_insights_to_sort_or_filter(manager_client, world):
    Customer.objects.filter(pk=world.zed.pk).update(no_profiling=True)

    response = manager_client.get(reverse("customer_list"), {"sort": "-churn"})

    assert names(response) == ["Ada Lovelace", "Una Assigned", "Bob Builder", "Zed Secret"]
    zed = response.context["page"].object_list[-1]
    assert (zed.churn_probability, zed.segment_name, zed.value_at_risk) == (None, None, None)
    assert names(manager_client.get(reverse("customer_list"), {"churn_band": "high"})) == ["Ada Lovelace"]
    assert "Zed Secret" not in names(manager_client.get(reverse("customer_list"), {"segment": world.sleepers.pk}))


def test_customer_list_filter_segment_sorted_by_churn(manager_client, world):
    got = names(manager_client.get(reverse("customer_list"), {"segment": world.sleepers.pk, "sort": "-churn"}))
    assert got == ["Zed Secret", "Una Assigned"]


@pytest.mark.parametrize("ordering", ["name", "-churn"])
def test_customer_page_ids_segment_of_unpublished_run_matches_nobody(manager, world, ordering):
    from ml.customer_lists import customer_page_ids

    old = world.seg_old.segments.first()
    assert customer_page_ids(manager, offset=0, limit=25, segment=old.pk, ordering=ordering) == ([], 0)


@pytest.mark.parametrize("params", [{"sort": "churn"}, {"sort": "-churn"}, {"sort": "-value_at_risk"},
                                    {"sort": "spend", "owner": "none"}, {"sort": "-clv", "segment": "champions"},
                                    {"segment": "champions", "sort": "-name"}, {"clv_min": "50", "sort": "name"},
                                    {"sort": "-segment"}])
@pytest.mark.parametrize("role", ["rep_client", "manager_client"])
def test_customer_list_insight_pages_match_full_query(request, world, make_customers, params, role):
    """Pages across the boundary between customers with and without a forecast: no row lost or repeated."""
    from ml.customer_lists import customer_list
    from ml.models import CustomerSegment
    from web.forms import CustomerFilterForm

    client = request.getfixturevalue(role)
    extra = make_customers(40)
    CustomerSegment.objects.bulk_create([CustomerSegment(run=world.seg_run, customer=c, segment=world.champions)
                                         for c in extra[::3]])
    Customer.objects.bulk_create([Customer(external_id=f"N{i:03d}", name=f"No forecast {i:03d}",
                                           owner=world.rep if i % 3 else None) for i in range(30)])
    Customer.objects.filter(external_id__in=["X0003", "X0004"]).update(no_profiling=True)
    params = {**params, "segment": world.champions.pk} if "segment" in params else params
    seen = []
    for page in (1, 2, 3, 4):
        response = client.get(reverse("customer_list"), {**params, "per_page": 25, "page": page})
        if response.context["page"].number != page:
            break
        seen += names(response)
    form = CustomerFilterForm(params, segments=[world.champions, world.sleepers])
    full = customer_list(response.wsgi_request.user, **form.filters())
    assert seen == [c.name for c in full]
    assert response.context["page"].paginator.count == full.count()


# --- targets not forecast (NULL spend / CLV / value at risk) -----------------------------------

@pytest.mark.parametrize("params", [{"sort": "-spend"}, {"sort": "spend"}, {"sort": "-clv"}, {"sort": "clv"},
                                    {"sort": "-value_at_risk"}, {"sort": "value_at_risk"},
                                    {"sort": "-clv", "churn_band": "medium"}, {"sort": "-spend", "segment": "x"},
                                    {"sort": "-clv", "clv_min": "50"}])
@pytest.mark.parametrize("role", ["rep_client", "manager_client"])
def test_customer_list_values_not_forecast_sort_last_and_pages_match_full_query(request, world, make_customers,
                                                                                params, role):
    """Forecast rows with NULL spend and CLV (not forecast for this data) come after every row with
    a value in both directions, mixed by id with customers who have no forecast; no row is lost or
    repeated across pages."""
    from ml.customer_lists import customer_list
    from ml.models import CustomerSegment
    from web.forms import CustomerFilterForm

    client = request.getfixturevalue(role)
    extra = make_customers(40)
    Forecast.objects.filter(run=world.fc_run, customer__in=extra[::2]).update(expected_spend=None, clv=None)
    CustomerSegment.objects.bulk_create([CustomerSegment(run=world.seg_run, customer=c, segment=world.champions)
                                         for c in extra[::3]])
    Customer.objects.bulk_create([Customer(external_id=f"N{i:03d}", name=f"No forecast {i:03d}",
                                           owner=world.rep if i % 3 else None) for i in range(10)])
    params = {**params, "segment": world.champions.pk} if "segment" in params else params
    seen, values = [], []
    column = {"spend": "expected_spend", "clv": "clv", "value_at_risk": "value_at_risk"}[params["sort"].lstrip("-")]
    for page in (1, 2, 3, 4):
        response = client.get(reverse("customer_list"), {**params, "per_page": 10, "page": page})
        if response.context["page"].number != page:
            break
        seen += names(response)
        values += [getattr(c, column) for c in response.context["page"].object_list]
    form = CustomerFilterForm(params, segments=[world.champions, world.sleepers])
    full = customer_list(response.wsgi_request.user, **form.filters())
    assert seen == [c.name for c in full]
    assert response.context["page"].paginator.count == full.count()
    first_null = next(i for i, v in enumerate(values) if v is None) if None in values else len(values)
    assert all(v is None for v in values[first_null:]), "a value after a NULL"
    assert any(v is None for v in values) or "clv_min" in params


def test_customer_list_says_which_targets_are_not_forecast(rep_client, world):
    from ml.models import TrainingRun

    from .run_metrics import NO_AMOUNTS, forecast_metrics

    TrainingRun.objects.filter(pk=world.fc_run.pk).update(metrics=forecast_metrics(spend=False))
    Forecast.objects.filter(run=world.fc_run).update(expected_spend=None, clv=None)

    response = rep_client.get(reverse("customer_list"), {"sort": "-clv"})
    html = response.content.decode()

    assert f"Spend and lifetime value: not forecast ({NO_AMOUNTS})." in html
    assert {(c.expected_spend, c.clv, c.value_at_risk) for c in response.context["page"].object_list} == {
        (None, None, None)}


def test_customer_export_leaves_values_not_forecast_empty(rep_client, world):
    Forecast.objects.filter(run=world.fc_run).update(expected_spend=None, clv=None)

    rows = export_rows(rep_client.get(reverse("customer_export"), {"q": "C-ADA"}))

    assert (rows[0]["expected_spend"], rows[0]["clv"], rows[0]["value_at_risk"]) == ("", "", "")
    assert float(rows[0]["expected_purchases"]) == 2.5 and float(rows[0]["churn_probability"]) == 0.7


def test_customer_export_rounds_figures_and_has_the_phone(rep_client, world):
    Customer.objects.filter(pk=world.ada.pk).update(phone="020 7946 0018")
    Forecast.objects.filter(run=world.fc_run, customer=world.ada).update(
        expected_purchases=2.456789, expected_spend=250.0049, churn_probability=0.06472453997060523,
        clv=1234.5678, expected_refund_rate=0.05)

    response = rep_client.get(reverse("customer_export"), {"q": "C-ADA"})
    body = b"".join(response.streaming_content).decode()

    ada = list(csv.DictReader(io.StringIO(body)))[0]
    assert ada["phone"] == "020 7946 0018"
    assert (ada["expected_purchases"], ada["expected_spend"], ada["churn_probability"], ada["clv"],
            ada["expected_refund_rate"]) == ("2.46", "250.00", "0.065", "1234.57", "0.050")
    assert ada["value_at_risk"] == "79.91"  # 0.0647... x 1234.5678 = 79.906..., rounded once, at the end
    assert not body.startswith("\ufeff") and response["Content-Disposition"] == 'attachment; filename="customers.csv"'


def test_customer_export_for_excel_has_a_bom_and_crlf_and_keeps_defusing(rep_client, world):
    Customer.objects.filter(pk=world.ada.pk).update(name="Ada Lövelace", company="=HYPERLINK(\"http://x\")",
                                                    phone="+44 20 7946 0018")

    response = rep_client.get(reverse("customer_export"), {"q": "C-ADA", "format": "excel"})
    raw = b"".join(response.streaming_content)

    assert raw.startswith(b"\xef\xbb\xbfexternal_id,name,email,phone,") and raw.count(b"\r\n") == 2
    ada = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))[0]
    assert ada["name"] == "Ada Lövelace" and ada["company"].startswith("'=")
    assert ada["phone"] == "'+44 20 7946 0018"  # Excel would compute "+44 20 ..." as a formula (#NULL!)
    assert response["Content-Disposition"] == 'attachment; filename="customers-excel.csv"'


def test_customer_export_for_excel_eu_uses_semicolons_and_decimal_commas(rep_client, world):
    Customer.objects.filter(pk=world.ada.pk).update(last_purchase_at="2026-03-01T14:05:00+00:00")

    response = rep_client.get(reverse("customer_export"), {"q": "C-ADA", "format": "excel-eu"})
    text = b"".join(response.streaming_content).decode("utf-8-sig")

    ada = list(csv.DictReader(io.StringIO(text), delimiter=";"))[0]
    assert (ada["churn_probability"], ada["clv"], ada["value_at_risk"]) == ("0,700", "1000,00", "700,00")
    assert ada["last_purchase_at"] == "2026-03-01 14:05:00"  # TIME_ZONE is UTC in the tests
