"""The web customer list's deep pages: numbered pages first, then Next / Previous / Last by keyset."""
import html
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crm.models import Customer
from ml.models import Forecast
from web.views import customers as customer_views

pytestmark = pytest.mark.django_db

URL = "/customers/"


@pytest.fixture
def long_list(world, rep, monkeypatch):
    """130 more of the rep's customers (half with a forecast); keyset after page 2 of 25."""
    monkeypatch.setattr(customer_views, "KEYSET_AFTER_PAGE", 2)
    customers = Customer.objects.bulk_create([Customer(external_id=f"L-{i:03}", name=f"Long {i % 40:02}", owner=rep)
                                              for i in range(130)])
    Forecast.objects.bulk_create([Forecast(run=world.fc_run, customer=c, expected_purchases=1, churn_probability=(i % 10) / 10,
                                           clv=i)
                                  for i, c in enumerate(customers) if i % 2])
    return customers


def _page(client, query):
    body = client.get(f"{URL}?{query}").content.decode()
    links = {rel: html.unescape(href) for href, rel in re.findall(r'<a href="\?([^"]*)" rel="(next|prev)"', body)}
    last = re.search(r'<a href="\?([^"]*)">Last »', body)
    number = re.search(r"Page (\d+) of (\d+)", body)
    return {"ids": re.findall(r'<div class="reason">([^<]+)</div>', body), "links": links,
            "last": html.unescape(last.group(1)) if last else None,
            "number": tuple(map(int, number.groups())) if number else None, "body": body}


def _visible(world):
    return set(Customer.objects.filter(owner__in=[world.rep, None]).values_list("external_id", flat=True)) | {
        world.una.external_id}


@pytest.mark.parametrize("sort", ["name", "-churn", "clv", "-last_purchase"])
def test_customer_list_next_links_cover_every_customer_once_past_the_numbered_pages(long_list, world, rep_client,
                                                                                     sort):
    page, seen, queries = _page(rep_client, f"sort={sort}"), [], []
    while True:
        seen += page["ids"]
        queries.append(page["links"].get("next"))
        if "next" not in page["links"]:
            break
        page = _page(rep_client, page["links"]["next"])

    assert len(seen) == len(set(seen)) and set(seen) == _visible(world)
    assert page["number"] == (6, 6) and len(page["ids"]) == 133 - 5 * 25
    assert "page=2" in queries[0] and all("cursor=" in q and "page=" not in q for q in queries[1:-1])


def test_customer_list_last_and_previous_links_walk_back_by_keyset(long_list, world, rep_client):
    first = _page(rep_client, "sort=-churn")
    page, seen = _page(rep_client, first["last"]), []
    assert first["last"].endswith("page=last") and page["number"] == (6, 6)
    while True:
        seen = page["ids"] + seen
        if "prev" not in page["links"]:
            break
        page = _page(rep_client, page["links"]["prev"])

    assert page["number"] == (1, 6) and len(seen) == len(set(seen)) and set(seen) == _visible(world)
    forwards = _page(rep_client, "sort=-churn&per_page=100")["ids"] + _page(rep_client, "sort=-churn&per_page=100&page=2")["ids"]
    assert seen == forwards


def test_customer_list_deep_pages_read_no_offset(long_list, rep_client):
    page3 = _page(rep_client, _page(rep_client, "page=2")["links"]["next"])
    with CaptureQueriesContext(connection) as deep:
        _page(rep_client, page3["links"]["next"])
    with CaptureQueriesContext(connection) as last:
        _page(rep_client, "page=last")
    with CaptureQueriesContext(connection) as numbered:
        _page(rep_client, "page=5")

    assert not any("OFFSET" in q["sql"].upper() for q in deep.captured_queries + last.captured_queries)
    assert any("OFFSET" in q["sql"].upper() for q in numbered.captured_queries)


def test_customer_list_bad_cursor_shows_the_first_page_with_a_warning(long_list, rep_client):
    cursor = _page(rep_client, "page=2")["links"]["next"].split("cursor=")[1]

    forged = _page(rep_client, "cursor=" + cursor[:-2] + "xx")
    other_sort = _page(rep_client, "sort=-clv&cursor=" + cursor)

    for page in (forged, other_sort):
        assert page["number"] == (1, 6) and "not valid for this list" in page["body"]
