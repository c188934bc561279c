"""Suggestions computed and written a chunk of customers at a time (Recommender.suggest_chunks,
ML_SUGGEST_CHUNK): every list, prospect and diversity figure is the one a single pass
over every customer gives, and the rows written to the database are the same."""
import numpy as np
import pandas as pd
import pytest

from ml.pipelines.recommendation import Recommender
from tests.ml.test_recommendation import AS_OF, make_interactions, taste_population

KEY = ["customer_id", "kind", "rank"]


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(KEY, kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def fitted():
    interactions, products = taste_population(n_customers=500, n_products=60, seed=4)
    # Three customers with one purchase (the thin lists) and repeat buyers (the reorder lists).
    extra = [(900 + c, 5, "purchase", AS_OF - pd.Timedelta(days=20)) for c in range(3)]
    extra += [(c, 7, "purchase", AS_OF - pd.Timedelta(days=d)) for c in range(1, 60) for d in (150, 120, 90, 60, 30)]
    interactions = pd.concat([interactions, make_interactions(extra)], ignore_index=True)
    return Recommender().fit(interactions, products, AS_OF)


def test_chunked_suggestions_are_the_single_pass_lists_prospects_and_diversity(fitted):
    ids = np.concatenate([fitted.history_.customer_ids, [7001, 7002]])  # two customers with no history
    whole = next(fitted.suggest_chunks(ids, None, n_prospects=20))
    prospects, diversity = fitted.prospects_, dict(fitted.diversity_)

    chunks = list(fitted.suggest_chunks(ids, 37, n_prospects=20))

    assert len(chunks) == -(-len(ids) // 37)
    assert all(set(c["customer_id"]) <= set(ids[i * 37:(i + 1) * 37]) for i, c in enumerate(chunks))
    pd.testing.assert_frame_equal(_sorted(pd.concat(chunks, ignore_index=True)), _sorted(whole))
    pd.testing.assert_frame_equal(fitted.prospects_, prospects)
    assert fitted.diversity_ == pytest.approx(diversity, rel=1e-12)  # means summed in another order
    kinds = set(whole["kind"])
    assert kinds == {"recommendation", "reorder"} and set(whole["basis"]) == {"personal", "popular"}
    assert whole.loc[whole["customer_id"].isin([7001, 7002]), "basis"].eq("popular").all()


def test_prospects_are_the_best_customers_per_product_not_yet_buyers(fitted):
    fitted.suggest_all(n_prospects=5, n_similar=0)
    prospects = fitted.prospects_
    bought = set(zip(fitted.history_.customer_ids[fitted.history_.bought.tocoo().row],
                     fitted.history_.product_ids[fitted.history_.bought.tocoo().col]))
    assert prospects.groupby("product_id")["rank"].agg(list).map(lambda r: r == list(range(1, len(r) + 1))).all()
    assert (prospects.groupby("product_id").size() <= 5).all()
    assert prospects.groupby("product_id")["score"].apply(lambda s: s.is_monotonic_decreasing).all()
    assert not any((c, p) in bought for c, p in zip(prospects["customer_id"], prospects["product_id"]))


@pytest.mark.django_db
def test_a_run_written_in_small_chunks_stores_the_rows_of_one_chunk(settings):
    from ml import services
    from tests.ml.test_recommendation_shapes import _store
    from tests.test_suggest_chunks import rows

    interactions, _ = taste_population(n_customers=150, n_products=30, seed=6)
    _store([(int(c), int(p), t.date()) for c, p, t in interactions[["customer_id", "product_id", "occurred_at"]]
            .itertuples(index=False)], products=range(1, 31))

    whole = services.run_now("recommendation", as_of=AS_OF.date())
    settings.ML_SUGGEST_CHUNK = 40  # 150 customers: four chunks
    chunked = services.run_now("recommendation", as_of=AS_OF.date())

    assert whole.status == chunked.status == "succeeded", (whole.error, chunked.error)
    assert rows(chunked) == rows(whole) and len(rows(whole)["suggestions"]) > 150 * 5
    assert chunked.metrics["counts"] == whole.metrics["counts"]
    assert chunked.metrics["diversity"] == pytest.approx(whole.metrics["diversity"], rel=1e-12)
    # The chunks of a stage add up to one timing each.
    assert {"suggesting", "writing"} <= set(chunked.timings) and not any("chunk" in k for k in chunked.timings)
