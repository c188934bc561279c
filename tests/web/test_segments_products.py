"""Segments page (profiles, chart, transitions) and product pages (search, trend, pitch list)."""
from django.urls import reverse

from ml.models import TrainingRun


def test_segment_list_shows_profiles_and_chart(rep_client, world):
    html = rep_client.get(reverse("segment_list")).content.decode()
    assert "Sleepers: last bought 200 days ago." in html and 'id="chart-figures"' in html


def test_segment_list_transition_table_counts_moves(rep_client, world):
    t = rep_client.get(reverse("segment_list")).context["transitions"]
    assert t["to"] == ["Champions", "Sleepers"]
    rows = {name: cells for name, cells, _total in t["rows"]}
    assert rows == {"Champions": [1, 1], "Sleepers": [1, 1]}
    assert t["moved"] == 2 and t["total"] == 4


def test_segment_list_first_run_has_no_transitions(rep_client, world):
    TrainingRun.objects.filter(pk=world.seg_old.pk).delete()
    html = rep_client.get(reverse("segment_list")).content.decode()
    assert "first segmentation run" in html


def test_segment_list_without_run_says_retrain(manager_client, db):
    html = manager_client.get(reverse("segment_list")).content.decode()
    assert "No segmentation yet" in html and "retrain segmentation" in html


def test_product_list_search_and_category(rep_client, world):
    response = rep_client.get(reverse("product_list"), {"q": "widg"})
    assert [p.sku for p in response.context["page"].object_list] == ["W-1"]
    response = rep_client.get(reverse("product_list"), {"category": "Toys"})
    assert [p.sku for p in response.context["page"].object_list] == ["G-1"]


def test_product_list_query_count_is_bounded(rep_client, world, django_assert_max_num_queries):
    from crm.models import Product

    Product.objects.bulk_create([Product(sku=f"S{i}", name=f"Thing {i}") for i in range(120)])
    for page in (1, 2):
        with django_assert_max_num_queries(7):  # 6, and the second factor's device
            rep_client.get(reverse("product_list"), {"page": page})


def test_product_detail_pitch_list_only_visible_customers(rep_client, world):
    html = rep_client.get(reverse("product_detail", args=[world.gadget.pk])).content.decode()
    assert "Bought Widget, not Gadget yet" in html and "Zed Secret" not in html


def test_product_detail_manager_sees_all_prospects(manager_client, world):
    html = manager_client.get(reverse("product_detail", args=[world.gadget.pk])).content.decode()
    assert "Zed Secret" in html


def test_product_detail_similar_products_and_trend(rep_client, world):
    response = rep_client.get(reverse("product_detail", args=[world.widget.pk]))
    html = response.content.decode()
    assert "Often bought together" in html and 'id="chart-trend"' in html
    assert response.context["figures"]["orders"] == 3


def test_product_detail_unknown_is_404(rep_client, world):
    assert rep_client.get(reverse("product_detail", args=[999999])).status_code == 404
