"""Recommendations on data of every shape: suggestions or a reason in words, never a traceback.

Each test builds its own frames (or database rows, for the service) with a fixed seed.
"""

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from ml.pipelines.recommendation import NO_ACTIVE, NO_CATALOGUE, NotSupported, Recommender
from ml.pipelines.recommendation.reorder import NO_REBUYING
from tests.ml.test_recommendation import AS_OF, make_interactions, make_products


def shop(n_customers=300, n_products=40, days=365, visits=12, seed=0, repeat=True, groups=5):
    """Customers with two favourite groups of products; with ``repeat`` each also re-buys a
    few staples of their own on a rhythm. The history ends on AS_OF and spans ``days``."""
    rng = np.random.default_rng(seed)
    group = np.arange(n_products) % groups
    pop = 1.0 / np.arange(1, n_products + 1) ** 0.7
    start = AS_OF - pd.Timedelta(days=days - 1)
    rows = []
    for c in range(1, n_customers + 1):
        fav = rng.choice(groups, 2, replace=False)
        w = pop * np.where(np.isin(group, fav), 8.0, 1.0)
        w /= w.sum()
        for _ in range(rng.poisson(visits) + 1):
            p = int(rng.choice(n_products, p=w)) + 1
            rows.append((c, p, "purchase", start + pd.Timedelta(minutes=int(rng.integers(0, days * 1440)))))
        if repeat:
            staple = int(rng.choice(n_products, p=w)) + 1
            every = int(rng.integers(10, 40))
            for d in range(int(rng.integers(0, every)), days, every):
                rows.append((c, staple, "purchase", start + pd.Timedelta(days=d, hours=10)))
    return make_interactions(rows), make_products(n_products, categories=[f"g{g}" for g in group])


def fit(interactions, products, **params):
    return Recommender(random_state=0, **params).fit(interactions, products, AS_OF)


def lists(rec, kind, customer_ids=None):
    out = rec.recommend(customer_ids)
    return out[out["kind"] == kind]


# ------------------------------------------------------------------ shapes of the catalogue
def test_recommender_without_product_catalogue_says_so():
    rows = [(c, -1, "purchase", AS_OF - pd.Timedelta(days=d)) for c in range(1, 30) for d in (3, 40, 90)]

    with pytest.raises(NotSupported) as caught:
        fit(make_interactions(rows), make_products(0))

    assert str(caught.value) == NO_CATALOGUE == (
        "no product catalogue: purchases carry no product, so there are no recommendations")


def test_recommender_with_one_product_suggests_it_to_newcomers_and_for_reorder_to_its_buyers():
    rng = np.random.default_rng(1)
    rows = [(c, 1, "purchase", AS_OF - pd.Timedelta(days=int(d)))
            for c in range(1, 41) for d in rng.choice(300, 1 + (c % 2) * 3, replace=False)]
    rec = fit(make_interactions(rows), make_products(1))

    out = rec.recommend([2, 3, 999])

    assert lists(rec, "recommendation", [2, 3]).empty  # they bought the only product already
    assert set(out.loc[out["customer_id"] == 999, "product_id"]) == {1}
    # Customer 3 bought it on 4 days; 2 bought it once, but its other buyers re-buy it.
    reorder = out[out["kind"] == "reorder"]
    assert set(zip(reorder["customer_id"], reorder["product_id"])) == {(2, 1), (3, 1)}
    assert reorder.loc[reorder["customer_id"] == 2, "reason"].item().startswith("You bought this")
    assert rec.outcome_["summary"]


def test_recommender_with_one_category_fills_whole_lists():
    interactions, products = shop(n_products=40, seed=2)
    products = products.assign(category="everything")
    rec = fit(interactions, products)

    cross = lists(rec, "recommendation")

    assert rec.cross_cap_ is None  # a cap of 3 per category would cut every list to 3
    assert cross.groupby("customer_id").size().max() == rec.n
    assert (cross.groupby("customer_id").size() == rec.n).mean() > 0.9


def test_recommender_with_every_product_inactive_suggests_nothing_and_says_why():
    interactions, products = shop(n_customers=100, seed=3)
    rec = fit(interactions, products.assign(active=False))  # every product withdrawn

    out = rec.suggest_all(n_prospects=5, n_similar=5)

    assert out["recommendations"].empty and out["prospects"].empty and out["similar_products"].empty
    assert rec.reasons_ == {"cross_sell": NO_ACTIVE, "reorder": NO_ACTIVE}
    assert NO_ACTIVE in rec.outcome_["summary"]


