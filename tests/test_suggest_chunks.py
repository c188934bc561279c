"""Recommendation suggesting fanned out over chunks (ml.scoring): the fit happens once, each chunk
writes its customers' lists and its own top prospects, the last one ranks the prospects over all
and publishes; the rows are those of one process, and a chunk whose worker died is redone.

The task functions are called directly here (no worker is needed to test the chunks' logic)."""

import pytest
from django.core.management import call_command

from ml import scoring, services
from ml.models import Prospect, ScoringChunk, ScoringModel, SimilarProduct, Suggestion, TrainingRun
from ml.tasks import sweep_stale_runs_task
from tests.test_scoring_chunks import AS_OF, publishes, score_all_but_the_first_whose_worker_is_killed, score_queued


@pytest.fixture
def business(db, settings):
    call_command("seed_demo", customers=120, seed=5, end=AS_OF.isoformat())
    settings.ML_SUGGEST_CHUNK = 25


def rows(run: TrainingRun) -> dict:
    return {
        "suggestions": sorted(Suggestion.objects.filter(run=run).values_list(
            "customer_id", "kind", "rank", "product_id", "score", "reason", "basis", "expected_on", "control")),
        "evidence": sorted(str(e) for e in Suggestion.objects.filter(run=run).values_list("evidence", flat=True)),
        "prospects": sorted(Prospect.objects.filter(run=run).values_list(
            "product_id", "rank", "customer_id", "score", "reason", "control")),
        "similar": sorted(SimilarProduct.objects.filter(run=run).values_list(
            "product_id", "rank", "similar_id", "score", "reason")),
    }


def test_fan_out_writes_similar_products_and_leaves_the_lists_to_chunks(business, fanned_out_run):
    run = fanned_out_run("recommendation")

    chunks = list(ScoringChunk.objects.filter(run=run))
    customers = run.data_counts["customers"]
    assert run.status == "running" and not run.is_published, run.error
    assert len(chunks) == ScoringModel.objects.get(run=run).chunks == -(-customers // 25) >= 4
    assert sum(c.customers for c in chunks) == customers
    assert all(c.status == "queued" and c.dispatched_at is not None for c in chunks)
    assert not Suggestion.objects.filter(run=run).exists() and not Prospect.objects.filter(run=run).exists()
    assert SimilarProduct.objects.filter(run=run).exists()  # written by the run's worker, before the chunks
    assert services.execute_run(run.pk, fan_out=True) is None  # a redelivered run task leaves it to the chunks


def test_fanned_out_run_gives_the_rows_of_one_process_and_publishes_once(business, fanned_out_run):
    whole = services.run_now("recommendation", as_of=AS_OF)
    run = fanned_out_run("recommendation")

    score_queued(run)

    run.refresh_from_db()
    assert whole.status == run.status == "succeeded" and run.is_published, run.error
    assert publishes(run) == 1 and services.published_run("recommendation").pk == run.pk
    one, chunked = rows(whole), rows(run)
    assert len(one["suggestions"]) > run.data_counts["customers"] * 3 and len(one["prospects"]) > 100
    assert chunked == one
    assert run.metrics["counts"] == whole.metrics["counts"]
    assert run.metrics["diversity"] == pytest.approx(whole.metrics["diversity"], rel=1e-12)
    assert run.metrics["outcome"] == whole.metrics["outcome"] and run.chosen_algorithm == whole.chosen_algorithm
    assert run.metrics["scoring"]["chunks"] == ScoringChunk.objects.filter(run=run).count()
    assert run.metrics["scoring"]["chunk_size"] == 25
    assert not ScoringModel.objects.filter(run=run).exists()


def test_chunk_of_a_killed_worker_is_redone_and_the_prospects_are_ranked_once(business, fanned_out_run, settings):
    run = fanned_out_run("recommendation")
    chunks = score_all_but_the_first_whose_worker_is_killed(run, settings.ML_STALE_AFTER_SECONDS)
    assert not Suggestion.objects.filter(run=run, customer_id__lte=chunks[0].last_customer_id).exists()

    sweep_stale_runs_task()
    scoring.score_chunk(chunks[0].pk)

    run.refresh_from_db()
    assert run.status == "succeeded" and publishes(run) == 1 and run.metrics["scoring"]["redone"] == 1, run.error
    ranks = {}
    for product, rank, score in Prospect.objects.filter(run=run).values_list("product_id", "rank", "score"):
        ranks.setdefault(product, []).append((rank, score))
    for product, places in ranks.items():
        places.sort()
        assert [r for r, _ in places] == list(range(1, len(places) + 1)), product
        assert all(a[1] >= b[1] for a, b in zip(places, places[1:])), product
    assert max(len(p) for p in ranks.values()) == scoring.PROSPECTS
    assert Suggestion.objects.filter(run=run, customer_id__lte=chunks[0].last_customer_id).exists()


def test_suggesting_fans_out_only_over_more_than_one_chunk(settings):
    settings.ML_SUGGEST_CHUNK, settings.ML_SCORING_CHUNK = 100, 8000
    assert scoring.fans_out_suggestions(101) and not scoring.fans_out_suggestions(100)
    assert not scoring.fans_out_suggestions(100 * scoring.MAX_SUGGEST_CHUNKS + 1)  # ranks would not fit
    settings.ML_SCORING_CHUNK = 0
    assert not scoring.fans_out_suggestions(10**6)


def test_an_unfanned_run_leaves_its_run_row_alone_while_it_writes(business, monkeypatch):
    """Inside the one write transaction the chunks' steps are only timed: an update of the run
    row there would be unseen until the commit and hold the row's lock against the heartbeat."""
    from ml import training

    seen = []
    real = training.write_suggestions

    def spy(run_id, recs):
        seen.append(TrainingRun.objects.values_list("stage", "progress").get(pk=run_id))
        return real(run_id, recs)

    monkeypatch.setattr(training, "write_suggestions", spy)
    run = services.run_now("recommendation", as_of=AS_OF)

    customers = run.data_counts["customers"]
    assert run.status == "succeeded" and len(seen) == -(-customers // 25) >= 4
    assert set(seen) == {(f"suggesting for and writing {customers:,} customers' lists in {len(seen)} chunks", 55)}
    assert {"suggesting", "writing"} <= set(run.timings)
