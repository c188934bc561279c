"""Recommendation pipeline: planted answers on small frames, fixed seeds, no database."""

import json

import numpy as np
import pandas as pd
import pytest

from ml.pipelines.recommendation import Recommender, evaluate_holdout

AS_OF = pd.Timestamp("2024-06-30")
COLUMNS = ["customer_id", "product_id", "type", "occurred_at", "quantity", "amount", "order_ref"]


def make_products(n, inactive=(), names=None, categories=None):
    ids = np.arange(1, n + 1, dtype=np.int64)
    return pd.DataFrame({
        "product_id": ids,
        "sku": [f"SKU{i}" for i in ids],
        "name": names if names is not None else [f"product {i}" for i in ids],
        "category": categories if categories is not None else [f"cat{i % 7}" for i in ids],
        "description": ["" for _ in ids],
        "tags": ["" for _ in ids],
        "active": [i not in set(inactive) for i in ids],
        "price": np.ones(n),
    })


def make_interactions(rows):
    """rows: (customer_id, product_id, type, timestamp)."""
    frame = pd.DataFrame(rows, columns=["customer_id", "product_id", "type", "occurred_at"])
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"])
    frame["quantity"] = 1
    frame["amount"] = 1.0
    frame["order_ref"] = [f"o{i}" for i in range(len(frame))]
    return frame[COLUMNS].astype({"customer_id": np.int64, "product_id": np.int64})


def taste_population(n_customers=1500, n_products=120, n_groups=6, seed=0, start="2023-07-01", days=365):
    """Customers who buy mostly from two favourite product groups, with popular products."""
    rng = np.random.default_rng(seed)
    group = np.arange(n_products) % n_groups
    pop = 1.0 / np.arange(1, n_products + 1) ** 0.7
    rows = []
    t0 = pd.Timestamp(start)
    for c in range(1, n_customers + 1):
        fav = rng.choice(n_groups, 2, replace=False)
        weights = pop * np.where(np.isin(group, fav), 8.0, 1.0)
        weights /= weights.sum()
        for _ in range(rng.poisson(14) + 1):
            p = rng.choice(n_products, p=weights) + 1
            rows.append((c, p, "purchase", t0 + pd.Timedelta(minutes=int(rng.integers(0, days * 1440)))))
    products = make_products(n_products, categories=[f"g{g}" for g in group])
    return make_interactions(rows), products


def test_recommender_suggests_products_bought_together_for_each_other():
    rng = np.random.default_rng(1)
    rows = []
    # Products 1 and 2 are always bought together; everything else is noise.
    for c in range(1, 201):
        day = pd.Timestamp("2024-01-01") + pd.Timedelta(days=int(rng.integers(0, 150)))
        if c <= 80:
            rows += [(c, 1, "purchase", day), (c, 2, "purchase", day)]
        for p in rng.choice(np.arange(3, 41), 3, replace=False):
            rows.append((c, int(p), "purchase", day + pd.Timedelta(days=int(rng.integers(0, 20)))))
    rows += [(500, 1, "purchase", "2024-06-01"), (501, 2, "purchase", "2024-06-01")]
    interactions = make_interactions(rows)
    rec = Recommender(algorithm="item_cf", max_per_category=None).fit(interactions, make_products(40), AS_OF)

    similar = rec.similar_products(n=3)
    assert similar.loc[(similar["product_id"] == 1) & (similar["rank"] == 1), "similar_product_id"].item() == 2
    assert similar.loc[(similar["product_id"] == 2) & (similar["rank"] == 1), "similar_product_id"].item() == 1
    out = rec.recommend([500, 501])
    cross = out[out["kind"] == "recommendation"]
    assert cross.loc[(cross["customer_id"] == 500) & (cross["rank"] == 1), "product_id"].item() == 2
    assert cross.loc[(cross["customer_id"] == 501) & (cross["rank"] == 1), "product_id"].item() == 1
    top = cross[(cross["customer_id"] == 500) & (cross["rank"] == 1)].iloc[0]
    assert top["reason"].startswith("Customers who buy product 1 also buy this (80 of them)")
    assert top["evidence"]["co_buyers"] == 80
    assert top["basis"] == "personal"


def regular_buyer_rows(last_purchase):
    """Customer 1 buys product 1 every 14 days up to ``last_purchase``; others buy 2..20 once."""
    rows = []
    day = pd.Timestamp(last_purchase)
    while day >= pd.Timestamp("2023-06-01"):
        rows.append((1, 1, "purchase", day))
        day -= pd.Timedelta(days=14)
    for p in range(2, 21):
        rows.append((1, p, "purchase", pd.Timestamp("2024-02-01") + pd.Timedelta(days=p)))
    rng = np.random.default_rng(3)
    for c in range(2, 60):
        for p in rng.choice(np.arange(1, 21), 4, replace=False):
            rows.append((c, int(p), "purchase", pd.Timestamp("2023-06-01") + pd.Timedelta(days=int(rng.integers(0, 390)))))
    return make_interactions(rows)