# ------------------------------------------------------------------ shapes of the customers
def test_recommender_with_twenty_customers_gives_everyone_suggestions():
    interactions, products = shop(n_customers=20, n_products=15, seed=4)
    rec = fit(interactions, products)

    cross = lists(rec, "recommendation")

    assert set(cross["customer_id"]) == set(range(1, 21))
    assert rec.outcome_["basis"] in ("model", "baseline", "not validated")
    assert (cross["reason"].str.len() > 0).all()


def test_recommender_with_one_time_buyers_suggests_no_reorder_and_says_why():
    rng = np.random.default_rng(5)
    rows = [(c, int(rng.integers(1, 31)), "purchase", AS_OF - pd.Timedelta(days=int(rng.integers(0, 300))))
            for c in range(1, 301)]
    rec = fit(make_interactions(rows), make_products(30))

    assert lists(rec, "reorder").empty
    assert rec.reasons_["reorder"] == NO_REBUYING
    assert "nobody has bought the same product on two different days" in rec.outcome_["summary"]
    assert lists(rec, "recommendation").groupby("customer_id").size().min() == rec.n


def test_recommender_on_ratings_like_data_never_suggests_a_reorder():
    # Each customer has each of their items once (ratings, not purchases), with real taste.
    interactions, products = shop(n_customers=400, n_products=60, repeat=False, seed=6)
    interactions = interactions.drop_duplicates(["customer_id", "product_id"])
    rec = fit(interactions, products)

    out = rec.recommend()

    assert not (out["kind"] == "reorder").any()
    assert rec.reasons_["reorder"] == NO_REBUYING
    assert rec.backtest_["validated"] and "reorder" not in rec.backtest_["choice"]
    assert (out["kind"] == "recommendation").any()


# ------------------------------------------------------------------ shapes of the history
def test_recommender_with_history_shorter_than_the_horizon_validates_on_shorter_windows():
    interactions, products = shop(days=60, visits=8, seed=7)
    rec = fit(interactions, products, horizon_days=90)

    backtest = rec.backtest_

    assert backtest["validated"] and backtest["window_days"] == 20 and len(backtest["origins"]) == 3
    assert "under three horizons" in backtest["reason"]
    assert rec.outcome_["basis"] in ("model", "baseline")
    assert not lists(rec, "recommendation").empty and not lists(rec, "reorder").empty


def test_recommender_with_history_between_one_and_two_horizons_validates_on_three_windows():
    interactions, products = shop(days=150, seed=8)
    rec = fit(interactions, products, horizon_days=90)

    assert rec.backtest_["window_days"] == 50 and len(rec.backtest_["origins"]) == 3
    assert {o["cut"] for o in rec.backtest_["origins"]} == {"2024-05-11", "2024-04-16", "2024-03-22"}
    assert set(rec.backtest_["choice"]) == {"cross_sell", "reorder"}


def test_recommender_with_two_weeks_of_history_uses_the_baselines_and_says_it_is_not_validated():
    interactions, products = shop(days=14, visits=3, seed=9)
    rec = fit(interactions, products, horizon_days=90)

    assert not rec.backtest_["validated"] and rec.backtest_["origins"] == []
    assert rec.chosen_ == "popularity" and rec.reorder_chosen_ == "repeat_buy"
    assert rec.outcome_["basis"] == "not validated"
    assert "not yet validated: 14 days of history" in rec.outcome_["summary"]
    assert not lists(rec, "recommendation").empty


# ------------------------------------------------------------------ refunds
@pytest.mark.parametrize("with_refunds", [False, True])
def test_recommender_with_or_without_refunds_never_suggests_a_refunded_product(with_refunds):
    interactions, products = shop(n_customers=200, seed=10)
    staple = interactions[interactions["customer_id"] == 1].groupby("product_id").size().idxmax()
    if with_refunds:
        refund = make_interactions([(1, int(staple), "refund", AS_OF + pd.Timedelta(hours=23))])
        interactions = pd.concat([interactions, refund], ignore_index=True)
    rec = fit(interactions, products)

    mine = rec.recommend([1])

    assert (staple in set(mine["product_id"])) is not with_refunds


