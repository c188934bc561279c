"""bench/shapes.py's data-shape builders, anchors and scoring, on tiny contract frames made here.

No file from ../shared: every frame is built in the test, in the contract's text form.
"""
import numpy as np
import pandas as pd
import pytest

from bench import cj_protocol as P
from bench import shape_anchors as A
from bench import shape_builders as B
from bench.shapes import forecast_verdict, training_files

AS_OF = "2017-10-03"


def make_frames(n_households=30, n_products=12, rows=900, seed=0):
    """Contract frames (text) with purchases from 2017-01-01 to 2018-01-01 around AS_OF."""
    rng = np.random.default_rng(seed)
    day = pd.Timestamp("2017-01-01") + pd.to_timedelta(rng.integers(0, 366, rows), unit="D")
    hh = rng.integers(0, n_households, rows)
    interactions = pd.DataFrame({
        "customer_external_id": [f"h{h}" for h in hh],
        "type": "purchase",
        "occurred_at": [f"{d:%Y-%m-%d}T{rng.integers(8, 20):02d}:15:00" for d in day],
        "product_sku": [f"p{p}" for p in rng.integers(0, n_products, rows)],
        "quantity": [str(q) for q in rng.integers(1, 4, rows)],
        "amount": [f"{a:.2f}" for a in rng.gamma(2.0, 3.0, rows)],
        "order_ref": [f"o{h}-{d:%Y%m%d}" for h, d in zip(hh, day, strict=True)],
        "external_id": [f"cj{i}" for i in range(rows)],
        "channel": "store 1",
    }).sort_values("occurred_at", kind="stable").reset_index(drop=True)
    customers = pd.DataFrame({"external_id": [f"h{h}" for h in range(n_households)], "age": "25-34"})
    products = pd.DataFrame({"sku": [f"p{p}" for p in range(n_products)], "name": [f"item {p}" for p in range(n_products)],
                             "category": [f"cat{p % 3}" for p in range(n_products)], "price": "1.50",
                             "description": "", "tags": "", "active": "true"})
    return {"customers": customers, "products": products, "interactions": interactions}


@pytest.fixture
def frames():
    return make_frames()


def days(t):
    return t["occurred_at"].str[:10]


def test_builders_never_change_their_input(frames):
    before = {k: v.copy() for k, v in frames.items()}
    for build in B.BUILDERS.values():
        shape = build(frames)
        assert isinstance(shape, B.Shape)
        assert shape.as_of == AS_OF and shape.horizon_days == 90
    for k, v in before.items():
        pd.testing.assert_frame_equal(frames[k], v)


def test_builders_are_deterministic(frames):
    for build in B.BUILDERS.values():
        a, b = build(frames), build(frames)
        pd.testing.assert_frame_equal(a.interactions, b.interactions)


def test_full_keeps_everything(frames):
    shape = B.full(frames)
    pd.testing.assert_frame_equal(shape.interactions, frames["interactions"])
    assert shape.window_end == "2018-01-01"
    pd.testing.assert_frame_equal(B.no_refunds(frames).interactions, frames["interactions"])


@pytest.mark.parametrize("build, history", [(B.short_1h, 90), (B.short_1_5h, 135)])
def test_short_history_keeps_that_many_days_before_as_of_and_the_whole_window(frames, build, history):
    t = build(frames).interactions
    d, original = days(t), days(frames["interactions"])
    first = (pd.Timestamp(AS_OF) - pd.Timedelta(days=history - 1)).strftime("%Y-%m-%d")
    assert d.min() >= first
    assert (d <= AS_OF).sum() == ((original >= first) & (original <= AS_OF)).sum()
    assert (d > AS_OF).sum() == (original > AS_OF).sum()


def test_no_catalogue_drops_the_sku_column_and_the_products_file(frames):
    shape = B.no_catalogue(frames)
    assert "product_sku" not in shape.interactions and shape.products is None
    assert len(shape.interactions) == len(frames["interactions"])


def test_no_amounts_drops_the_amount_column(frames):
    shape = B.no_amounts(frames)
    assert "amount" not in shape.interactions
    assert len(shape.interactions) == len(frames["interactions"])