def test_recommender_reorders_a_product_when_it_is_due_not_right_after_buying():
    products = make_products(20)
    due = Recommender(horizon_days=7, max_per_category=None).fit(regular_buyer_rows("2024-06-16"), products, AS_OF)
    reorder = due.recommend([1]).query("kind == 'reorder'")
    first = reorder[reorder["rank"] == 1].iloc[0]
    assert first["product_id"] == 1
    assert first["reason"] == "You have bought this on 28 days, about every 14 days; last bought 14 days ago"
    assert first["evidence"]["interval_days"] == 14

    just_bought = Recommender(horizon_days=7, max_per_category=None).fit(
        regular_buyer_rows("2024-06-30"), products, AS_OF)
    reorder = just_bought.recommend([1]).query("kind == 'reorder'")
    assert 1 not in set(reorder["product_id"])


def monthly_buyer_rows(days_since_last):
    """Customer 1 buys product 1 every 30 days, the last time ``days_since_last`` days before AS_OF;
    customer 2 bought product 2 once; others buy 3..20 once each."""
    rows = [(1, 1, "purchase", AS_OF - pd.Timedelta(days=days_since_last + 30 * k)) for k in range(6)]
    rows.append((2, 2, "purchase", AS_OF - pd.Timedelta(days=50)))
    rng = np.random.default_rng(4)
    for c in range(3, 60):
        for p in rng.choice(np.arange(3, 21), 3, replace=False):
            rows.append((c, int(p), "purchase", AS_OF - pd.Timedelta(days=int(rng.integers(1, 300)))))
    return make_interactions(rows)


@pytest.mark.parametrize("since, expected", [(5, 25), (28, 2), (40, -10)])
def test_recommender_reorder_expected_on_is_last_purchase_plus_own_interval(since, expected):
    rec = Recommender(max_per_category=None).fit(monthly_buyer_rows(since), make_products(20), AS_OF)
    reorder = rec.recommend([1]).query("kind == 'reorder' and product_id == 1")
    assert reorder["expected_on"].tolist() == [(AS_OF + pd.Timedelta(days=expected)).date()]


def test_recommender_reorder_with_one_gap_expects_the_products_typical_cycle():
    # Customer 1 bought product 1 twice, 10 days apart; its other buyers re-buy it every 40 days.
    rows = [(1, 1, "purchase", AS_OF - pd.Timedelta(days=15)), (1, 1, "purchase", AS_OF - pd.Timedelta(days=25))]
    for c in range(2, 12):
        rows += [(c, 1, "purchase", AS_OF - pd.Timedelta(days=20 + 40 * k)) for k in range(4)]
    for c in range(12, 40):
        rows.append((c, 2 + c % 5, "purchase", AS_OF - pd.Timedelta(days=c)))
    rec = Recommender(max_per_category=None).fit(make_interactions(rows), make_products(8), AS_OF)
    reorder = rec.recommend([1]).query("kind == 'reorder' and product_id == 1")
    assert reorder["expected_on"].tolist() == [(AS_OF + pd.Timedelta(days=40 - 15)).date()]


def test_recommender_cross_sell_rows_have_no_expected_date():
    rec = Recommender(max_per_category=None).fit(monthly_buyer_rows(5), make_products(20), AS_OF)
    out = rec.recommend([1, 2])
    assert out.loc[out["kind"] == "recommendation", "expected_on"].isna().all()
    assert len(out.loc[out["kind"] == "recommendation"]) > 0


def test_recommender_never_suggests_a_refunded_product():
    interactions, products = taste_population(n_customers=300, n_products=40, seed=2)
    # Customer 1 bought and refunded product 1 (the most popular); customer 2 refunded
    # product 1 without buying it (still never suggested); customer 3 refunded then rebought.
    extra = make_interactions([
        (1, 1, "purchase", "2024-03-01"), (1, 1, "refund", "2024-03-05"),
        (2, 1, "refund", "2024-03-05"),
        (3, 1, "purchase", "2024-03-01"), (3, 1, "refund", "2024-03-05"), (3, 1, "purchase", "2024-04-01"),
    ])
    interactions = interactions[~interactions["customer_id"].isin([1, 2, 3]) | (interactions["product_id"] != 1)]
    interactions = pd.concat([interactions, extra], ignore_index=True)
    rec = Recommender().fit(interactions, products, AS_OF)
    out = rec.recommend([1, 2, 3])
    assert not ((out["customer_id"].isin([1, 2])) & (out["product_id"] == 1)).any()
    assert ((out["customer_id"] == 3) & (out["product_id"] == 1) & (out["kind"] == "reorder")).any()
    prospects = rec.prospects(n=300)
    assert not (prospects["customer_id"].isin([1, 2]) & (prospects["product_id"] == 1)).any()


def test_recommender_never_suggests_inactive_products():
    interactions, products = taste_population(n_customers=300, n_products=40, seed=4)
    inactive = [1, 2, 3, 5, 8]
    products = products.assign(active=~products["product_id"].isin(inactive))
    rec = Recommender().fit(interactions, products, AS_OF)
    out = rec.suggest_all(n_prospects=5, n_similar=5)
    assert not out["recommendations"]["product_id"].isin(inactive).any()
    assert not out["similar_products"]["similar_product_id"].isin(inactive).any()
    assert not out["prospects"]["product_id"].isin(inactive).any()
    assert rec.recommend([99_999])["product_id"].isin(inactive).sum() == 0