# ------------------------------------------------------------------ reorder evidence
def test_reorder_lists_only_products_that_someone_bought_on_two_days():
    rng = np.random.default_rng(11)
    rows = []
    for c in range(1, 121):  # background: each product once per customer, never twice
        for p in rng.choice(np.arange(10, 40), 5, replace=False):
            rows.append((c, int(p), "purchase", AS_OF - pd.Timedelta(days=int(rng.integers(0, 300)))))
    rows += [(1, 1, "purchase", AS_OF - pd.Timedelta(days=d)) for d in (5, 40, 80)]  # 1 re-buys product 1
    rows += [(2, 2, "purchase", AS_OF - pd.Timedelta(days=30)),  # 2 bought product 2 once ...
             (3, 2, "purchase", AS_OF - pd.Timedelta(days=100)),  # ... and 3 bought it on two days
             (3, 2, "purchase", AS_OF - pd.Timedelta(days=60))]
    products = make_products(40, categories=[f"c{i}" for i in range(1, 41)])  # one category each
    rec = fit(make_interactions(rows), products)

    reorder = lists(rec, "reorder")

    assert set(zip(reorder["customer_id"], reorder["product_id"])) == {(1, 1), (2, 2), (3, 2)}
    two = reorder[reorder["customer_id"] == 2].iloc[0]
    assert two["reason"].startswith("You bought this 30 days ago; 1 of its 2 buyers bought it again")
    assert two["evidence"]["repeat_buyers"] == 1 and two["evidence"]["buyers"] == 2
    one = reorder[reorder["customer_id"] == 1].iloc[0]
    assert one["reason"].startswith("You have bought this on 3 days")


def test_reorder_takes_the_category_as_evidence_for_a_product_too_thin_to_tell():
    day = AS_OF - pd.Timedelta(days=20)
    rows = [(c, 3, "purchase", day - pd.Timedelta(days=d)) for c in range(10, 30) for d in (0, 30)]  # staples re-bought
    rows += [(4, 4, "purchase", day)]  # product 4: one buyer, once; a staple
    rows += [(c, 5, "purchase", day) for c in range(30, 90)]  # product 5: 60 buyers, none came back
    rows += [(c, p, "purchase", day) for c in range(30, 90) for p in (6, 7)]  # "misc": never re-bought
    products = make_products(7, categories=["staples"] * 5 + ["misc"] * 2)
    rec = fit(make_interactions(rows), products)

    reorder = lists(rec, "reorder")

    pairs = set(zip(reorder["customer_id"], reorder["product_id"]))
    assert (4, 4) in pairs  # too few buyers to tell: its category re-buys
    assert not reorder["product_id"].isin([5, 6, 7]).any()  # 60 buyers and none back; misc never re-bought
    four = reorder[reorder["customer_id"] == 4].iloc[0]
    assert four["reason"].startswith("You bought this 20 days ago; in staples, customers buy the same product again")
    assert four["evidence"]["evidence"] == "category" and four["evidence"]["category_repeat_pairs"] == 20


# ------------------------------------------------------------------ the choice
def test_recommender_stores_the_backtest_layout_with_baselines_among_the_candidates():
    interactions, products = shop(seed=12)
    rec = fit(interactions, products)

    backtest = rec.backtest_
    cross, reorder = backtest["choice"]["cross_sell"], backtest["choice"]["reorder"]

    assert backtest["validated"] and len(backtest["origins"]) == 3 and backtest["window_days"] == 90
    assert cross["baseline"] == "popularity" and "popularity" in cross["mean"]
    assert reorder["baseline"] == "repeat_buy" and "repeat_buy" in reorder["mean"]
    assert cross["lower_is_better"] is False and cross["metric"] == "NDCG@10 on products new to the customer"
    for choice in (cross, reorder):
        assert choice["chosen"] in choice["mean"]
        assert choice["is_baseline"] == (choice["chosen"].split(",")[0] == choice["baseline"])
        assert all(len(v) == 3 for v in choice["origins"].values())
    for origin in backtest["origins"]:
        assert origin["customers"] > 0 and "popularity" in origin["scores"] and "repeat_buy" in origin["scores"]
    if cross["chosen"].startswith("blend"):
        assert all(b > s for b, s in zip(cross["origins"][cross["chosen"]], cross["origins"][cross["best"]]))