def test_refunds_add_a_refund_for_five_percent_of_the_purchases_before_as_of(frames):
    t = B.refunds(frames).interactions
    refunds = t[t["type"] == "refund"]
    bought = frames["interactions"]
    eligible = (days(bought) <= AS_OF).sum()
    assert len(refunds) == round(0.05 * eligible)
    assert t["external_id"].is_unique
    original = bought.set_index("external_id")
    for _, r in refunds.iterrows():
        p = original.loc[r["external_id"].removesuffix("-refund")]
        assert p["occurred_at"][:10] <= AS_OF
        assert (r["customer_external_id"], r["product_sku"], r["amount"], r["order_ref"]) == (
            p["customer_external_id"], p["product_sku"], p["amount"], p["order_ref"])
        lag = (pd.Timestamp(r["occurred_at"]) - pd.Timestamp(p["occurred_at"])).days
        assert 1 <= lag <= 14


def test_one_time_buyers_keeps_households_with_one_purchase_day_before_as_of_and_their_later_rows():
    f = make_frames(n_households=400, rows=900)  # sparse enough that some buy once before as_of
    t = B.one_time_buyers(f).interactions
    before = t[days(t) <= AS_OF]
    assert len(before) and (days(before).groupby(before["customer_external_id"]).nunique() == 1).all()
    kept = set(t["customer_external_id"])
    original = f["interactions"]
    assert (t[days(t) > AS_OF].shape[0]
            == original[(days(original) > AS_OF) & original["customer_external_id"].isin(kept)].shape[0])
    assert set(B.one_time_buyers(f).customers["external_id"]) == kept


def test_customers_20_draws_both_kinds_of_households():
    f = make_frames(n_households=60, rows=600)
    t = f["interactions"]
    # Ten households that stop buying at as_of, so there are "only before" ones to draw.
    stop = t["customer_external_id"].isin([f"h{i}" for i in range(10)]) & (days(t) > AS_OF)
    f = {**f, "interactions": t[~stop]}
    shape = B.customers_20(f)
    t = shape.interactions
    hh = set(t["customer_external_id"])
    after = set(t.loc[days(t) > AS_OF, "customer_external_id"])
    before = set(t.loc[days(t) <= AS_OF, "customer_external_id"])
    assert len(hh) == 20 and hh == before
    assert len(hh & after) == 15 and len(hh - after) == 5


def test_one_category_puts_every_product_in_one_category(frames):
    assert B.one_category(frames).products["category"].nunique() == 1


def test_ratings_like_keeps_each_pair_once_its_first_row(frames):
    t = B.ratings_like(frames).interactions
    assert not t.duplicated(["customer_external_id", "product_sku"]).any()
    original = frames["interactions"]
    first = original.sort_values("occurred_at", kind="stable").drop_duplicates(["customer_external_id", "product_sku"])
    assert set(t["external_id"]) == set(first["external_id"])


def test_seasonal_peak_triples_the_rush_with_new_orders(frames):
    t = B.seasonal_peak(frames).interactions
    original = frames["interactions"]
    in_rush = lambda x: (days(x) >= "2017-08-01") & (days(x) <= "2017-08-21")  # noqa: E731
    assert in_rush(t).sum() == 3 * in_rush(original).sum() > 0
    assert (~in_rush(t)).sum() == (~in_rush(original)).sum()
    assert t["external_id"].is_unique
    rush = t[in_rush(t)]
    assert rush["order_ref"].nunique() == 3 * original.loc[in_rush(original), "order_ref"].nunique()


def test_huge_orders_multiplies_one_percent_of_households_by_fifty():
    f = make_frames(n_households=200, rows=2000)
    t = B.huge_orders(f).interactions
    o = f["interactions"]
    changed = o["amount"] != t["amount"]
    big = set(o.loc[changed, "customer_external_id"])
    assert len(big) == 2
    sel = o["customer_external_id"].isin(big)
    assert np.allclose(t.loc[sel, "amount"].astype(float), o.loc[sel, "amount"].astype(float) * 50, atol=0.01)
    assert (t.loc[sel, "quantity"].astype(int) == o.loc[sel, "quantity"].astype(int) * 50).all()
    assert (t.loc[~sel, ["amount", "quantity"]] == o.loc[~sel, ["amount", "quantity"]]).all().all()


