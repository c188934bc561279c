"""Product recommendations: cross-sell ("recommendations") and replenishment ("reorder").

Inputs are the frames of :mod:`ml.pipelines.schema`: ``interactions`` (customer_id,
product_id, type, occurred_at; only ``purchase`` and ``refund`` rows with a product are
used, and only those on or before ``as_of``, a date, inclusive) and ``products``
(product_id, sku, name, category, description, tags, active). ``segments`` is optional:
customer_id, segment_name. Purchases that carry no product of the catalogue cannot be
recommended from: :meth:`Recommender.fit` raises :class:`NotSupported` with the reason.

Cross-sell scorers, each giving a customer x product score computed in customer chunks
(nothing dense of size customers x products ever exists):

- ``popularity``: distinct buyers, all time; ``popularity_recent``: in the last 30 days;
  ``segment``: distinct buyers within the customer's segment;
- ``item_cf``: item-item cosine on the IDF-weighted purchase matrix (top-k neighbours, found
  by implicit's compiled all-pairs kNN);
- ``user_cf``: cosine k-nearest customers (IDF-weighted rows);
- ``content``: TF-IDF over name, category, description and tags; the customer's profile is
  the sum of the products they bought, scored through each product's nearest text
  neighbours;
- ``category``: the customer's share of products bought in the product's category;
- ``ease``, ``bm25_knn``, ``als``, ``bpr``: EASE and implicit's BM25 item-kNN, ALS and BPR
  (:mod:`ml.pipelines.recommend_factors`: settings, the EASE cut, determinism).

Every personal scorer breaks its ties by popularity (a thousandth of its scale), so the
products it has no signal for come in best-seller order rather than in column order.

``algorithm="auto"`` chooses on rolling backtest origins (:mod:`ml.pipelines.backtest`,
:mod:`ml.pipelines.recommend_backtest`): each scorer with and without the per-category
cap, the personal scorers first and the popularity lists last (popularity, the baseline, is
published only when it beats every personal candidate beyond the spread between windows),
and a blend of the scorers kept only when it beats the best single one on every origin.
On a base of more than ``max_backtest_customers`` buyers the origins learn from a hashed
sample of them. Replenishment (:mod:`ml.pipelines.recommend_reorder`) is chosen the same way,
repeat-buy being its baseline, and only ever lists products with evidence of re-buying. With
too little history for a backtest window (see ``plan_backtest``) the baselines are used:
popularity and repeat-buy, uncapped (nothing could show a personal list is better).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from ml.pipelines.backtest import plan_backtest
from ml.pipelines.recommend_backtest import (
    CROSS_BASELINE,
    backtest_record,
    choose_cross_sell,
    choose_reorder,
    collect_origin,
    fit_final_reorder,
    mean_scores,
    tune_ease,
    variant_name,
)
from ml.pipelines.recommend_factors import (
    BPR_MAX_PAIRS,
    EASE_LAMBDAS,
    FACTOR_SCORERS,
    LEARNED_SCORERS,
    EaseGram,
    ease_columns,
    fit_als,
    fit_bm25_knn,
    fit_bpr,
)
from ml.pipelines.recommend_history import (
    History,
    as_of_day,
    build_history,
    catalogue_purchases,
    lookup,
    text_similarity,
    top_k_per_row,
)
from ml.pipelines.recommend_ranking import (
    chunks,
    frame_top_n,
    list_diversity,
    rank_frame,
    ranking_metrics,
    stable_unit,
    top_n,
    top_shared,
    truth_matrix,
    window_purchases,
)
from ml.pipelines.recommend_reorder import (
    LEARNED,
    NO_REBUYING,
    REORDER_BASELINE,
    due_score,
    has_evidence,
    not_due,
    reorder_frame,
    reorder_reason,
    repeat_buy_score,
    score_reorder,
)

POPULAR = ("popularity", "popularity_recent", "segment")
PERSONAL = ("item_cf", "user_cf", "content", "category", "ease", "bm25_knn", "als", "bpr")
ALGORITHMS = POPULAR + PERSONAL
# The order of the one-standard-error choice: the personal scorers first, simplest first (a
# rule on the customer's own categories, text, the neighbour methods, the closed-form EASE,
# then the factor models), and the lists every customer shares last. A cross-sell list is
# meant to be personal: popularity is published only when it beats every personal candidate
# by more than the spread between windows, never because it is the default.
CROSS_ORDER = ("category", "content", "item_cf", "ease", "bm25_knn", "user_cf", "als", "bpr",
               "popularity", "popularity_recent", "segment")
# Salt of the customer hash that picks the backtest sample (the origins' own picks use 1 and 2).
SAMPLE_SALT = 3
# Weight of popularity inside every personal scorer, as a tie-break (see ``_Scorer.features``);
# the personal scores are scaled to a maximum of 1 per customer.
TIE_BREAK = 1e-3
# The per-category cap tried against no cap: 3 of 10 from one category still lets a strong
# category lead the list while leaving room for others.
CATEGORY_CAP = 3

NO_CATALOGUE = "no product catalogue: purchases carry no product, so there are no recommendations"
NO_ACTIVE = "no active product: every product of the catalogue is inactive, so nothing is suggested"

# Dense per-chunk score blocks are chunk x products float32; ~4M cells (16 MB) per block
# keeps a handful of blocks well under 200 MB whatever the catalogue size.
CHUNK_CELLS = 4_000_000


class NotSupported(Exception):
    """The data cannot support recommendations at all; the message says why in words."""


class Recommender:
    """Cross-sell and replenishment suggestions with reasons, as of a date.

    Parameters
    ----------
    algorithm : "auto" (chosen on backtest origins) or one of ALGORITHMS.
    n : suggestions per customer and kind.
    horizon_days : the window the suggestions are for; backtest windows are as long, or a
        third of the history when that is shorter (``plan_backtest``).
    max_per_category : "auto" (no cap or CATEGORY_CAP, chosen on the backtest), or a fixed
        cap (an int, or None for no cap).
    random_state : seeds the customer picks and halves, the neighbour pool and the models.
    min_history : customers with fewer distinct products bought get popularity ("popular").
    user_neighbours, item_neighbours, text_neighbours : k of the nearest-neighbour scorers.
    user_pool_cells : cap on customers x neighbour-pool similarity cells per fit; above it
        user_cf looks for neighbours in a seeded sample of customers (speed on big bases).
    max_validation_customers : customers per backtest target: half are scored on each origin,
        half teach the blend (shared out between the origins); picked by a hash of the id.
    recent_days : the "recent" popularity window.
    max_backtest_customers : above this many buyers, the backtest origins learn from the rows of
        a hashed sample of this many (see ``_backtest_sample``): 10,000 customers hold enough
        purchases to rank the candidates, and the factor models' and neighbour searches' cost on
        the origins then stops growing with the base.
    n_threads : BLAS / OpenMP threads while fitting and suggesting (None: the libraries'
        default). One by default: the reorder classifiers fit on a few thousand pairs, where
        threads that spin-wait on a shared 2-core box cost far more than they give (a fit
        of 300 customers took 6.7 s with the default threads and 0.7 s with one, measured).
    """

    def __init__(self, algorithm="auto", n=10, horizon_days=90, max_per_category="auto",
                 random_state=0, min_history=1, user_neighbours=50, item_neighbours=100,
                 text_neighbours=50, user_pool_cells=100_000_000, max_validation_customers=4_000,
                 recent_days=30, n_threads=1, max_backtest_customers=10_000):
        self.algorithm = algorithm
        self.n = n
        self.horizon_days = horizon_days
        self.max_per_category = max_per_category
        self.random_state = random_state
        self.min_history = min_history
        self.user_neighbours = user_neighbours
        self.item_neighbours = item_neighbours
        self.text_neighbours = text_neighbours
        self.user_pool_cells = user_pool_cells
        self.max_validation_customers = max_validation_customers
        self.recent_days = recent_days
        self.n_threads = n_threads
        self.max_backtest_customers = max_backtest_customers

    # ------------------------------------------------------------------ fit
    def fit(self, interactions, products, as_of, segments=None) -> Recommender:
        """Learn from rows on or before ``as_of`` (see the module docstring for columns).

        Sets ``history_`` (sparse state as of as_of), ``plan_`` (the backtest windows),
        ``backtest_`` (JSON: the windows, every candidate's scores on each, the choices),
        ``outcome_`` ({"basis", "summary"}), ``reasons_`` (target -> why it has no
        suggestions, or None), ``candidates_`` (candidate -> metrics averaged over the
        windows), ``chosen_`` (an algorithm name or {"blend": weights}), ``cross_cap_``,
        ``reorder_chosen_``, ``reorder_cap_``, ``reorder_model_`` and ``window_days_``.
        Raises NotSupported when no purchase on or before as_of carries a catalogue product.
        """
        with threadpool_limits(limits=self.n_threads):
            return self._fit(interactions, products, as_of, segments)

    def _fit(self, interactions, products, as_of, segments) -> Recommender:
        if self.algorithm != "auto" and self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be 'auto' or one of {ALGORITHMS}")
        as_of = as_of_day(as_of)
        self.as_of_ = as_of
        buys = catalogue_purchases(interactions, products, as_of)
        if buys.empty:
            raise NotSupported(NO_CATALOGUE)
        self.plan_ = plan = plan_backtest(buys["occurred_at"].min(), as_of, self.horizon_days)
        self.window_days_ = window = plan.window_days or self.horizon_days
        self._text_cache = None
        # BPR's cost grows with the purchase pairs; decided once, on the pairs as of as_of, so
        # that every origin and the final fit have the same candidates.
        pairs = len(buys[["customer_id", "product_id"]].drop_duplicates())
        self.with_bpr_ = pairs <= BPR_MAX_PAIRS
        self.ease_ = None
        self.ease_penalty_ = EASE_LAMBDAS[-1]
        origins = []
        # Half of the customer budget is scored on each origin; the other half teaches the
        # blend, shared out between the origins.
        max_scored = max(1, self.max_validation_customers // 2)
        max_learning = max(1, max_scored // max(len(plan.cuts), 1))
        sample = self._backtest_sample(interactions, buys)
        for k, cut in enumerate(plan.cuts):
            history = self._history(sample, products, cut, segments, cobuyers=False)
            scorer = _Scorer(history, self._scorer_params())
            last = cut + pd.Timedelta(days=window)
            purchases = window_purchases(sample, cut, last)
            if k == 0 and self.algorithm in ("auto", "ease"):  # EASE's lambda, on the latest origin's learning half
                self.ease_ = tune_ease(scorer, history, purchases, n=self.n, max_rows=max_scored,
                                       random_state=self.random_state)
                if self.ease_ is not None:
                    self.ease_penalty_ = self.ease_["lambda"]
            scorer.set_ease_penalty(self.ease_penalty_)
            origins.append(collect_origin(
                cut, history, scorer, purchases, scorer.available(),
                window_days=window, max_scored=max_scored, max_learning=max_learning,
                random_state=self.random_state))
            del history, scorer
        self.history_ = self._history(interactions, products, as_of, segments)
        self.scorer_ = _Scorer(self.history_, self._scorer_params())
        self._choose(origins, list(self.scorer_.available()))
        self._text_cache = None
        return self

    def _backtest_sample(self, interactions, buys) -> pd.DataFrame:
        """The rows the backtest origins learn from: every customer's, or on a base of more
        than ``max_backtest_customers`` buyers the rows of that many of them, picked by a hash
        of the id (the same customers whatever the row order). Every candidate is fitted and
        scored on the same sample, so they are compared alike; the final fit uses everyone."""
        ids = np.unique(buys["customer_id"].to_numpy(np.int64))
        if len(ids) <= self.max_backtest_customers:
            return interactions
        unit = stable_unit(ids, self.random_state * 16 + SAMPLE_SALT)
        keep = ids[np.argsort(unit, kind="stable")[:self.max_backtest_customers]]
        return interactions.loc[interactions["customer_id"].isin(keep)]

    def _caps(self) -> tuple:
        if self.max_per_category == "auto":
            return (None, CATEGORY_CAP)
        return (self.max_per_category,)

    def _choose(self, origins, names) -> None:
        """Set the chosen scorers, caps, reasons and records from the origins' scores."""
        caps = self._caps()
        forced = None if self.algorithm == "auto" else self.algorithm
        cross = choose_cross_sell(origins, names, caps, n=self.n, forced=forced)
        reorder = choose_reorder(origins, caps, n=self.n, window_days=self.window_days_,
                                 random_state=self.random_state)
        self.cross_cap_, self.reorder_cap_ = cross["cap"], reorder["cap"]
        self.chosen_ = {"blend": cross["weights"]} if cross["weights"] else cross["algorithm"]
        if isinstance(self.chosen_, str) and self.chosen_ not in self.scorer_.available():
            self.chosen_ = CROSS_BASELINE  # e.g. "content" asked for a catalogue without text
        self.reorder_chosen_ = reorder["algorithm"]
        self.reorder_model_ = fit_final_reorder(origins, self.reorder_chosen_, self.random_state)
        if self.reorder_model_ is None and self.reorder_chosen_ in LEARNED:  # no labelled pair to refit on
            self.reorder_chosen_ = REORDER_BASELINE
        self.candidates_ = mean_scores(origins)
        self.backtest_ = backtest_record(self.plan_, origins, {"cross_sell": cross["record"],
                                                               "reorder": reorder["record"]})
        self.reasons_ = self._reasons()
        self.outcome_ = self._outcome(cross, reorder)

    def _reasons(self) -> dict:
        """Why a target has no suggestions at all, in words (None when it has some)."""
        h = self.history_
        reasons = {"cross_sell": None, "reorder": None}
        if not h.active.any():
            return {"cross_sell": NO_ACTIVE, "reorder": NO_ACTIVE}
        if not (h.pair_days >= 2).any():
            reasons["reorder"] = NO_REBUYING
        return reasons

    def _outcome(self, cross: dict, reorder: dict) -> dict:
        """{"basis": "model" | "baseline" | "not validated", "summary": one line in words},
        e.g. "model: cross-sell: popularity (baseline), reorder: reorder_lr; validated on 2
        windows of 90 days"."""
        cross_algorithm = "blend" if cross["weights"] else self._cross_name()
        targets = (("cross-sell", "cross_sell", cross, cross_algorithm, self.cross_cap_, CROSS_BASELINE),
                   ("reorder", "reorder", reorder, self.reorder_chosen_, self.reorder_cap_, REORDER_BASELINE))
        parts, learned, validated = [], False, False
        for label, key, choice, algorithm, cap, baseline in targets:
            name = variant_name(algorithm, cap)
            if choice["record"] is not None:
                validated = True
                learned |= algorithm != baseline
            if self.reasons_.get(key):
                parts.append(f"{label}: none ({self.reasons_[key]})")
            elif choice["record"] is None:
                why = " (not validated: no customer to score on every window)" if self.plan_.validated else ""
                parts.append(f"{label}: {name}{why}")
            else:
                parts.append(f"{label}: {name}" + (" (baseline)" if algorithm == baseline else ""))
        basis = "model" if learned else "baseline" if validated else "not validated"
        tail = self.plan_.reason if self.plan_.validated else f"{self.plan_.reason}: the baselines are used"
        return {"basis": basis, "summary": f"{basis}: " + ", ".join(parts) + f"; {tail}"}

    def _cross_name(self) -> str:
        return self.chosen_ if isinstance(self.chosen_, str) else "blend"

    def _history(self, interactions, products, as_of, segments, cobuyers=True) -> History:
        # The text neighbours depend on the catalogue only: computed once per fit.
        if getattr(self, "_text_cache", None) is None or self._text_cache[0] is not products:
            self._text_cache = (products, text_similarity(products.sort_values("product_id", kind="stable"),
                                                          self.text_neighbours))
        return build_history(interactions, products, as_of, segments, self.recent_days,
                             self.item_neighbours, text_sim=self._text_cache[1], cobuyers=cobuyers)

    def _scorer_params(self) -> dict:
        return {"user_neighbours": self.user_neighbours, "user_pool_cells": self.user_pool_cells,
                "random_state": self.random_state, "n_threads": self.n_threads,
                "ease_penalty": getattr(self, "ease_penalty_", EASE_LAMBDAS[-1]),
                "with_bpr": getattr(self, "with_bpr_", True)}

    # ------------------------------------------------------------ suggest
    def recommend(self, customer_ids=None) -> pd.DataFrame:
        """Both kinds for the given customers (default: every customer with a purchase).

        Columns: customer_id, kind ("recommendation" | "reorder"), rank (1..n),
        product_id, score, reason, evidence (JSON-able dict), basis ("personal" |
        "popular"). Customers without history get popular products, basis "popular".
        """
        return self.suggest_all(customer_ids, n_prospects=0)["recommendations"]

    def suggest_all(self, customer_ids=None, n_prospects=20, n_similar=10) -> dict:
        """recommendations (as ``recommend``), prospects and similar products in one pass."""
        with threadpool_limits(limits=self.n_threads):
            return self._suggest_all(customer_ids, n_prospects, n_similar)

    def _suggest_all(self, customer_ids, n_prospects, n_similar) -> dict:
        h = self.history_
        if customer_ids is None:
            customer_ids = h.customer_ids
        customer_ids = np.asarray(customer_ids, dtype=np.int64)
        rows = pd.Index(h.customer_ids).get_indexer(customer_ids)
        known = rows >= 0
        personal = known & (np.diff(h.bought.indptr)[np.maximum(rows, 0)] >= self.min_history)
        thin = known & ~personal
        # Reorder first: its transient pair frame then does not sit on top of the
        # cross-sell output (peak memory).
        reorder = self._reorder(customer_ids[known], rows[known])
        cross = self._cross_sell(customer_ids[personal], rows[personal], n_prospects)
        self.diversity_ = cross["diversity"]
        parts = [cross["recommendations"], self._cold(customer_ids[~known]), reorder]
        if thin.any():  # a little history: popular products, minus what they bought
            popular = {a: 1.0 for a in POPULAR if a in self.scorer_.available()}
            parts.append(self._cross_sell(customer_ids[thin], rows[thin], 0, weights=popular)["recommendations"])
        frame = pd.concat(parts, ignore_index=True)
        frame = frame[["customer_id", "kind", "rank", "product_id", "score", "reason", "evidence", "basis"]]
        out = {"recommendations": frame}
        if n_prospects:
            out["prospects"] = cross["prospects"]
        if n_similar:
            out["similar_products"] = self.similar_products(n_similar)
        return out

    def prospects(self, n=20) -> pd.DataFrame:
        """Per product, the customers who have not bought it and are most likely to.

        Columns: product_id, rank, customer_id, score, reason.
        """
        h = self.history_
        rows = np.arange(len(h.customer_ids))
        rows = rows[np.diff(h.bought.indptr) >= self.min_history]
        return self._cross_sell(h.customer_ids[rows], rows, n, lists=False)["prospects"]

    def _weights(self) -> dict:
        chosen = self.chosen_
        if isinstance(chosen, dict):
            return chosen["blend"]
        return {chosen: 1.0}

    def _cross_sell(self, customer_ids, rows, n_prospects, lists=True, weights=None) -> dict:
        scorer, h = self.scorer_, self.history_
        weights = weights or self._weights()
        names = tuple(a for a in weights if a in scorer.available())
        if not names:  # e.g. "content" asked for a catalogue without text
            weights, names = {"popularity": 1.0}, ("popularity",)
        weights = {a: weights[a] for a in names}
        parts, pool, stats = [], [], []
        n_p = scorer.n_products
        for idx in chunks(np.arange(len(rows)), scorer.chunk_rows):
            chunk = rows[idx]
            block = scorer.features(chunk, names)
            score = np.zeros((len(chunk), n_p), np.float32)
            for a in names:
                score += np.float32(weights[a]) * block[a]
            excluded = scorer.excluded(chunk)
            score[excluded] = -np.inf
            top, cand, cand_val = top_n(score, self.n, h.category_code, self.cross_cap_, candidates=True)
            if lists:
                d = list_diversity(top, h.category_code, top_shared(scorer.popularity, excluded, self.n),
                                   scorer.popularity)
                stats.append((len(chunk), d["differs"], d["diversity"], np.unique(top[top >= 0])))
                r, k = np.nonzero(top >= 0)
                c = top[r, k]
                parts.append(pd.DataFrame({
                    "row": chunk[r], "customer_id": customer_ids[idx][r], "rank": k + 1,
                    "col": c, "score": score[r, c].astype(float),
                    "alg": _reason_algorithm(block, weights, names, r, c),
                }))
            if n_prospects:
                # Prospects come from each customer's best ~50 products: a customer is
                # pitched a product that ranks high for them, not one that merely beats
                # other customers' weak scores.
                r, k = np.nonzero(np.isfinite(cand_val))
                c = cand[r, k]
                pool.append((chunk[r].astype(np.int32), c.astype(np.int32), cand_val[r, k],
                             _reason_algorithm(block, weights, names, r, c).astype(np.int8)))
        out = {}
        if lists:
            out["diversity"] = _published_diversity(stats, int(h.active.sum()))
            frame = pd.concat(parts, ignore_index=True) if parts else _empty_pairs()
            reasons, evidence, basis = self._explain(frame["row"].to_numpy(), frame["col"].to_numpy(),
                                                     frame["alg"].to_numpy())
            out["recommendations"] = pd.DataFrame({
                "customer_id": frame["customer_id"].to_numpy(np.int64), "kind": _obj("recommendation", len(frame)),
                "rank": frame["rank"].to_numpy(np.int64), "product_id": h.product_ids[frame["col"].to_numpy()],
                "score": frame["score"].to_numpy(float), "reason": _obj(reasons), "evidence": _obj(evidence),
                "basis": _obj(basis),
            })
        if n_prospects:
            r, c, v, alg = (np.concatenate(x) for x in zip(*pool)) if pool else (np.zeros(0, np.int64),) * 4
            order = np.lexsort((-v, c))
            r, c, v, alg = r[order], c[order], v[order], alg[order]
            first = np.searchsorted(c, c, side="left")
            rank = np.arange(len(c)) - first
            keep = (rank < n_prospects) & h.active[c] if len(c) else np.zeros(0, bool)
            r, c, v, alg, rank = (x[keep] for x in (r, c, v, alg, rank))
            reasons, evidence, _ = self._explain(r.astype(np.int64), c.astype(np.int64), alg.astype(np.int64))
            out["prospects"] = pd.DataFrame({
                "product_id": h.product_ids[c], "rank": rank.astype(np.int64) + 1,
                "customer_id": h.customer_ids[r], "score": v.astype(float),
                "reason": _obj(reasons), "evidence": _obj(evidence),
            })
        return out

    def _cold(self, customer_ids) -> pd.DataFrame:
        """Popular products (overall, recent, the customer's segment) for the unknown."""
        h, scorer = self.history_, self.scorer_
        if len(customer_ids) == 0:
            return _empty_frame()
        seg = np.array([h.segment_of.get(int(c), -1) for c in customer_ids], np.int64)
        frames = []
        for s in np.unique(seg):
            parts = {"popularity": scorer.popularity, "popularity_recent": scorer.popularity_recent}
            if s >= 0:
                parts["segment"] = scorer.segment_norm[s]
            score = sum(parts.values()) / len(parts)
            score = np.where(h.active, score, -np.inf)[None, :].astype(np.float32)
            top = top_n(score, self.n, h.category_code, self.cross_cap_)[0]
            top = top[top >= 0]
            contrib = np.column_stack([parts[a][top] for a in parts])
            alg_names = list(parts)
            alg = np.array([ALGORITHMS.index(alg_names[i]) for i in contrib.argmax(axis=1)])
            reasons, evidence, _ = self._explain(np.full(len(top), -1), top, alg, segment=s)
            ids = customer_ids[seg == s]
            frames.append(pd.DataFrame({
                "customer_id": np.repeat(ids, len(top)), "kind": _obj("recommendation", len(ids) * len(top)),
                "rank": np.tile(np.arange(1, len(top) + 1), len(ids)),
                "product_id": np.tile(h.product_ids[top], len(ids)),
                "score": np.tile(score[0, top].astype(float), len(ids)),
                "reason": _obj(np.tile(np.array(reasons, dtype=object), len(ids))),
                "evidence": _obj(np.tile(np.array(evidence, dtype=object), len(ids))),
                "basis": _obj("popular", len(ids) * len(top)),
            }))
        return pd.concat(frames, ignore_index=True)

    def reorder_scores(self, rows=None) -> pd.DataFrame:
        """The reorder candidates as of as_of (see ``_reorder_pairs``) with a ``score``
        column: the chosen model's P(bought again within the window), or its rule's score."""
        frame = self._reorder_pairs(rows)
        return frame.assign(score=self._reorder_score(frame))

    def _reorder_pairs(self, rows=None) -> pd.DataFrame:
        """Pairs (see ``reorder_frame``, features over the backtest window the model learned
        on) that may be suggested for reorder: with evidence of re-buying, an active
        product, not refunded since, and not long off its rhythm over the horizon."""
        h = self.history_
        frame = reorder_frame(h, self.window_days_)
        if rows is not None:
            frame = frame.loc[np.isin(frame["row"].to_numpy(), rows)]
        r, c = frame["row"].to_numpy(), frame["col"].to_numpy()
        usable = has_evidence(frame) & h.active[c] & ~(lookup(h.blocked, r, c) > 0)
        usable &= ~not_due(frame, self.horizon_days)
        return frame.loc[usable]

    def _reorder_score(self, frame) -> np.ndarray:
        if len(frame) == 0:
            return np.zeros(0)
        return score_reorder(self.reorder_chosen_, self.reorder_model_, frame, self.window_days_)

    def _reorder(self, customer_ids, rows) -> pd.DataFrame:
        h = self.history_
        if len(rows) == 0:
            return _empty_frame()
        frame = self._reorder_pairs(rows if len(rows) < len(h.customer_ids) else None)
        if frame.empty:
            return _empty_frame()
        score = self._reorder_score(frame)
        # Rank a slim (row, col, score) frame, then fetch the reason columns of the winners:
        # sorting the full feature frame of every pair costs memory for nothing.
        slim = pd.DataFrame({"row": frame["row"].to_numpy(), "col": frame["col"].to_numpy(),
                             "at": np.arange(len(frame))})
        ranked = rank_frame(slim, score, self.n, h.category_code, self.reorder_cap_)
        at = ranked["at"].to_numpy()
        frame = frame.iloc[at][["row", "col", "rebuy_evidence", "days", "since_last", "own_interval",
                                "product_cycle", "buyers", "repeat_buyers", "category", "category_pairs",
                                "category_repeat_pairs"]]
        reasons, evidence = reorder_reason(frame, h.categories)
        id_of_row = pd.Series(customer_ids, index=rows)
        return pd.DataFrame({
            "customer_id": id_of_row.reindex(frame["row"].to_numpy()).to_numpy(np.int64),
            "kind": _obj("reorder", len(at)), "rank": ranked["rank"].to_numpy(np.int64),
            "product_id": h.product_ids[frame["col"].to_numpy()],
            "score": score[at].astype(float), "reason": _obj(reasons), "evidence": _obj(evidence),
            "basis": _obj("personal", len(at)),
        })

    def similar_products(self, n=10) -> pd.DataFrame:
        """Per product, the active products bought with it (co-purchase cosine), then the
        closest by text when few customers bought both. Columns: product_id, rank,
        similar_product_id, score, reason (and evidence)."""
        h = self.history_
        # Text counts a tenth of co-purchase: it orders products nobody bought together yet.
        combined = (h.item_sim + 0.1 * h.text_sim).tocsr()
        combined = combined @ sp.diags(h.active.astype(np.float32))
        combined.eliminate_zeros()
        top = top_k_per_row(combined, n).tocoo()
        frame = pd.DataFrame({"src": top.row, "dst": top.col, "score": top.data.astype(float)})
        frame = frame.sort_values(["src", "score"], ascending=[True, False], kind="stable")
        frame["rank"] = frame.groupby("src").cumcount() + 1
        co = lookup(h.item_cobuyers, frame["src"].to_numpy(), frame["dst"].to_numpy())
        text = lookup(h.text_sim, frame["src"].to_numpy(), frame["dst"].to_numpy())
        reasons, evidence = [], []
        for src, dst, n_co, t in zip(frame["src"].to_numpy(), frame["dst"].to_numpy(), co, text):
            if n_co > 0:
                reasons.append(f"Bought together with {h.names[src]} by {int(n_co)} customers")
                evidence.append({"co_buyers": int(n_co)})
            else:
                reasons.append(_text_reason(h, src, dst))
                evidence.append({"text_similarity": round(float(t), 4)})
        return pd.DataFrame({
            "product_id": h.product_ids[frame["src"].to_numpy()], "rank": frame["rank"].to_numpy(np.int64),
            "similar_product_id": h.product_ids[frame["dst"].to_numpy()],
            "score": frame["score"].to_numpy(float), "reason": _obj(reasons), "evidence": _obj(evidence),
        })

    # ------------------------------------------------------------ reasons
    def _explain(self, rows, cols, algs, segment=None) -> tuple[list, list, list]:
        """Words, evidence and basis for (customer row, product column) pairs.

        ``algs`` holds the index (in ALGORITHMS) of the scorer that contributed most.
        """
        h, scorer = self.history_, self.scorer_
        n = len(rows)
        reasons = [""] * n
        evidence = [None] * n
        basis = ["personal"] * n
        algs = np.asarray(algs)
        # Equal reasons share one string and one evidence dict (memory on big bases);
        # the dicts are read-only for callers.
        memo = {}
        anchor = {}
        for name, sim in (("item_cf", h.item_sim), ("content", h.text_sim)):
            sel = np.flatnonzero(algs == ALGORITHMS.index(name))
            if len(sel):
                anchor[name] = (sel, *_best_anchor(h.bought, sim, rows[sel], cols[sel]))
        if "item_cf" in anchor:
            sel, src, _ = anchor["item_cf"]
            co = lookup(h.item_cobuyers, np.maximum(src, 0), cols[sel]).astype(np.int64).tolist()
            pids = h.product_ids[np.maximum(src, 0)].tolist()
            for i, s, c, pid in zip(sel.tolist(), src.tolist(), co, pids):
                if s < 0:
                    continue
                hit = memo.get(("item_cf", s, c))
                if hit is None:
                    hit = memo[("item_cf", s, c)] = (
                        f"Customers who buy {h.names[s]} also buy this ({c} of them)",
                        {"algorithm": "item_cf", "because_of_product_id": pid, "co_buyers": c})
                reasons[i], evidence[i] = hit
        if "content" in anchor:
            sel, src, sims = anchor["content"]
            last = pd.DatetimeIndex(lookup_last(h, rows[sel], np.maximum(src, 0)).astype("datetime64[D]"))
            months = last.strftime("%B %Y").tolist()
            days = last.strftime("%Y-%m-%d").tolist()
            pids = h.product_ids[np.maximum(src, 0)].tolist()
            for i, s, m, d, t, pid in zip(sel.tolist(), src.tolist(), months, days,
                                          np.round(sims, 4).tolist(), pids):
                if s < 0:
                    continue
                hit = memo.get(("content", s, d, t))
                if hit is None:
                    hit = memo[("content", s, d, t)] = (
                        f"Similar to {h.names[s]}, which you bought in {m}",
                        {"algorithm": "content", "because_of_product_id": pid, "bought_on": d,
                         "text_similarity": t})
                reasons[i], evidence[i] = hit
        for name in LEARNED_SCORERS:
            sel = np.flatnonzero((algs == ALGORITHMS.index(name)) & (rows >= 0))
            if not len(sel) or name not in scorer._learned:
                continue
            first, second = _top_contributors(h.bought, rows[sel], cols[sel], scorer.learned(name).weights)
            ids = h.product_ids
            for i, a, b in zip(sel.tolist(), first.tolist(), second.tolist()):
                if a < 0 and name in FACTOR_SCORERS:  # taste factors, no single product behind it
                    reasons[i], evidence[i] = memo.setdefault((name, -1, -1), (
                        "Customers whose purchases are like yours buy this", {"algorithm": name}))
                    continue
                if a < 0:  # no product of theirs points to it: the popularity tie-break placed it
                    continue
                hit = memo.get((name, a, b))
                if hit is None:
                    anchors = h.names[a] if b < 0 else f"{h.names[a]} and {h.names[b]}"
                    if name in FACTOR_SCORERS:
                        text = f"Customers who buy {anchors} tend to buy this too"
                    else:
                        text = f"Customers who bought {anchors} also bought this"
                    hit = memo[(name, a, b)] = (text, {
                        "algorithm": name, "because_of_product_ids": [int(ids[a])] + ([] if b < 0 else [int(ids[b])])})
                reasons[i], evidence[i] = hit
        user_sel = np.flatnonzero(algs == ALGORITHMS.index("user_cf"))
        if len(user_sel):
            counts = scorer.neighbour_buyers(rows[user_sel], cols[user_sel]).tolist()
            k_users = scorer.k_users
            for i, c in zip(user_sel.tolist(), counts):
                hit = memo.get(("user_cf", c))
                if hit is None:
                    hit = memo[("user_cf", c)] = (
                        f"{c} of the {k_users} customers whose purchases are most like yours bought this",
                        {"algorithm": "user_cf", "similar_customers_who_bought": c, "neighbours": k_users})
                reasons[i], evidence[i] = hit
        cat_sel = np.flatnonzero((algs == ALGORITHMS.index("category")) & (rows >= 0)
                                 & (h.category_code[cols] >= 0))
        if len(cat_sel):
            codes = h.category_code[cols[cat_sel]]
            counts = lookup(scorer.category_counts, rows[cat_sel], codes).astype(np.int64).tolist()
            for i, code, k in zip(cat_sel.tolist(), codes.tolist(), counts):
                hit = memo.get(("category", code, k))
                if hit is None:
                    cat = h.categories[code]
                    hit = memo[("category", code, k)] = (
                        f"You often buy {cat} ({k} products so far)",
                        {"algorithm": "category", "category": str(cat), "products_bought_in_category": k})
                reasons[i], evidence[i] = hit
        rest = [i for i in range(n) if not reasons[i]]
        recent_days = self.recent_days
        for i in rest:
            a = ALGORITHMS[algs[i]]
            c = cols[i]
            seg = segment if rows[i] < 0 else h.customer_segment[rows[i]]
            basis[i] = "popular"
            key = (a, c, seg if a == "segment" else None)
            if key in memo:
                reasons[i], evidence[i] = memo[key]
                continue
            if a == "segment" and seg is not None and seg >= 0:
                name = h.segment_names[seg]
                k = int(h.segment_buyers[seg, c])
                reasons[i] = f"Popular with {name} ({k} of them bought it)"
                evidence[i] = {"algorithm": "segment", "segment": str(name), "segment_buyers": k}
            elif a == "popularity_recent":
                k = int(h.recent_buyers[c])
                reasons[i] = f"Popular right now: {k} customers bought it in the last {recent_days} days"
                evidence[i] = {"algorithm": "popularity_recent", "recent_buyers": k, "days": recent_days}
            else:
                k = int(h.buyers[c])
                reasons[i] = f"A best seller: bought by {k} customers"
                evidence[i] = {"algorithm": "popularity", "buyers": k}
            memo[key] = (reasons[i], evidence[i])
        return reasons, evidence, basis


# ---------------------------------------------------------------------- scorers
class _Scorer:
    """Per-chunk score blocks (rows x products, float32, each row scaled to max 1)."""

    def __init__(self, history: History, params: dict):
        h = self.history = history
        self.n_products = h.n_products
        n_customers = h.bought.shape[0]
        self.chunk_rows = int(max(64, min(4096, CHUNK_CELLS // max(self.n_products, 1))))
        self.popularity = _scale(np.log1p(h.buyers)).astype(np.float32)
        self.popularity_recent = _scale(np.log1p(h.recent_buyers) + 1e-3 * np.log1p(h.buyers)).astype(np.float32)
        self.segment_norm = None
        if h.segment_buyers is not None and len(h.segment_buyers):
            seg = np.log1p(h.segment_buyers)
            self.segment_norm = (seg / np.maximum(seg.max(axis=1, keepdims=True), 1e-12)).astype(np.float32)
        # Customers' rows weighted by product IDF then L2-normalised: sharing a rare product
        # says more about two customers' tastes than sharing milk.
        idf = np.log1p(n_customers / np.maximum(h.buyers, 1.0)).astype(np.float32)
        x = (h.bought @ sp.diags(idf)).tocsr()
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        self.user_x = (sp.diags((1.0 / norms).astype(np.float32)) @ x).tocsr()
        self.k_users = int(params["user_neighbours"])
        pool_size = int(min(n_customers, max(self.k_users + 1, params["user_pool_cells"] // max(n_customers, 1))))
        rng = np.random.default_rng(params["random_state"])
        self.pool = np.arange(n_customers) if pool_size >= n_customers else np.sort(
            rng.choice(n_customers, pool_size, replace=False))
        self.pool_pos = np.full(n_customers, -1, np.int64)
        self.pool_pos[self.pool] = np.arange(len(self.pool))
        self.pool_xt = self.user_x[self.pool].T.tocsr()
        self.pool_bought = h.bought[self.pool].tocsr()
        self._pool_keys = None
        cats = h.category_code
        has = cats >= 0
        n_cat = int(cats.max(initial=-1)) + 1
        onehot = sp.csr_matrix((np.ones(has.sum(), np.float32), (np.flatnonzero(has), cats[has])),
                               shape=(self.n_products, max(n_cat, 1)))
        self.category_counts = (h.bought @ onehot).tocsr()
        self._neighbours = {}
        self.random_state = int(params["random_state"])
        self.n_threads = params.get("n_threads") or 1
        self.ease_penalty = params.get("ease_penalty", EASE_LAMBDAS[-1])
        self.with_bpr = bool(params.get("with_bpr", True))
        self._learned = {}
        self._ease_gram = None

    def learned(self, name: str):
        """The fitted model of a learned scorer (``recommend_factors``), fitted on first use:
        a final fit only pays for the scorers the choice kept."""
        if name not in self._learned:
            h = self.history
            if name == "als":
                self._learned[name] = fit_als(h.bought, h.pair_rows, self.random_state, self.n_threads)
            elif name == "bpr":
                self._learned[name] = fit_bpr(h.bought, self.random_state)
            elif name == "bm25_knn":
                self._learned[name] = fit_bm25_knn(h.bought, self.n_threads)
            elif name == "ease":
                self._learned[name] = self.ease_gram().solve(self.ease_penalty)
            else:
                raise KeyError(name)
        return self._learned[name]

    def ease_gram(self) -> EaseGram:
        if self._ease_gram is None:
            self._ease_gram = EaseGram(self.history.bought, ease_columns(self.history.buyers))
        return self._ease_gram

    def set_ease_penalty(self, relative: float) -> None:
        if relative != self.ease_penalty:
            self._learned.pop("ease", None)
        self.ease_penalty = relative

    def learned_block(self, name: str, rows) -> np.ndarray:
        model = self.learned(name)
        if name in FACTOR_SCORERS:
            return _row_scale(model.block(rows))
        if name == "ease":
            if getattr(self, "_ease_x", None) is None or self._ease_x[0] is not model:
                # The purchase matrix cut to EASE's columns once, not per chunk.
                self._ease_x = (model, self.history.bought[:, model.columns].tocsr())
            return _row_scale(model.block(self.history.bought[rows], self._ease_x[1][rows]))
        return _row_scale(model.block(self.history.bought[rows]))

    def available(self) -> tuple:
        """The scorers this data supports, in CROSS_ORDER. They depend on the catalogue and
        the segments only (not on who bought what by a date), so every backtest origin and
        the final fit have the same ones."""
        names = ["popularity", "popularity_recent"]
        if self.segment_norm is not None:
            names.append("segment")
        if (self.history.category_code >= 0).any():
            names.append("category")
        if self.history.text_sim.nnz:
            names.append("content")
        names += ["item_cf", "user_cf", "bm25_knn", "als"]
        if self.n_products >= 2:  # EASE on no product with two buyers yet scores 0: the tie-break
            names.append("ease")
        if self.with_bpr:
            names.append("bpr")
        return tuple(a for a in CROSS_ORDER if a in names)

    def excluded(self, rows) -> np.ndarray:
        """Bought before, refunded (and not bought again) or inactive: never suggested."""
        h = self.history
        out = (h.bought[rows] + h.blocked[rows]).toarray() > 0
        out |= ~h.active[None, :]
        return out

    def blend(self, rows, weights: dict) -> np.ndarray:
        block = self.features(rows, tuple(weights))
        score = np.zeros((len(rows), self.n_products), np.float32)
        for a, w in weights.items():
            score += np.float32(w) * block[a]
        return score

    def features(self, rows, names) -> dict:
        h = self.history
        out = {}
        for a in names:
            if a == "popularity":
                out[a] = np.broadcast_to(self.popularity, (len(rows), self.n_products))
            elif a == "popularity_recent":
                out[a] = np.broadcast_to(self.popularity_recent, (len(rows), self.n_products))
            elif a == "segment":
                seg = h.customer_segment[rows]
                block = self.segment_norm[np.maximum(seg, 0)].copy()
                block[seg < 0] = 0.0
                out[a] = block
            elif a == "item_cf":
                out[a] = _row_scale((h.bought[rows] @ h.item_sim).toarray())
            elif a == "content":
                out[a] = _row_scale((h.bought[rows] @ h.text_sim).toarray())
            elif a == "user_cf":
                out[a] = _row_scale((self._neighbour_matrix(rows) @ self.pool_bought).toarray())
            elif a in LEARNED_SCORERS:
                out[a] = self.learned_block(a, rows)
            elif a == "category":
                counts = self.category_counts[rows].toarray()
                share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
                block = share[:, np.maximum(h.category_code, 0)]
                block[:, h.category_code < 0] = 0.0
                out[a] = _row_scale(block)
            if a in PERSONAL:
                # Ties (above all the products a personal scorer has no signal for, all 0)
                # are broken by popularity, not by column order: a thousandth of the
                # popularity scale moves nothing the scorer tells apart.
                out[a] += np.float32(TIE_BREAK) * self.popularity
        return out

    def _neighbour_matrix(self, rows) -> sp.csr_matrix:
        """The k most similar pool customers of each row, as a sparse similarity matrix."""
        sims = (self.user_x[rows] @ self.pool_xt).toarray()
        own = self.pool_pos[rows]
        sims[np.flatnonzero(own >= 0), own[own >= 0]] = 0.0
        k = min(self.k_users, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else np.tile(np.arange(sims.shape[1]), (len(rows), 1))
        val = np.take_along_axis(sims, top, 1)
        r = np.repeat(np.arange(len(rows)), top.shape[1])
        keep = val.ravel() > 0
        return sp.csr_matrix((val.ravel()[keep], (r[keep], top.ravel()[keep])), shape=(len(rows), sims.shape[1]))

    def neighbour_buyers(self, rows, cols) -> np.ndarray:
        """How many of the row's nearest customers bought the product (for the reason)."""
        out = np.zeros(len(rows), np.int64)
        if self._pool_keys is None:
            pb = self.pool_bought
            self._pool_keys = np.repeat(np.arange(pb.shape[0], dtype=np.int64), np.diff(pb.indptr)) * pb.shape[1] + pb.indices
        for start in range(0, len(rows), 2048):
            r, c = rows[start:start + 2048], cols[start:start + 2048]
            nb = self._neighbour_matrix(r).tocsr()
            nr = np.repeat(np.arange(len(r)), np.diff(nb.indptr))
            hit = lookup(self.pool_bought, nb.indices, c[nr], self._pool_keys) > 0
            out[start:start + len(r)] = np.bincount(nr[hit], minlength=len(r))
        return out



# ---------------------------------------------------------------------- helpers
def _published_diversity(stats, n_active) -> dict:
    """Coverage (distinct products listed / active products), the share of customers whose
    list differs from their popularity list, and the mean intra-list diversity, over the
    chunks' (customers, differs, diversity, products) of the personal cross-sell lists."""
    if not stats:
        return {"customers": 0, "coverage": 0.0, "differs from popularity": None, "intra-list diversity": None}
    sizes = np.array([s[0] for s in stats], float)

    def mean(values):
        ok = [(v, w) for v, w in zip(values, sizes) if v is not None]
        return float(np.average([v for v, _ in ok], weights=[w for _, w in ok])) if ok else None

    products = np.unique(np.concatenate([s[3] for s in stats]))
    return {"customers": int(sizes.sum()), "coverage": float(len(products) / max(n_active, 1)),
            "products": int(len(products)), "differs from popularity": mean([s[1] for s in stats]),
            "intra-list diversity": mean([s[2] for s in stats])}


def _scale(v: np.ndarray) -> np.ndarray:
    m = v.max(initial=0.0)
    return v / m if m > 0 else v


def _row_scale(block: np.ndarray) -> np.ndarray:
    """Each row to max 1, so scorers with different units can be blended per customer."""
    block = block.astype(np.float32, copy=False)
    m = block.max(axis=1, keepdims=True)
    np.divide(block, m, out=block, where=m > 0)
    return block


def _reason_algorithm(block, weights, names, r, c) -> np.ndarray:
    """Index in ALGORITHMS of the scorer contributing most to each (r, c)."""
    positive = [a for a in names if weights[a] > 0] or list(names)
    contrib = np.column_stack([weights[a] * block[a][r, c] for a in positive]) if len(r) else np.zeros((0, 1))
    best = contrib.argmax(axis=1) if len(r) else np.zeros(0, np.int64)
    # A personal scorer with no signal for this pair should not be quoted as the reason.
    idx = np.array([ALGORITHMS.index(a) for a in positive])
    return idx[best]


def _best_anchor(bought, sim, rows, cols):
    """For each pair, the product the customer bought that is most similar to cols.

    Looks up sim[i, col] for every product i the customer bought (a customer buys tens
    of products; a popular target can have thousands of neighbours pointing at it, so the
    search goes from the customer's side). Returns (anchor column or -1, its similarity).
    """
    src = np.full(len(rows), -1, np.int64)
    best = np.zeros(len(rows))
    sim_keys = np.repeat(np.arange(sim.shape[0], dtype=np.int64), np.diff(sim.indptr)) * sim.shape[1] + sim.indices
    for start in range(0, len(rows), 50_000):
        r, c = rows[start:start + 50_000], cols[start:start + 50_000]
        sub = bought[r]
        pr = np.repeat(np.arange(len(r)), np.diff(sub.indptr))
        items = sub.indices
        s = lookup(sim, items, c[pr], sim_keys)
        order = np.lexsort((-s, pr))
        first = np.r_[True, pr[order][1:] != pr[order][:-1]]
        w = order[first]
        got = s[w] > 0
        src[start + pr[w][got]] = items[w][got]
        best[start + pr[w][got]] = s[w][got]
    return src, best


def _top_contributors(bought, rows, cols, weights, step: int = 20_000) -> tuple:
    """For each (customer row, product column) pair, the two products the customer bought
    that carry the most weight towards the product in the scorer (``weights(items, targets)``:
    EASE's or the item-kNN's item-item weight, the factor models' taste similarity). Returns
    two column arrays, -1 where fewer products have a positive weight."""
    first = np.full(len(rows), -1, np.int64)
    second = np.full(len(rows), -1, np.int64)
    for start in range(0, len(rows), step):
        r, c = rows[start:start + step], cols[start:start + step]
        sub = bought[r]
        pr = np.repeat(np.arange(len(r)), np.diff(sub.indptr))
        items = sub.indices.astype(np.int64)
        w = np.asarray(weights(items, c[pr]), np.float64)
        w[w <= 0] = -np.inf
        # Pairs' entries are contiguous (CSR rows): the best and second best per pair by two
        # reductions, the lowest column winning a tie.
        for out in (first, second):
            has = np.diff(sub.indptr) > 0
            starts = sub.indptr[:-1][has]
            if not len(starts):
                break
            best = np.full(len(r), -np.inf)
            best[has] = np.maximum.reduceat(w, starts)
            at = np.where(w == best[pr], items, np.iinfo(np.int64).max)
            pick = np.full(len(r), -1, np.int64)
            pick[has] = np.minimum.reduceat(at, starts)
            ok = np.isfinite(best) & (pick >= 0)
            out[start + np.flatnonzero(ok)] = pick[ok]
            w[(items == pick[pr]) & ok[pr]] = -np.inf
    return first, second


def lookup_last(h: History, rows, cols) -> np.ndarray:
    keys = h.pair_keys()
    q = rows.astype(np.int64) * h.n_products + cols
    pos = np.minimum(np.searchsorted(keys, q), max(len(keys) - 1, 0))
    return np.where(keys[pos] == q, h.pair_last[pos], h.as_of_day)


def _text_reason(h: History, src, dst) -> str:
    if h.category_code[src] >= 0 and h.category_code[src] == h.category_code[dst]:
        return f"Similar to {h.names[src]}: same category ({h.categories[h.category_code[src]]})"
    return f"Similar description to {h.names[src]}"


def _obj(values, n=None) -> pd.Series:
    """An object column: strings and dicts stay shared Python objects (a repeated reason
    is stored once) instead of being copied into an Arrow string column."""
    if n is not None:
        return pd.Series(np.full(n, values, dtype=object), dtype=object)
    return pd.Series(values, dtype=object)


def _empty_pairs() -> pd.DataFrame:
    return pd.DataFrame({"row": np.zeros(0, np.int64), "customer_id": np.zeros(0, np.int64),
                         "rank": np.zeros(0, np.int64), "col": np.zeros(0, np.int64),
                         "score": np.zeros(0), "alg": np.zeros(0, np.int64)})


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": np.zeros(0, np.int64), "kind": pd.Series([], dtype=object),
                         "rank": np.zeros(0, np.int64), "product_id": np.zeros(0, np.int64),
                         "score": np.zeros(0), "reason": pd.Series([], dtype=object),
                         "evidence": pd.Series([], dtype=object), "basis": pd.Series([], dtype=object)})


# ---------------------------------------------------------------------- evaluation
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
        for chunk in chunks(rows_new, scorer.chunk_rows):
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
