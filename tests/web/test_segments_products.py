"""Segments page (profiles, chart, transitions) and product pages (search, trend, pitch list)."""
from django.urls import reverse
from django.utils import timezone

from ml.models import Segment, TrainingRun


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


def test_product_detail_trend_marks_the_current_month_and_its_revenue_is_money(rep_client, world, settings):
    settings.CRM_CURRENCY = "EUR"
    today = timezone.localdate()

    response = rep_client.get(reverse("product_detail", args=[world.widget.pk]))

    spec = response.context["trend"]
    assert spec["labels"][-1] == f"{today:%b %Y} (to date)" and spec["partial"] == 11
    assert spec["money"] == ["y1"]  # the revenue line's axis, not the orders bars'
    html = response.content.decode()
    assert "the month is not over (the lighter bar, the dashed part of the line)" in html
    assert '<span class="value">€9.50</span><span class="label">price</span>' in html
    assert '<span class="value">€300</span><span class="label">revenue, all time</span>' in html


def test_segment_list_charts_are_horizontal_with_names_in_lines(rep_client, world):
    Segment.objects.filter(pk=world.sleepers.pk).update(name="Prospects / no purchases yet")

    charts = rep_client.get(reverse("segment_list")).context["charts"]

    for spec in charts.values():
        assert spec["options"]["indexAxis"] == "y"
        assert ["Prospects / no", "purchases yet"] in spec["labels"]
    assert charts["figures"]["money"] == ["x"]  # median spend's axis


def test_segment_list_top_category_skips_fillers_and_shows_its_share(rep_client, world):
    # given: Champions' stored figures name a real category; Sleepers' (a run from before the naming
    # skipped fillers) name "(other)"
    Segment.objects.filter(pk=world.champions.pk).update(
        figures={**world.champions.figures, "top_category": "Garden", "top_category_share": 0.62})
    Segment.objects.filter(pk=world.sleepers.pk).update(
        figures={**world.sleepers.figures, "top_category": "(other)", "top_category_share": 0.8})

    html = rep_client.get(reverse("segment_list")).content.decode()

    assert "<dt>Top category</dt><dd>Garden <span class=\"muted\">(62 % of spend)</span></dd>" in html
    assert html.count("<dt>Top category</dt>") == 1 and "(other)" not in html


def test_segment_list_figures_are_money(rep_client, world):
    html = rep_client.get(reverse("segment_list")).content.decode()

    assert "<dt>Median spend</dt><dd>$300.00</dd>" in html and "<dt>Median spend</dt><dd>$40.00</dd>" in html