def test_near_midnight_moves_times_to_23_30_with_an_offset_and_days_are_local(frames):
    shape = B.near_midnight_tz(frames)
    t = shape.interactions
    assert shape.env == {"TIME_ZONE": "America/New_York"} and shape.tz == "America/New_York"
    assert t["occurred_at"].str.fullmatch(r"\d{4}-\d\d-\d\dT23:[3-5]\d:\d\d-05:00").all()
    assert (days(t) == days(frames["interactions"])).all()
    local = P.row_days(t, shape.tz)
    winter, summer = days(t) < "2017-03-01", (days(t) >= "2017-06-01") & (days(t) < "2017-09-01")
    assert (local[winter] == days(t)[winter]).all()  # -05:00 is New York's winter time
    next_day = (pd.to_datetime(days(t)[summer]) + pd.Timedelta(days=1)).dt.strftime("%Y-%m-%d")
    assert (local[summer] == next_day).all()  # 23:30-05:00 is 00:30 summer time the next day


def test_catalogue_tiny_keeps_only_the_most_bought_products(frames):
    shape = B.catalogue_tiny(frames, n=3)
    t = frames["interactions"]
    top = t[days(t) <= AS_OF].groupby("product_sku").size().sort_values(ascending=False)
    assert set(shape.interactions["product_sku"]) == set(shape.products["sku"])
    assert len(shape.products) == 3 and set(shape.products["sku"]) <= set(top.index[:4])


def test_catalogue_large_pads_with_never_bought_products(frames):
    shape = B.catalogue_large(frames, size=100)
    assert shape.unbought_products
    assert len(shape.products) == len(frames["products"]) + 100 - 12 and shape.products["sku"].is_unique
    padded = shape.products[shape.products["sku"].str.startswith("synthetic-")]
    assert not padded["sku"].isin(shape.interactions["product_sku"]).any()
    pd.testing.assert_frame_equal(shape.interactions, frames["interactions"])


def test_dense_ratings_is_ratings_like_on_the_top_products(frames):
    t = B.dense_ratings(frames, n=5).interactions
    assert not t.duplicated(["customer_external_id", "product_sku"]).any()
    assert t["product_sku"].nunique() == 5


def test_training_files_hold_nothing_after_as_of(frames, tmp_path):
    shape = B.catalogue_tiny(frames, n=4)
    files = training_files(shape, tmp_path)
    written = pd.read_csv(files["paths"]["interactions"], dtype=str)
    assert days(written).max() <= AS_OF
    products = pd.read_csv(files["paths"]["products"], dtype=str)
    assert set(products["sku"]) == set(written["product_sku"])
    assert set(pd.read_csv(files["paths"]["customers"], dtype=str)["external_id"]) == set(
        written["customer_external_id"])


def test_training_files_of_no_catalogue_have_no_products_file(frames, tmp_path):
    files = training_files(B.no_catalogue(frames), tmp_path)
    assert set(files["paths"]) == {"customers", "interactions"}


def test_training_files_keep_padded_products_only_for_the_large_catalogue(frames, tmp_path):
    files = training_files(B.catalogue_large(frames, size=100), tmp_path)
    assert len(pd.read_csv(files["paths"]["products"], dtype=str)) == 100


def test_forecast_truth_counts_orders_days_and_spend_in_the_window():
    t = pd.DataFrame({
        "customer_external_id": ["a", "a", "a", "a", "b", "c"],
        "type": ["purchase", "purchase", "purchase", "refund", "purchase", "purchase"],
        "occurred_at": ["2017-10-01", "2017-10-05", "2017-10-05", "2017-10-06", "2017-09-01", "2017-10-10"],
        "amount": ["1", "2", "3", "2", "5", "7"], "order_ref": ["x", "y", "z", "y", "w", "v"],
    })
    scored, truth = P.forecast_truth(t, AS_OF, "2018-01-01")
    assert scored == ["a", "b"]  # c bought only after as_of: not scored
    assert truth.loc["a"].tolist() == [2, 1, 5.0] and truth.loc["b"].tolist() == [0, 0, 0.0]
    export = pd.DataFrame({"external_id": ["a"], "expected_purchases": [2.0], "expected_spend": [5.0],
                           "churn_probability": [0.1]})
    s = P.score_forecast_export(export, scored, truth)  # b missing: 0 orders, churn 1
    assert s["orders_rmse"] == 0 and s["churn_auc"] == 1.0


