"""A recommendation fit scored on the window after it (a time split), for benches and tests.

The published choice is made on the rolling-origin backtest (:mod:`.backtest`); this scores one
fit as of ``as_of - horizon_days`` on the ``horizon_days`` that follow, every scorer alone and
the chosen combination, with the ranking metrics of :mod:`.ranking`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ml.pipelines.recommendation.ranking import (
    chunks,
    frame_top_n,
    ranking_metrics,
    top_n,
    truth_matrix,
    window_purchases,
)
from ml.pipelines.recommendation.recommender import Recommender
from ml.pipelines.recommendation.reorder import due_score, repeat_buy_score
from ml.pipelines.schema import as_of_day


def evaluate_holdout(interactions, products, as_of, horizon_days=90, segments=None, **params) -> dict:
    """Time split: fit as of ``as_of - horizon_days``, score on the following window.

    Cross-sell lists are scored in "new" mode (only products new to the customer count,
    previously bought ones removed from truth) and reorder lists in "any" mode. The
    catalogue is the products bought on or before the cut; customers scored are those
    with a purchase before the cut and a catalogue purchase in the window. Returns
    ``{"new": {scorer: metrics}, "any": {...}, "chosen": ..., "validation": ...}``.
    """
    as_of = as_of_day(as_of)
    cut = as_of - pd.Timedelta(days=horizon_days)
    rec = Recommender(horizon_days=horizon_days, **params).fit(interactions, products, cut, segments)
    h = rec.history_
    result = {"new": {}, "any": {}, "chosen": _jsonable(rec.chosen_), "reorder_chosen": rec.reorder_chosen_,
              "validation": _jsonable(rec.candidates_)}
    window = window_purchases(interactions, cut, as_of)
    if window is None:
        return result
    truth_any = truth_matrix(h, window)
    catalogue = h.buyers > 0
    truth_any = (truth_any @ sp.diags(catalogue.astype(np.float32))).tocsr()
    truth_any.eliminate_zeros()
    truth_new = truth_any - truth_any.multiply(h.bought)
    truth_new.eliminate_zeros()
    rows_any = np.flatnonzero(np.diff(truth_any.indptr) > 0)
    rows_new = np.flatnonzero(np.diff(truth_new.indptr) > 0)
    scorer = rec.scorer_
    n_cat = int(catalogue.sum())
    variants = {a: {a: 1.0} for a in scorer.available()}
    variants["chosen"] = rec._weights()
    for name, weights in variants.items():
        lists = []
        for chunk in chunks(rows_new, scorer.chunk_rows_):
            score = scorer.blend(chunk, weights)
            score[scorer.excluded(chunk)] = -np.inf
            lists.append(top_n(score, rec.n, h.category_code, rec.cross_cap_))
        lists = np.concatenate(lists) if lists else np.zeros((0, rec.n), np.int64)
        result["new"][name] = ranking_metrics(lists, truth_new[rows_new], rec.n, n_cat)
    frame = rec.reorder_scores()
    for name, score in (("reorder", frame["score"].to_numpy()), ("repeat_buy", repeat_buy_score(frame)),
                        ("due", due_score(frame, rec.window_days_))):
        lists = frame_top_n(frame, score, rows_any, rec.n, h.category_code, rec.reorder_cap_)
        result["any"][name] = ranking_metrics(lists, truth_any[rows_any], rec.n, n_cat)
    return result


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    return value