def test_recommender_prefers_a_personal_scorer_where_taste_is_strong_and_it_holds_on_later_data():
    # Train up to a cut, then check on the 90 days after it that the published lists beat
    # popularity on products new to the customer (held-back data the choice never saw).
    interactions, products = shop(n_customers=800, n_products=80, visits=16, seed=13, groups=8)
    cut = AS_OF - pd.Timedelta(days=90)
    train = interactions[interactions["occurred_at"] < cut + pd.Timedelta(days=1)]
    later = interactions[interactions["occurred_at"] > cut + pd.Timedelta(days=1)]
    rec = Recommender(random_state=0).fit(train, products, cut)
    popular = Recommender(algorithm="popularity", max_per_category=None, random_state=0).fit(train, products, cut)
    seen = set(zip(train["customer_id"], train["product_id"]))
    truth = later[[(c, p) not in seen for c, p in zip(later["customer_id"], later["product_id"])]]
    truth = truth.groupby("customer_id")["product_id"].agg(set)

    def ndcg(model):
        out = lists(model, "recommendation", truth.index.to_numpy())
        got = out.sort_values(["customer_id", "rank"]).groupby("customer_id")["product_id"].agg(list)
        disc = 1 / np.log2(np.arange(2, 12))
        return np.mean([sum(disc[i] for i, p in enumerate(got.get(c, [])[:10]) if p in items)
                        / disc[:min(len(items), 10)].sum() for c, items in truth.items()])

    assert rec.backtest_["choice"]["cross_sell"]["is_baseline"] is False
    assert ndcg(rec) > 1.1 * ndcg(popular)


def test_recommender_makes_the_same_choice_on_shuffled_rows():
    interactions, products = shop(seed=14)
    shuffled = interactions.sample(frac=1.0, random_state=3).reset_index(drop=True)
    a = fit(interactions, products)
    b = fit(shuffled, products.sample(frac=1.0, random_state=4).reset_index(drop=True))

    assert a.backtest_ == b.backtest_ and a.outcome_ == b.outcome_
    key = ["customer_id", "kind", "rank"]
    pd.testing.assert_frame_equal(a.recommend().sort_values(key).reset_index(drop=True)[key + ["product_id"]],
                                  b.recommend().sort_values(key).reset_index(drop=True)[key + ["product_id"]])


# ------------------------------------------------------------------ through the service
def _store(rows, products=None):
    """Customers, products and purchases in the database; rows: (customer, product or None, day)."""
    from crm.models import Customer, Interaction, Product

    customers = {c: Customer.objects.create(external_id=f"c{c}") for c in sorted({r[0] for r in rows})}
    stored = {p: Product.objects.create(sku=f"SKU{p}", name=f"product {p}", category=f"cat{p % 3}")
              for p in (products or [])}
    Interaction.objects.bulk_create([
        Interaction(external_id=f"i{i}", customer=customers[c], type="purchase",
                    product=stored.get(p), amount=1, occurred_at=datetime.combine(day, datetime.min.time(), UTC)
                    .replace(hour=12))
        for i, (c, p, day) in enumerate(rows)])


@pytest.mark.django_db
def test_train_recommendation_without_products_is_skipped_with_the_reason():
    from ml import services

    _store([(c, None, (AS_OF - pd.Timedelta(days=d)).date()) for c in range(1, 20) for d in (2, 30, 61)])

    run = services.run_now("recommendation", as_of=AS_OF.date())

    assert run.status == "skipped" and not run.is_published
    assert run.error == "no product catalogue: purchases carry no product, so there are no recommendations"


@pytest.mark.django_db
def test_train_recommendation_writes_the_outcome_and_backtest_and_no_reorder_on_ratings_like_data():
    from ml import services
    from ml.models import Suggestion

    rng = np.random.default_rng(15)
    rows = [(c, int(p), (AS_OF - pd.Timedelta(days=int(rng.integers(0, 300)))).date())
            for c in range(1, 81) for p in rng.choice(np.arange(1, 25), 6, replace=False)]
    _store(rows, products=range(1, 25))

    run = services.run_now("recommendation", as_of=AS_OF.date())

    assert run.status == "succeeded" and run.is_published, run.error
    metrics = run.metrics
    assert metrics["outcome"]["basis"] in ("model", "baseline") and metrics["outcome"]["summary"]
    assert metrics["backtest"]["validated"] and set(metrics["backtest"]["choice"]) == {"cross_sell"}
    assert metrics["reorder_reason"] == NO_REBUYING
    assert not Suggestion.objects.filter(run=run, kind="reorder").exists()
    assert Suggestion.objects.filter(run=run, kind="recommendation").count() == 80 * 10