def test_naive_rate_is_repeats_per_day_of_tenure():
    rows = pd.DataFrame({"customer_external_id": ["a", "a", "a"], "type": "purchase",
                         "day": ["2017-09-03", "2017-09-13", "2017-09-13"], "amount": ["4", "6", "2"],
                         "order_ref": ["x", "y", "z"], "quantity": "1"})
    p = A.naive_rate(rows, AS_OF, 90).iloc[0]
    assert p["expected_purchases"] == pytest.approx(2 / 30 * 90)  # orders - 1 over 30 days of tenure
    assert p["expected_spend"] == pytest.approx(8 / 30 * 90)
    assert p["churn_probability"] == pytest.approx(np.exp(-1 / 30 * 90))


def test_inner_window_is_the_horizon_or_a_third_of_a_short_history():
    assert A.inner_window(276, 90) == 90 and A.inner_window(180, 90) == 90
    assert A.inner_window(135, 90) == 45 and A.inner_window(90, 90) == 30


def test_forecast_anchors_beat_all_zeros_on_held_back_data(frames):
    t = frames["interactions"].assign(day=lambda x: days(x))
    rows = t[t["day"] <= AS_OF]
    scored, truth = P.forecast_truth(frames["interactions"], AS_OF, "2018-01-01")
    zeros = P.score_forecast_export(pd.DataFrame({"external_id": scored, "expected_purchases": 0.0,
                                                  "expected_spend": 0.0, "churn_probability": 1.0}), scored, truth)
    lr, info = A.linear_regression(rows, AS_OF, 90)
    assert info["window_days"] == 90
    for pred in (A.naive_rate(rows, AS_OF, 90), A.bg_nbd(rows, AS_OF, 90), lr):
        assert P.score_forecast_export(pred, scored, truth)["orders_rmse"] < zeros["orders_rmse"]


def test_item_knn_recommends_what_is_bought_with_the_households_products():
    # b and c are always bought together; a household that bought b should get c first.
    rows = pd.DataFrame({"customer_external_id": ["u1", "u1", "u2", "u2", "u3", "u4", "u4"],
                         "product_sku": ["b", "c", "b", "c", "b", "d", "e"], "type": "purchase",
                         "day": "2017-09-01"})
    lists = A.item_knn_lists(rows, ["u3"], new=True)
    assert lists["u3"][0] == "c" and "b" not in lists["u3"]
    assert A.popularity_lists(rows, ["u3"], new=False)["u3"][:2] == ["b", "c"]
    assert A.repeat_buy_lists(rows, ["u3"])["u3"][0] == "b"


def test_score_lists_counts_new_mode_hits_only_on_new_products():
    truth, seen = {"u": {"a", "b"}}, {"u": {"a"}}
    s = P.score_lists({"u": ["a", "b"]}, truth, seen, new=True, catalogue_size=10)
    assert s["ndcg"] == 1.0 and s["recall"] == 1.0
    s = P.score_lists({"u": ["a", "b"]}, truth, seen, new=False, catalogue_size=10)
    assert s["recall"] == 1.0 and s["precision"] == 0.2


def _forecast(ours, *anchors):
    def scores(rmse, auc, total):
        return {"orders_rmse": rmse, "churn_auc": auc, "orders_abs_total_pct_error": total}
    return {"window_orders": 10.0, "ours": scores(*ours), "anchors": {f"a{i}": scores(*a) for i, a in enumerate(anchors)}}


def test_forecast_verdict_passes_only_when_matching_the_best_anchor():
    assert forecast_verdict(_forecast((3.0, 0.84, 2.0), (3.1, 0.83, 1.0), (3.0, 0.84, 5.0)))[0] == "PASS"
    verdict, reasons = forecast_verdict(_forecast((3.05, 0.84, 2.0), (3.0, 0.83, 1.0), (3.1, 0.84, 5.0)))
    assert verdict == "FAIL" and "orders RMSE" in reasons[0]
    assert forecast_verdict(_forecast((3.0, 0.80, 2.0), (3.1, 0.83, 3.0)))[0] == "FAIL"
    assert forecast_verdict(_forecast((3.0, 0.84, 6.0), (3.1, 0.83, 3.0), (3.2, 0.8, 5.0)))[0] == "FAIL"
    assert forecast_verdict({**_forecast((3.0, 0.84, 2.0), (3.1, 0.83, 3.0)), "window_orders": 0})[0] == "not scored"