def test_recommender_gives_a_new_customer_popular_products_marked_popular():
    interactions, products = taste_population(n_customers=300, n_products=40, seed=5)
    segments = pd.DataFrame({"customer_id": np.arange(1, 301, dtype=np.int64).tolist() + [9999],
                             "segment_name": ["Loyal high spenders"] * 301})
    rec = Recommender().fit(interactions, products, AS_OF, segments=segments)
    out = rec.recommend([9999, 12345])
    assert set(out["kind"]) == {"recommendation"}
    assert (out["basis"] == "popular").all()
    assert len(out[out["customer_id"] == 12345]) == rec.n
    buyers = interactions.groupby("product_id")["customer_id"].nunique()
    assert out[out["customer_id"] == 12345]["product_id"].iloc[0] in set(buyers.nlargest(5).index)
    assert out[out["customer_id"] == 9999]["reason"].str.contains(
        "Popular with Loyal high spenders|best seller|Popular right now").all()
    json.dumps(out["evidence"].tolist())


def test_recommender_content_suggests_a_product_with_matching_text():
    names = ["organic green tea", "organic green tea large", "motor oil 5w30", "car wax",
             "dog food", "cat litter", "green tea bags organic", "paper towels"]
    products = make_products(len(names), names=names, categories=["tea", "tea", "auto", "auto",
                                                                    "pets", "pets", "tea", "home"])
    rows = [(1, 1, "purchase", "2024-03-10")]
    rng = np.random.default_rng(6)
    for c in range(2, 40):
        for p in rng.choice(np.arange(3, 9), 2, replace=False):
            rows.append((c, int(p), "purchase", "2024-02-01"))
    rec = Recommender(algorithm="content", max_per_category=None).fit(make_interactions(rows), products, AS_OF)
    out = rec.recommend([1]).query("kind == 'recommendation'")
    assert set(out.head(2)["product_id"]) == {2, 7}
    assert out.iloc[0]["reason"] == "Similar to organic green tea, which you bought in March 2024"


def test_evaluate_holdout_beats_popularity_on_a_population_with_taste():
    interactions, products = taste_population(seed=7)
    result = evaluate_holdout(interactions, products, AS_OF, horizon_days=90)
    json.dumps(result)
    chosen, popularity = result["new"]["chosen"], result["new"]["popularity"]
    assert chosen["ndcg"] > popularity["ndcg"] * 1.1
    assert chosen["precision"] > popularity["precision"]
    assert result["any"]["reorder"]["customers"] > 0


def test_recommender_caps_suggestions_per_category():
    interactions, products = taste_population(n_customers=300, n_products=60, seed=8)
    rec = Recommender(max_per_category=2).fit(interactions, products, AS_OF)
    out = rec.recommend().merge(products[["product_id", "category"]], on="product_id")
    per = out.groupby(["customer_id", "kind", "category"]).size()
    assert per.max() <= 2


def test_recommender_fit_does_not_mutate_inputs_or_look_past_as_of():
    interactions, products = taste_population(n_customers=200, n_products=30, seed=9)
    before = interactions.copy()
    late = make_interactions([(1, 30, "purchase", "2024-07-15")])
    rec = Recommender().fit(pd.concat([interactions, late], ignore_index=True), products, AS_OF)
    pd.testing.assert_frame_equal(interactions, before)
    cut = Recommender().fit(interactions, products, AS_OF)
    pd.testing.assert_frame_equal(rec.recommend([1]), cut.recommend([1]))


@pytest.mark.parametrize("algorithm", ["popularity", "user_cf", "category"])
def test_recommender_single_algorithms_return_the_documented_columns(algorithm):
    interactions, products = taste_population(n_customers=200, n_products=30, seed=10)
    out = Recommender(algorithm=algorithm).fit(interactions, products, AS_OF).recommend()
    assert list(out.columns) == ["customer_id", "kind", "rank", "product_id", "score", "reason", "evidence", "basis",
                                 "expected_on"]
    assert out.groupby(["customer_id", "kind"])["rank"].max().max() <= 10
    assert (out["reason"].str.len() > 0).all()


def test_recommender_gives_thin_history_popular_products_it_has_not_bought():
    interactions, products = taste_population(n_customers=300, n_products=40, seed=11)
    top = interactions.groupby("product_id")["customer_id"].nunique().idxmax()
    interactions = pd.concat([interactions[interactions["customer_id"] != 1],
                              make_interactions([(1, int(top), "purchase", "2024-05-01")])], ignore_index=True)
    rec = Recommender(min_history=3).fit(interactions, products, AS_OF)
    out = rec.recommend([1])
    cross = out[out["kind"] == "recommendation"]
    assert len(cross) == rec.n and (cross["basis"] == "popular").all()
    assert top not in set(cross["product_id"])
    assert set(out.loc[out["kind"] == "reorder", "product_id"]) == {top}
