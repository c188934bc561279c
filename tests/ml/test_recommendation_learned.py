"""The learned cross-sell scorers (implicit's ALS / BPR / BM25 item-kNN, EASE): planted answers
on small frames, fixed seeds, no database."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from ml.pipelines.recommendation import Recommender
from ml.pipelines.recommendation.factors import EaseGram, ease_columns, fit_als
from ml.pipelines.recommendation.ranking import list_diversity, reserve_slots
from tests.ml.test_recommendation import AS_OF, make_interactions, make_products


def planted_blocks(n_customers=600, n_blocks=6, block_size=30, seed=0, share=0.4, noise=1):
    """Customers in ``n_blocks`` planted groups, each buying ``share`` of its group's products
    (a dense low-rank matrix: rank ``n_blocks``), plus ``noise`` random products each."""
    rng = np.random.default_rng(seed)
    n_products = n_blocks * block_size
    rows, group = [], {}
    t0 = pd.Timestamp("2023-07-01")
    for c in range(1, n_customers + 1):
        g = int(rng.integers(n_blocks))
        group[c] = g
        block = np.arange(g * block_size, (g + 1) * block_size) + 1
        picks = list(rng.choice(block, int(share * block_size), replace=False))
        picks += list(rng.choice(np.arange(1, n_products + 1), noise, replace=False))
        for p in picks:
            rows.append((c, int(p), "purchase", t0 + pd.Timedelta(days=int(rng.integers(0, 360)))))
    products = make_products(n_products, categories=[f"c{i % 5}" for i in range(n_products)])
    return make_interactions(rows), products, group, block_size


def purchase_matrix(interactions, products):
    """(customer ids, binary customer x product matrix), products in id order from 1."""
    customers = np.sort(interactions["customer_id"].unique())
    r = pd.Index(customers).get_indexer(interactions["customer_id"])
    x = sp.csr_matrix((np.ones(len(r), np.float32), (r, interactions["product_id"] - 1)),
                      shape=(len(customers), len(products)))
    x.sum_duplicates()
    x.data[:] = 1.0
    return customers, x


def in_own_block(out, group, block_size):
    cross = out[out["kind"] == "recommendation"]
    block = cross["customer_id"].map(group).to_numpy()
    return ((cross["product_id"].to_numpy() - 1) // block_size == block).mean()


@pytest.mark.parametrize("algorithm", ["als", "ease", "bpr", "bm25_knn"])
def test_learned_scorer_recovers_a_planted_low_rank_matrix(algorithm):
    interactions, products, group, size = planted_blocks(seed=1)
    rec = Recommender(algorithm=algorithm, max_per_category=None, n=5).fit(interactions, products, AS_OF)
    out = rec.recommend()
    # Each customer still lacks 60 % of their own block: the top 5 come from it.
    assert in_own_block(out, group, size) > 0.9
    cross = out[out["kind"] == "recommendation"]
    assert (cross["basis"] == "personal").mean() > 0.9


def test_als_factors_reconstruct_the_planted_blocks():
    interactions, products, group, size = planted_blocks(seed=2, noise=0)
    customers, x = purchase_matrix(interactions, products)
    model = fit_als(x, np.ones(x.nnz), random_state=0, n_threads=1)
    score = model.block(np.arange(len(customers)))
    own = (np.arange(len(products))[None, :] // size) == np.array([group[c] for c in customers])[:, None]
    # The customer's own block (bought or not) fills their best-scored products (chance: 1 in 6).
    top = np.argsort(-score, axis=1)[:, :size]
    assert np.take_along_axis(own, top, 1).mean() > 0.8


def test_ease_weights_link_products_of_the_same_block():
    interactions, products, group, size = planted_blocks(seed=3, noise=0)
    _, x = purchase_matrix(interactions, products)
    model = EaseGram(x, ease_columns(np.asarray(x.sum(axis=0)).ravel())).solve(10.0)
    b = model.dense
    assert np.allclose(np.diag(b), 0.0)
    block = np.arange(len(products)) // size
    same = block[:, None] == block[None, :]
    np.fill_diagonal(same, False)
    assert b[same].mean() > 10 * abs(b[~same & ~np.eye(len(products), dtype=bool)].mean())


def test_ease_columns_keep_the_most_bought_products_with_two_buyers():
    buyers = np.array([5, 1, 9, 2, 0, 7])
    assert ease_columns(buyers, max_products=10).tolist() == [0, 2, 3, 5]
    assert ease_columns(buyers, max_products=2).tolist() == [2, 5]


def test_customer_matching_a_planted_cluster_gets_its_products_with_reasons_naming_them():
    interactions, products, group, size = planted_blocks(seed=4)
    # A new customer bought three products of block 2 (ids 61..90): the rest of block 2 follows.
    extra = make_interactions([(9001, p, "purchase", "2024-06-01") for p in (61, 62, 63)])
    rec = Recommender(max_per_category=None, n=5).fit(pd.concat([interactions, extra], ignore_index=True),
                                                      products, AS_OF)
    out = rec.recommend([9001])
    cross = out[out["kind"] == "recommendation"]
    assert len(cross) == 5
    assert ((cross["product_id"] - 1) // size == 2).all()
    assert (cross["basis"] == "personal").all()
    for evidence, reason in zip(cross["evidence"], cross["reason"]):
        assert evidence["algorithm"] != "popularity", reason
        for pid in evidence.get("because_of_product_ids", []):
            assert pid in (61, 62, 63)


def test_cross_sell_choice_is_personal_where_tastes_are_planted_and_records_diversity():
    interactions, products, group, size = planted_blocks(seed=5)
    rec = Recommender(max_per_category=None).fit(interactions, products, AS_OF)
    choice = rec.backtest_["choice"]["cross_sell"]
    assert not choice["is_baseline"]
    assert choice["order"][-3:] == ["popularity", "popularity_recent", "segment"][: len(choice["order"][-3:])] \
        or choice["order"][-1] in ("popularity", "popularity_recent")
    scores = rec.backtest_["origins"][0]["scores"]
    assert scores["popularity"]["differs from popularity"] == 0.0
    assert scores[choice["chosen"]]["differs from popularity"] > 0.9
    rec.recommend()
    assert rec.diversity_["differs from popularity"] > 0.9
    assert rec.diversity_["coverage"] > 0.5


def test_popularity_is_published_when_nobody_has_a_taste_of_their_own():
    rng = np.random.default_rng(6)
    weights = 1.0 / np.arange(1, 61) ** 1.2
    weights /= weights.sum()
    rows = [(c, int(rng.choice(60, p=weights)) + 1, "purchase",
             pd.Timestamp("2023-07-01") + pd.Timedelta(days=int(rng.integers(0, 365))))
            for c in range(1, 801) for _ in range(rng.poisson(6) + 1)]
    rec = Recommender(max_per_category=None).fit(make_interactions(rows), make_products(60), AS_OF)
    choice = rec.backtest_["choice"]["cross_sell"]
    means = choice["mean"]
    # Popularity can only be chosen by beating the personal candidates beyond the spread.
    if choice["chosen"].startswith("popularity"):
        assert all(means[choice["chosen"]] >= means[n] for n in means if not n.startswith("popularity"))
    assert means["popularity"] >= max(v for n, v in means.items() if n.startswith(("als", "bpr"))) - 1e-9


def test_recommender_is_deterministic_with_the_learned_scorers():
    interactions, products, _, _ = planted_blocks(n_customers=300, seed=7)
    a = Recommender(random_state=3).fit(interactions, products, AS_OF)
    b = Recommender(random_state=3).fit(interactions.sample(frac=1.0, random_state=1), products, AS_OF)
    assert a.chosen_ == b.chosen_ and a.backtest_ == b.backtest_
    pd.testing.assert_frame_equal(a.recommend(), b.recommend())


def test_list_diversity_counts_lists_unlike_popularity_and_pairs_across_categories():
    category = np.array([0, 0, 1, 1, -1])
    lists = np.array([[0, 1, -1], [0, 2, 4]])
    shared = np.array([[1, 0, 3], [0, 2, 4]])
    out = list_diversity(lists, category, shared)
    assert out["differs"] == 0.5
    # First list: one pair, same category (0); second: (0, 2) differ, pairs with 4 left out.
    assert out["diversity"] == pytest.approx(0.5)


# ------------------------------------------------------------------ through the service and pages
@pytest.mark.django_db
def test_train_recommendation_stores_the_diversity_and_the_models_page_shows_it(admin_client):
    from django.urls import reverse

    from crm.models import Customer
    from ml import run_reports, selectors, services
    from tests.ml.test_recommendation_shapes import _store

    interactions, _, _, _ = planted_blocks(n_customers=240, n_blocks=4, block_size=15, seed=8)
    _store([(int(c), int(p), t.date()) for c, p, t in interactions[["customer_id", "product_id", "occurred_at"]]
            .itertuples(index=False)], products=range(1, 61))

    run = services.run_now("recommendation", as_of=AS_OF.date())

    assert run.status == "succeeded" and run.is_published, run.error
    diversity = run.metrics["diversity"]
    assert diversity["customers"] == 240 and diversity["differs from popularity"] > 0.5
    table = run_reports.run_outcome(run)["diversity"]
    assert table["published"]["coverage"].endswith("%") and table["rows"]
    html = admin_client.get(reverse("model_list")).content.decode()
    assert "Cross-sell: how personal the lists are" in html and "published lists" in html
    # The home worklist: the best cross-sell suggestions, one product and one customer each.
    top = selectors.top_suggestions(Customer.objects.all(), "recommendation", limit=5)
    assert len(top) == 5
    assert len({s.product_id for s in top}) == 5 and len({s.customer_id for s in top}) == 5


def test_als_on_a_big_base_folds_in_the_customers_left_out_of_its_sample(monkeypatch):
    import ml.pipelines.recommendation.factors as factors

    interactions, products, group, size = planted_blocks(seed=9, noise=0)
    customers, x = purchase_matrix(interactions, products)
    monkeypatch.setattr(factors, "ALS_MAX_CUSTOMERS", 200)  # 600 customers: 400 folded in
    model = factors.fit_als(x, np.ones(x.nnz), random_state=0, n_threads=1)
    score = model.block(np.arange(len(customers)))
    own = (np.arange(len(products))[None, :] // size) == np.array([group[c] for c in customers])[:, None]
    top = np.argsort(-score, axis=1)[:, :size]
    assert model.user_factors.shape == (len(customers), model.item_factors.shape[1])
    assert np.take_along_axis(own, top, 1).mean() > 0.8


# ------------------------------------------------------------------ places kept for a personal scorer
def test_reserve_slots_keeps_the_shared_head_and_fills_the_tail_with_new_personal_products():
    base = np.array([[0, 1, 2, 3], [0, 1, 2, 3], [5, -1, -1, -1]])
    personal = np.array([[9, 8, 7, 6], [3, 1, 8, 7], [-1, -1, -1, -1]])
    out = reserve_slots(base, personal, 4, 2)
    # Row 1: 3 is in the personal list but not in the kept head (0, 1), so it takes a place.
    assert out.tolist() == [[0, 1, 9, 8], [0, 1, 3, 8], [5, -1, -1, -1]]


def test_a_shared_list_with_places_for_a_personal_scorer_names_that_scorer_in_those_places():
    interactions, products, _, _ = planted_blocks(n_customers=300, seed=8)
    rec = Recommender(max_per_category=None).fit(interactions, products, AS_OF)
    rec.chosen_ = "popularity"
    shared = rec.recommend()
    shared = shared.loc[shared["kind"] == "recommendation"]
    rec.chosen_ = {"reserve": {"base": "popularity", "scorer": "ease", "slots": 3, "lift": 0.5}}
    mixed = rec.recommend()
    mixed = mixed.loc[mixed["kind"] == "recommendation"]
    key = ["customer_id", "rank"]
    head = mixed.loc[mixed["rank"] <= 7].merge(shared, on=key, suffixes=("", "_shared"))
    assert len(head) == (mixed["rank"] <= 7).sum()
    assert (head["product_id"] == head["product_id_shared"]).all()
    tail = mixed.loc[(mixed["rank"] > 7) & (mixed["basis"] == "personal")]
    assert len(tail) > 0.5 * (mixed["rank"] > 7).sum()
    assert all(ev["algorithm"] == "ease" for ev in tail["evidence"])
    # The kept places hold products the shared part of the list does not already show.
    listed = shared.loc[shared["rank"] <= 7].groupby("customer_id")["product_id"].apply(set)
    assert not any(p in listed[c] for c, p in zip(tail["customer_id"], tail["product_id"]))
    assert "ease" in rec.chosen_name_ and "3 of 10 places" in rec.chosen_name_


def test_reserved_lists_are_scored_on_the_backtest_and_kept_only_within_the_spread_of_the_best():
    rng = np.random.default_rng(6)
    weights = 1.0 / np.arange(1, 61) ** 1.2
    weights /= weights.sum()
    rows = [(c, int(rng.choice(60, p=weights)) + 1, "purchase",
             pd.Timestamp("2023-07-01") + pd.Timedelta(days=int(rng.integers(0, 365))))
            for c in range(1, 801) for _ in range(rng.poisson(6) + 1)]
    rec = Recommender(max_per_category=None).fit(make_interactions(rows), make_products(60), AS_OF)
    choice = rec.backtest_["choice"]["cross_sell"]
    assert choice["best"].startswith("popularity")  # nobody has a taste of their own
    reserved = [n for n in choice["mean"] if " places, " in n]
    assert reserved and all(len(choice["origins"][n]) == len(choice["origins"]["popularity"]) for n in reserved)
    chosen = choice["chosen"]
    if chosen in reserved:
        assert choice["mean"][choice["best"]] - choice["mean"][chosen] <= choice["spread"][chosen] + 1e-12
        assert isinstance(rec.chosen_, dict) and rec.chosen_["reserve"]["base"] == "popularity"
        assert "places" in rec.outcome_["summary"]
