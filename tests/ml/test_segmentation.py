"""Customer segmentation on synthetic frames with planted groups (no database).

Run the timing benchmark with ``python tests/ml/test_segmentation.py [n_customers n_rows]``.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ml.pipelines.segmentation import (  # noqa: E402
    PROSPECTS,
    UNUSUAL,
    CustomerSegmenter,
    match_segments,
)
from ml.pipelines.segmentation.features import (  # noqa: E402
    customer_features,
    features_from_rows,
    is_filler_category,
    prepare_rows,
)

AS_OF = pd.Timestamp("2024-12-31")
CATEGORIES = ("Electronics", "Garden", "Books", "Toys", "Food")
TOUCHES = np.array(["view", "email", "call", "meeting", "support", "note"])

# Planted behaviour groups: orders (base + Poisson), active window in days before AS_OF,
# typical order value, favourite category, share of purchases refunded.
GROUPS = {
    "loyal": dict(orders=(10, 6), window=(365, 0), value=150.0, category=0, refund=0.0),
    "lapsed": dict(orders=(1, 0.5), window=(365, 220), value=25.0, category=1, refund=0.0),
    "refunders": dict(orders=(5, 2), window=(365, 0), value=60.0, category=2, refund=0.5),
    "prospects": dict(orders=None),
}


def make_frames(n_customers=600, seed=0, touches_per_customer=3.0,
                shares=(0.35, 0.35, 0.2, 0.1), as_of=AS_OF):
    """Interactions / products / customers frames (schema.py) with planted groups.

    Returns (interactions, products, customers, group) where ``group`` maps customer_id to
    the planted group name. Vectorised so it also builds the benchmark's millions of rows.
    """
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n_customers + 1, dtype=np.int64)
    names = np.array(list(GROUPS))
    group = names[rng.choice(len(names), size=n_customers, p=shares)]

    products = pd.DataFrame({
        "product_id": np.arange(100, dtype=np.int64),
        "sku": [f"SKU{i}" for i in range(100)],
        "name": [f"Product {i}" for i in range(100)],
        "category": [CATEGORIES[i % len(CATEGORIES)] for i in range(100)],
        "description": "", "tags": "", "active": True,
        "price": np.round(rng.uniform(5, 200, 100), 2),
    })
    by_category = [np.flatnonzero(products["category"] == c) for c in CATEGORIES]

    parts = []
    for gname, spec in GROUPS.items():
        members = ids[group == gname]
        if spec["orders"] is None or len(members) == 0:
            continue
        base, lam = spec["orders"]
        n_orders = base + rng.poisson(lam, len(members))
        cust = np.repeat(members, n_orders)
        start, stop = spec["window"]
        days_before = rng.uniform(stop, start, len(cust))
        when = as_of + pd.Timedelta(hours=12) - pd.to_timedelta(days_before, unit="D")
        fav = rng.random(len(cust)) < 0.8
        cat = np.where(fav, spec["category"], rng.integers(0, len(CATEGORIES), len(cust)))
        pid = np.array([by_category[c][0] for c in range(len(CATEGORIES))])[cat] \
            + 5 * rng.integers(0, 20, len(cust))
        amount = np.round(spec["value"] * rng.lognormal(0, 0.25, len(cust)), 2)
        parts.append(pd.DataFrame({"customer_id": cust, "product_id": pid, "type": "purchase",
                                   "occurred_at": when, "quantity": 1, "amount": amount}))
        refunded = rng.random(len(cust)) < spec["refund"]
        if refunded.any():
            parts.append(pd.DataFrame({
                "customer_id": cust[refunded], "product_id": pid[refunded], "type": "refund",
                # Two days after the purchase, but never after as_of.
                "occurred_at": as_of + pd.Timedelta(hours=12) - pd.to_timedelta(
                    np.maximum(days_before[refunded] - 2, 0), unit="D"),
                "quantity": 1, "amount": amount[refunded]}))
    n_touch = rng.poisson(touches_per_customer, n_customers)
    tcust = np.repeat(ids, n_touch)
    parts.append(pd.DataFrame({
        "customer_id": tcust, "product_id": -1,
        "type": TOUCHES[rng.integers(0, len(TOUCHES), len(tcust))],
        "occurred_at": as_of - pd.to_timedelta(rng.uniform(0, 365, len(tcust)), unit="D"),
        "quantity": 1, "amount": 0.0}))
    interactions = pd.concat(parts, ignore_index=True)
    interactions["occurred_at"] = interactions["occurred_at"].astype("datetime64[ns]")
    interactions["order_ref"] = "o" + pd.Series(np.arange(len(interactions))).astype(str)
    interactions = interactions[["customer_id", "product_id", "type", "occurred_at",
                                 "quantity", "amount", "order_ref"]]
    customers = pd.DataFrame({
        "customer_id": ids, "external_id": ids.astype(str),
        "signup_date": pd.Series(as_of - pd.Timedelta(days=400), index=ids).to_numpy(
            dtype="datetime64[ns]"),
        "owner_id": np.int64(-1)})
    return interactions, products, customers, pd.Series(group, index=ids)


@pytest.fixture(scope="module")
def planted():
    return make_frames()


@pytest.fixture(scope="module")
def kmeans_fit(planted):
    interactions, products, customers, _ = planted
    return CustomerSegmenter(algorithm="kmeans", random_state=0).fit(
        interactions, products, customers, AS_OF)


def _segment_of_group(model, group, gname):
    a = model.assignments_.set_index("customer_id")
    keys = a.loc[group[group == gname].index, "segment_key"]
    return model.segments_.set_index("segment_key").loc[keys.mode()[0]]


# ---------------------------------------------------------------------- features
def test_customer_features_values_on_hand_made_rows():
    t = pd.Timestamp
    interactions = pd.DataFrame({
        "customer_id": [1, 1, 1, 1, 1, 1, 2, 2],
        "product_id": [10, 10, 11, 10, 10, -1, -1, 10],
        "type": ["purchase", "purchase", "purchase", "purchase", "refund", "support", "view",
                 "purchase"],
        "occurred_at": [t("2024-01-01 10:00"), t("2024-01-01 10:05"), t("2024-01-11"),
                        t("2024-01-31"), t("2024-02-01"), t("2024-02-02"), t("2024-02-03"),
                        t("2024-02-10 23:59")],
        "quantity": [1, 1, 2, 1, 1, 1, 1, 1],
        "amount": [10.0, 20.0, 0.0, 30.0, 15.0, 0.0, 0.0, 7.0],
        # Customer 2 reuses the order key "A": it is still a separate order of theirs.
        "order_ref": ["A", "A", "B", "C", "r1", "s1", "v1", "A"],
    })
    products = pd.DataFrame({"product_id": [10, 11], "sku": ["a", "b"], "name": ["a", "b"],
                             "category": ["Books", ""], "description": "", "tags": "",
                             "active": True, "price": [10.0, 5.0]})
    customers = pd.DataFrame({"customer_id": [1, 2], "external_id": ["1", "2"],
                              "signup_date": [t("2023-12-01"), pd.NaT], "owner_id": -1})

    f = customer_features(interactions, products, customers, "2024-02-10")

    one = f.loc[1]
    assert one["orders"] == 3  # A (two lines), B, C
    assert one["spend"] == pytest.approx(70.0)  # 10 + 20 + 2 x 5 (priced) + 30
    assert one["recency_days"] == 10
    assert one["tenure_days"] == (t("2024-02-10") - t("2023-12-01")).days
    assert one["aov"] == pytest.approx(70.0 / 3)
    assert one["purchase_gap_days"] == pytest.approx((t("2024-01-31") - t("2024-01-01 10:00"))
                                                     / pd.Timedelta(days=1) / 2)
    assert one["refund_share"] == pytest.approx(15.0 / 70.0)
    assert one["share_support"] == 1.0
    assert one["cat_share:Books"] == pytest.approx(60.0 / 70.0)
    assert one["top_category"] == "Books"
    two = f.loc[2]
    assert (two["orders"], two["spend"], two["recency_days"]) == (1, 7.0, 0)
    assert two["tenure_days"] == 7  # no signup date: from the first interaction


def test_customer_features_customer_without_purchase_is_sane():
    interactions, products, customers, group = make_frames(n_customers=200, seed=1)
    f = customer_features(interactions, products, customers, AS_OF)
    prospect = f.loc[group[group == "prospects"].index]
    assert (prospect["orders"] == 0).all() and (prospect["spend"] == 0).all()
    assert prospect["recency_days"].isna().all()
    assert (prospect["aov"] == 0).all() and (prospect["refund_share"] == 0).all()
    assert (prospect["tenure_days"] == 400).all()  # from the signup date
    assert not prospect.drop(columns=["recency_days", "purchase_gap_days",
                                      "purchase_gap_cv"]).isna().any().any()


def test_customer_features_ignore_rows_after_as_of():
    interactions, products, customers, _ = make_frames(n_customers=150, seed=2)
    before = customer_features(interactions, products, customers, AS_OF)
    late = pd.DataFrame({"customer_id": [1, 2], "product_id": [0, 1], "type": "purchase",
                         "occurred_at": [AS_OF + pd.Timedelta(days=1),
                                         AS_OF + pd.Timedelta(days=30)],
                         "quantity": 1, "amount": [1e6, 5.0], "order_ref": ["late1", "late2"]})
    after = customer_features(pd.concat([interactions, late], ignore_index=True), products,
                              customers, AS_OF)
    pd.testing.assert_frame_equal(before, after)


def test_features_from_rows_at_an_earlier_cut_match_customer_features():
    interactions, products, customers, _ = make_frames(n_customers=150, seed=3)
    cut = AS_OF - pd.Timedelta(days=90)
    rows = prepare_rows(interactions, products, customers, AS_OF)
    pd.testing.assert_frame_equal(features_from_rows(rows, cut),
                                  customer_features(interactions, products, customers, cut))


# ---------------------------------------------------------------------- algorithms
def test_kmeans_recovers_planted_groups(planted, kmeans_fit):
    *_, group = planted
    a = kmeans_fit.assignments_.set_index("customer_id")
    buyers = group[group != "prospects"].index
    assert kmeans_fit.params_["k"] == 3
    assert adjusted_rand_score(group[buyers], a.loc[buyers, "segment_key"]) > 0.8
    prospects = group[group == "prospects"].index
    assert (a.loc[prospects, "name"] == PROSPECTS).all()


def test_kmeans_refund_group_profile_says_it_refunds(planted, kmeans_fit):
    *_, group = planted
    seg = _segment_of_group(kmeans_fit, group, "refunders")
    assert "Refund-prone" in seg["name"]
    assert "refund often" in seg["profile"]
    loyal = _segment_of_group(kmeans_fit, group, "loyal")
    assert "rarely refund" in loyal["profile"]
    assert loyal["figures"]["top_category"] == "Electronics"


def test_segments_have_distinct_names_and_json_figures(kmeans_fit):
    segs = kmeans_fit.segments_
    assert segs["name"].is_unique
    assert not segs["name"].str.contains(r"^Segment \d", regex=True).any()
    json.dumps(segs[["segment_key", "name", "profile", "size", "figures"]]
               .to_dict(orient="records"))
    json.dumps(kmeans_fit.params_)
    assert segs["size"].sum() == len(kmeans_fit.assignments_)


def test_dbscan_puts_an_outlier_into_unusual(planted):
    interactions, products, customers, _ = planted
    outlier = pd.DataFrame({
        "customer_id": 9999, "product_id": 3, "type": "purchase",
        "occurred_at": AS_OF - pd.to_timedelta(np.arange(300) * 0.5, unit="D"),
        "quantity": 1, "amount": 5000.0, "order_ref": [f"x{i}" for i in range(300)]})
    customers = pd.concat([customers, customers.iloc[[0]].assign(customer_id=9999)],
                          ignore_index=True)
    model = CustomerSegmenter(algorithm="dbscan", random_state=0).fit(
        pd.concat([interactions, outlier], ignore_index=True), products, customers, AS_OF)
    a = model.assignments_.set_index("customer_id")
    assert a.loc[9999, "name"] == UNUSUAL
    # The bulk of the base lands in dense groups, not in "Unusual".
    assert (a["name"] == UNUSUAL).mean() < 0.25
    assert model.params_["eps"] > 0


def test_rfm_puts_most_recent_and_frequent_into_champions(planted):
    interactions, products, customers, group = planted
    model = CustomerSegmenter(algorithm="rfm").fit(interactions, products, customers, AS_OF)
    a = model.assignments_.set_index("customer_id")
    f = model.features_
    buyers = f[f["orders"] > 0]
    best = (buyers["recency_days"].rank(ascending=False) + buyers["orders"].rank()
            + buyers["spend"].rank()).idxmax()
    assert a.loc[best, "name"] == "Champions"
    assert a.loc[best, "rfm_score"] // 100 == 5
    lapsed = group[group == "lapsed"].index
    assert a.loc[lapsed, "name"].isin(["Lost", "Hibernating", "About to sleep"]).mean() > 0.9
    assert (a.loc[group[group == "prospects"].index, "rfm_score"] == 0).all()


def test_auto_chooses_on_several_backtest_origins(planted):
    interactions, products, customers, _ = planted
    model = CustomerSegmenter(algorithm="auto", random_state=0).fit(
        interactions, products, customers, AS_OF)

    backtest = model.backtest_
    assert backtest["validated"] and backtest["window_days"] == 90
    assert [o["cut"] for o in backtest["origins"]] == ["2024-10-02", "2024-08-18", "2024-07-04"]
    choice = backtest["choice"]["segments"]
    assert (choice["metric"], choice["lower_is_better"], choice["baseline"]) == \
        ("adjusted eta squared", False, "rfm")
    # The planted groups are clusters: K-means separates the next window's customers better
    # than RFM scores on every origin, by more than the spread.
    assert model.chosen_ == choice["chosen"] == "kmeans" and not choice["is_baseline"]
    per_origin = {a: [o["scores"][a]["adjusted eta squared"] for o in backtest["origins"]]
                  for a in ("rfm", "kmeans", "dbscan")}
    assert per_origin == choice["origins"]
    assert all(k > r for k, r in zip(per_origin["kmeans"], per_origin["rfm"]))
    assert model.comparison_["kmeans"]["score"] == pytest.approx(np.mean(per_origin["kmeans"]))
    assert model.outcome_ == {"basis": "model", "summary": "model: kmeans (4 segments), validated "
                                                           "on 3 windows of 90 days"}
    assert all(o["customers"] == 600 and o["buyers"] > 400 for o in backtest["origins"])
    json.dumps(backtest)
    json.dumps(model.comparison_)


def test_auto_publishes_rfm_not_validated_on_too_short_history(planted):
    interactions, products, customers, _ = planted
    recent = interactions[interactions["occurred_at"] > AS_OF - pd.Timedelta(days=15)]
    model = CustomerSegmenter(algorithm="auto", horizon_days=90).fit(
        recent, products, customers, AS_OF)
    assert model.chosen_ == "rfm" and model.basis_ == "not validated"
    assert model.comparison_ == {} and model.backtest_["origins"] == []
    assert model.outcome_["summary"].startswith("not validated: rfm (")
    assert "days of history" in model.outcome_["summary"]


def test_auto_gives_the_same_choice_and_numbers_on_the_same_data_in_any_row_order(planted):
    interactions, products, customers, _ = planted
    first = CustomerSegmenter().fit(interactions, products, customers, AS_OF)
    again = CustomerSegmenter().fit(interactions, products, customers, AS_OF)
    shuffled = CustomerSegmenter().fit(interactions.sample(frac=1.0, random_state=1),
                                       products.sample(frac=1.0, random_state=2),
                                       customers.sample(frac=1.0, random_state=3), AS_OF)
    for other in (again, shuffled):
        pd.testing.assert_frame_equal(other.assignments_, first.assignments_)
        assert other.backtest_ == first.backtest_  # every per-origin score, to the last bit
        assert other.comparison_ == first.comparison_
        assert other.segments_.equals(first.segments_)


def _alike_but_for_category(n=90, seed=0):
    """Three groups buying on the same days for the same amounts: one buys products without a
    category, one Garden, one Books. Only the category mix tells them apart."""
    rng = np.random.default_rng(seed)
    products = pd.DataFrame({"product_id": np.arange(30), "sku": [f"s{i}" for i in range(30)],
                             "name": "", "category": ["", "Garden", "Books"] * 10,
                             "description": "", "tags": "", "active": True, "price": 20.0})
    group = np.repeat(np.arange(n) % 3, 10)
    interactions = pd.DataFrame({
        "customer_id": np.repeat(np.arange(1, n + 1), 10),
        "product_id": group + 3 * rng.integers(0, 10, len(group)), "type": "purchase",
        "occurred_at": AS_OF - pd.to_timedelta(np.tile(np.arange(10) * 30, n), unit="D"),
        "quantity": 1, "amount": 30.0})
    interactions["order_ref"] = "o" + interactions.index.astype(str)
    customers = pd.DataFrame({"customer_id": np.arange(1, n + 1), "external_id": "x",
                              "signup_date": np.datetime64("2024-01-01", "ns"), "owner_id": -1})
    return interactions, products, customers


def test_segment_names_and_profiles_never_use_a_filler_category():
    interactions, products, customers = _alike_but_for_category()
    model = CustomerSegmenter(algorithm="kmeans", n_clusters=3).fit(
        interactions, products, customers, AS_OF)
    segs = model.segments_
    text = " ".join(segs["name"]) + " " + " ".join(segs["profile"])
    assert "(none)" not in text and "(other)" not in text
    assert segs["name"].is_unique
    # Real categories still tell segments apart and describe them.
    assert "mostly Books" in " ".join(segs["name"]) or "mostly Garden" in " ".join(segs["name"])
    assert "mostly buy Books (100% of spend)" in text
    tops = {f.get("top_category") for f in segs["figures"]}
    assert tops <= {"Garden", "Books", "", None}


def test_predict_reproduces_fit_and_places_new_customers(planted, kmeans_fit):
    interactions, products, customers, _ = planted
    again = kmeans_fit.predict(interactions, products, customers, AS_OF)
    pd.testing.assert_frame_equal(again, kmeans_fit.assignments_)

    buyer = int(again.loc[again["name"] != PROSPECTS, "customer_id"].iloc[0])
    twin = interactions[interactions["customer_id"] == buyer].assign(customer_id=5000)
    browser = pd.DataFrame({"customer_id": [5001], "product_id": [-1], "type": ["view"],
                            "occurred_at": [AS_OF], "quantity": [1], "amount": [0.0],
                            "order_ref": ["v"]})
    new_customers = pd.DataFrame({
        "customer_id": [5000, 5001], "external_id": ["n1", "n2"],
        "signup_date": customers.loc[customers["customer_id"] == buyer, "signup_date"]
        .tolist() * 2, "owner_id": -1})

    out = kmeans_fit.predict(pd.concat([twin, browser], ignore_index=True), products,
                             new_customers, AS_OF).set_index("customer_id")

    assert out.loc[5000, "segment_key"] == again.set_index("customer_id").loc[buyer,
                                                                             "segment_key"]
    assert out.loc[5001, "name"] == PROSPECTS


@pytest.mark.parametrize("algorithm", ["dbscan", "rfm"])
def test_predict_reproduces_fit_for_dbscan_and_rfm(planted, algorithm):
    interactions, products, customers, _ = planted
    model = CustomerSegmenter(algorithm=algorithm).fit(interactions, products, customers, AS_OF)
    pd.testing.assert_frame_equal(model.predict(interactions, products, customers, AS_OF),
                                  model.assignments_)


# ---------------------------------------------------------------------- retrain names
def test_match_segments_keeps_names_under_relabelled_keys(kmeans_fit):
    prev = kmeans_fit.assignments_[["customer_id", "segment_key"]]
    prev_names = dict(zip(kmeans_fit.segments_["segment_key"], kmeans_fit.segments_["name"]))
    keys = sorted(prev["segment_key"].unique())
    relabel = dict(zip(keys, [k + 10 for k in keys[::-1]]))
    new = prev.assign(segment_key=prev["segment_key"].map(relabel))
    # A few customers move: the groups are still "the same".
    new.loc[new.index[:10], "segment_key"] = relabel[keys[0]]

    names = match_segments(new, prev, prev_names,
                           new_names={v: f"fresh {v}" for v in relabel.values()})

    assert names == {relabel[k]: prev_names[k] for k in keys}


def test_match_segments_names_a_new_group_from_its_profile():
    prev = pd.DataFrame({"customer_id": range(100), "segment_key": [0] * 50 + [1] * 50})
    new = pd.DataFrame({"customer_id": range(100),
                        "segment_key": [5] * 50 + [6] * 20 + [7] * 30})

    names = match_segments(new, prev, {0: "Champions", 1: "Lost"},
                           new_names={5: "Loyal regulars", 6: "Champions", 7: "Lost"})

    assert names[5] == "Champions"  # same members: old name kept
    assert names[7] == "Lost"  # Jaccard 30/50 = 0.6: kept
    assert names[6] == "Champions 2"  # split off (0.4): its own name, made unique


# ---------------------------------------------------------------------- benchmark
def benchmark(n_customers: int, n_rows: int, seed: int = 0) -> dict:
    """Fit (auto, then kmeans) and predict on ``n_customers`` / about ``n_rows`` rows."""
    per_customer_purchases = 0.35 * 16 + 0.35 * 1.5 + 0.2 * 10.5
    touches = max(n_rows / n_customers - per_customer_purchases, 0.0)
    t0 = time.perf_counter()
    interactions, products, customers, _ = make_frames(n_customers, seed, touches)
    t_gen = time.perf_counter() - t0
    out = {"customers": n_customers, "rows": len(interactions), "generate_s": round(t_gen, 2)}
    for algorithm in ("kmeans", "auto"):
        t0 = time.perf_counter()
        model = CustomerSegmenter(algorithm=algorithm).fit(interactions, products, customers,
                                                           AS_OF)
        out[f"fit_{algorithm}_s"] = round(time.perf_counter() - t0, 2)
        if algorithm == "auto":
            out["chosen"] = model.chosen_
            out["scores"] = {a: round(v["score"], 3) for a, v in model.comparison_.items()}
            out["origins"] = len(model.backtest_["origins"])
    t0 = time.perf_counter()
    model.predict(interactions, products, customers, AS_OF)
    out["predict_s"] = round(time.perf_counter() - t0, 2)
    return out


if __name__ == "__main__":
    import resource

    n_cust = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    n_rows = int(sys.argv[2]) if len(sys.argv) > 2 else 2_000_000
    print(benchmark(n_cust, n_rows))
    print("peak RSS GB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)


@pytest.mark.parametrize("filler", ["Other", " unknown ", "N/A", "Misc"])
def test_segment_profiles_never_use_a_catalogues_own_filler_category(filler):
    # given: a third of the customers buy products whose catalogue category is a filler name
    interactions, products, customers = _alike_but_for_category()
    products["category"] = products["category"].replace("", filler)
    # when
    segs = CustomerSegmenter(algorithm="kmeans", n_clusters=3).fit(interactions, products, customers, AS_OF).segments_
    # then: no name, profile or top category says it; the real ones still describe their buyers
    text = " ".join(segs["name"]) + " " + " ".join(segs["profile"])
    assert filler.strip() not in text
    assert {f.get("top_category") for f in segs["figures"]} <= {"Garden", "Books", "", None}
    assert "mostly buy Books (100% of spend)" in text


@pytest.mark.parametrize(("name", "filler"), [("(other)", True), ("(none)", True), ("", True), (None, True),
                                              ("  OTHERS ", True), ("Uncategorised", True), ("Books", False),
                                              ("Other books", False), ("COUPON/MISC ITEMS", False)])
def test_is_filler_category_knows_the_usual_fillers(name, filler):
    assert is_filler_category(name) is filler
