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
  (:mod:`ml.pipelines.recommendation.factors`: settings, the EASE cut, determinism).

Every personal scorer breaks its ties by popularity (a thousandth of its scale), so the
products it has no signal for come in best-seller order rather than in column order.

``algorithm="auto"`` chooses on rolling backtest origins (:mod:`ml.pipelines.backtest`,
:mod:`ml.pipelines.recommendation.backtest`): each scorer with and without the per-category
cap, the personal scorers first and the popularity lists last (popularity, the baseline, is
published only when it beats every personal candidate beyond the spread between windows),
the best shared list with a few places kept for a personal scorer (published when within the
spread of the best: the most personal such list; each product keeps the reason of the scorer
that placed it), and a blend of the scorers kept only when it beats the best one on every origin.
On a base of more than ``max_backtest_customers`` buyers the origins learn from a hashed
sample of them. Replenishment (:mod:`ml.pipelines.recommendation.reorder`) is chosen the same way,
repeat-buy being its baseline, and only ever lists products with evidence of re-buying. With
too little history for a backtest window (see ``plan_backtest``) the baselines are used:
popularity and repeat-buy, uncapped (nothing could show a personal list is better).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from threadpoolctl import threadpool_limits

from ml.pipelines.backtest import plan_backtest
from ml.pipelines.recommendation.backtest import (
    CROSS_BASELINE,
    backtest_record,
    choose_cross_sell,
    choose_reorder,
    collect_origin,
    fit_final_reorder,
    mean_scores,
    reserve_name,
    tune_ease,
    variant_name,
)
from ml.pipelines.recommendation.factors import BPR_MAX_PAIRS, EASE_LAMBDAS
from ml.pipelines.recommendation.history import (
    History,
    build_history,
    catalogue_purchases,
    lookup,
    text_similarity,
)
from ml.pipelines.recommendation.ranking import (
    chunks,
    discounted,
    empty_frame,
    empty_pairs,
    list_diversity,
    object_column,
    published_diversity,
    rank_frame,
    reserve_slots,
    stable_unit,
    top_n,
    top_shared,
    window_purchases,
)
from ml.pipelines.recommendation.reasons import explain, reason_algorithm, reorder_reason
from ml.pipelines.recommendation.reorder import (
    LEARNED,
    NO_REBUYING,
    REORDER_BASELINE,
    expected_days,
    has_evidence,
    not_due,
    reorder_frame,
    score_reorder,
)
from ml.pipelines.recommendation.scorers import ALGORITHMS, POPULAR, Scorer
from ml.pipelines.recommendation.suggesting import cold_lists, merge_prospects, similar_products
from ml.pipelines.schema import as_of_day

# Salt of the customer hash that picks the backtest sample (the origins' own picks use 1 and 2).
SAMPLE_SALT = 3
# The per-category cap tried against no cap: 3 of 10 from one category still lets a strong
# category lead the list while leaving room for others.
CATEGORY_CAP = 3

# The interaction columns the recommender reads (quantities, amounts and order refs are not).
FIT_COLUMNS = ["customer_id", "product_id", "type", "occurred_at"]
NO_CATALOGUE = "no product catalogue: purchases carry no product, so there are no recommendations"
NO_ACTIVE = "no active product: every product of the catalogue is inactive, so nothing is suggested"


class NotSupported(Exception):
    """The data cannot support recommendations at all; the message says why in words."""


class Recommender(BaseEstimator):
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
        windows), ``chosen_`` (an algorithm name, {"blend": weights} or {"reserve": {"base",
        "scorer", "slots", "lift"}}), ``cross_cap_``,
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
        # Only the columns read: the filtered copies below (purchases, the backtest sample) then
        # carry four columns, not seven (~0.3 GB less per copy at 10 M interactions).
        interactions = interactions[FIT_COLUMNS]
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
            scorer = Scorer(**self._scorer_params()).fit(history)
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
        self.scorer_ = Scorer(**self._scorer_params()).fit(self.history_)
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
        if cross.get("reserve") is not None:
            self.chosen_ = {"reserve": {"base": cross["algorithm"], "scorer": cross["reserve"][0],
                                        "slots": int(cross["reserve"][1]), "lift": float(cross["reserve"][2])}}
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
        chosen = self.chosen_
        if isinstance(chosen, dict) and "reserve" in chosen:
            r = chosen["reserve"]
            return reserve_name(r["scorer"], r["slots"], self.n, r["base"], r.get("lift", 0.0))
        return chosen if isinstance(chosen, str) else "blend"

    @property
    def chosen_name_(self) -> str:
        """The published cross-sell list in words: a scorer, "blend", or a shared list with
        places kept for a personal scorer."""
        return self._cross_name()

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
        "popular"), expected_on (reorder: the expected day of the next purchase, a date; see
        ``reorder.expected_days``; None for cross-sell). Customers without history get
        popular products, basis "popular".
        """
        return self.suggest_all(customer_ids, n_prospects=0)["recommendations"]

    def suggest_all(self, customer_ids=None, n_prospects=20, n_similar=10) -> dict:
        """recommendations (as ``recommend``), prospects and similar products in one pass."""
        out = {"recommendations": next(self.suggest_chunks(customer_ids, None, n_prospects))}
        if n_prospects:
            out["prospects"] = self.prospects_
        if n_similar:
            with threadpool_limits(limits=self.n_threads):
                out["similar_products"] = self.similar_products(n_similar)
        return out

    def suggest_chunks(self, customer_ids=None, size=None, n_prospects=20):
        """The recommendations (as ``recommend``) of ``customer_ids`` (default: every customer
        with a purchase) as one frame per ``size`` of them, in their order (None: one frame), so
        that a million customers' rows never sit in memory at once. When the last frame is taken,
        ``prospects_`` holds the top ``n_prospects`` customers per product over all of them (the
        chunks' own top lists merged) and ``diversity_`` the published lists' figures; every
        figure and row is the one a single pass gives."""
        h = self.history_
        ids = h.customer_ids if customer_ids is None else np.asarray(customer_ids, dtype=np.int64)
        size = max(len(ids), 1) if size is None else size
        stats, kept = [], None
        with threadpool_limits(limits=self.n_threads):
            # Reorder lists are ranked once over every pair (their product figures are the
            # whole base's), before any cross-sell output exists (peak memory).
            winners = self.reorder_winners()
        for start in range(0, max(len(ids), 1), size):
            recs, prospects, part = self.suggest_part(ids[start:start + size], winners, n_prospects)
            stats.extend(part)
            if n_prospects:
                kept = merge_prospects(kept, prospects, n_prospects)
            if start + size >= len(ids):
                self.diversity_ = published_diversity(stats, int(h.active.sum()))
                self.prospects_ = kept
            yield recs

    def suggest_part(self, customer_ids, winners, n_prospects=20) -> tuple:
        """One chunk's recommendations, its own top ``n_prospects`` per product and its lists'
        diversity figures, given ``reorder_winners()`` (what a fanned-out run's chunk writes)."""
        stats = []
        with threadpool_limits(limits=self.n_threads):
            recs, prospects = self._suggest(np.asarray(customer_ids, dtype=np.int64), winners, n_prospects, stats)
        return recs, prospects, stats

    def _suggest(self, customer_ids, winners, n_prospects, stats) -> tuple:
        h = self.history_
        rows = pd.Index(h.customer_ids).get_indexer(customer_ids)
        known = rows >= 0
        personal = known & (np.diff(h.bought.indptr)[np.maximum(rows, 0)] >= self.min_history)
        thin = known & ~personal
        cross = self._cross_sell(customer_ids[personal], rows[personal], n_prospects)
        stats.extend(cross["stats"])
        parts = [cross["recommendations"], cold_lists(self, customer_ids[~known]),
                 self._reorder(customer_ids[known], rows[known], winners)]
        if thin.any():  # a little history: popular products, minus what they bought
            popular = {a: 1.0 for a in POPULAR if a in self.scorer_.available()}
            parts.append(self._cross_sell(customer_ids[thin], rows[thin], 0, weights=popular)["recommendations"])
        frame = pd.concat(parts, ignore_index=True)
        if "expected_on" not in frame:
            frame["expected_on"] = None
        # Cross-sell rows have no expected date (None, not NaN: the column holds dates).
        frame["expected_on"] = frame["expected_on"].astype(object).where(frame["expected_on"].notna(), None)
        frame = frame[["customer_id", "kind", "rank", "product_id", "score", "reason", "evidence", "basis",
                       "expected_on"]]
        return frame, cross.get("prospects")

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
            return {chosen["reserve"]["base"]: 1.0} if "reserve" in chosen else chosen["blend"]
        return {chosen: 1.0}

    def _reserve(self):
        """(personal scorer, slots) when the chosen list keeps places for a personal scorer."""
        chosen = self.chosen_
        if isinstance(chosen, dict) and "reserve" in chosen:
            r = chosen["reserve"]
            return r["scorer"], r["slots"], r.get("lift", 0.0)
        return None

    def _cross_sell(self, customer_ids, rows, n_prospects, lists=True, weights=None) -> dict:
        scorer, h = self.scorer_, self.history_
        reserve = self._reserve() if weights is None else None
        if reserve is not None and reserve[0] not in scorer.available():
            reserve = None
        weights = weights or self._weights()
        names = tuple(a for a in weights if a in scorer.available())
        if not names:  # e.g. "content" asked for a catalogue without text
            weights, names = {"popularity": 1.0}, ("popularity",)
        weights = {a: weights[a] for a in names}
        feature_names = names + ((reserve[0],) if reserve is not None and reserve[0] not in names else ())
        parts, pool, stats = [], [], []
        n_p, scratch = scorer.n_products_, None
        for idx in chunks(np.arange(len(rows)), scorer.chunk_rows_):
            chunk = rows[idx]
            block = scorer.features(chunk, feature_names)
            # The weighted sum in place, through one scratch block per chunk size (no
            # temporary block per scorer: a pass over chunk x products each saved).
            score = np.empty((len(chunk), n_p), np.float32)
            if scratch is None or scratch.shape != score.shape:
                scratch = np.empty_like(score)
            np.multiply(block[names[0]], np.float32(weights[names[0]]), out=score)
            for a in names[1:]:
                score += np.multiply(block[a], np.float32(weights[a]), out=scratch)
            excluded = scorer.excluded(chunk)
            score[excluded] = -np.inf
            top, cand, cand_val = top_n(score, self.n, h.category_code, self.cross_cap_, candidates=True)
            placed = None
            if reserve is not None and lists:
                # The last places go to the personal scorer's best products (see
                # ``backtest.reserved_variants``); each keeps its own scorer's score and reason.
                personal = discounted(block[reserve[0]], scorer.popularity_[None, :], reserve[2])
                personal = np.where(excluded, -np.inf, personal).astype(np.float32)
                base = top[:, :max(self.n - reserve[1], 0)]
                top = reserve_slots(top, top_n(personal, self.n, h.category_code, None), self.n, reserve[1])
                placed = (top >= 0) & ~(top[:, :, None] == base[:, None, :]).any(axis=2)
            if lists:
                d = list_diversity(top, h.category_code, top_shared(scorer.popularity_, excluded, self.n),
                                   scorer.popularity_)
                stats.append((len(chunk), d["differs"], d["diversity"], np.unique(top[top >= 0])))
                r, k = np.nonzero(top >= 0)
                c = top[r, k]
                value, alg = score[r, c].astype(float), reason_algorithm(block, weights, names, r, c)
                if placed is not None:
                    mine = placed[r, k]
                    value[mine] = block[reserve[0]][r[mine], c[mine]]
                    alg[mine] = ALGORITHMS.index(reserve[0])
                parts.append(pd.DataFrame({
                    "row": chunk[r], "customer_id": customer_ids[idx][r], "rank": k + 1,
                    "col": c, "score": value, "alg": alg,
                }))
            if n_prospects:
                # Prospects come from each customer's best ~50 products: a customer is
                # pitched a product that ranks high for them, not one that merely beats
                # other customers' weak scores.
                r, k = np.nonzero(np.isfinite(cand_val))
                c = cand[r, k]
                pool.append((chunk[r].astype(np.int32), c.astype(np.int32), cand_val[r, k],
                             reason_algorithm(block, weights, names, r, c).astype(np.int8)))
        out = {"stats": stats}
        if lists:
            frame = pd.concat(parts, ignore_index=True) if parts else empty_pairs()
            reasons, evidence, basis = self._explain(frame["row"].to_numpy(), frame["col"].to_numpy(),
                                                     frame["alg"].to_numpy())
            out["recommendations"] = pd.DataFrame({
                "customer_id": frame["customer_id"].to_numpy(np.int64), "kind": object_column("recommendation", len(frame)),
                "rank": frame["rank"].to_numpy(np.int64), "product_id": h.product_ids[frame["col"].to_numpy()],
                "score": frame["score"].to_numpy(float), "reason": object_column(reasons), "evidence": object_column(evidence),
                "basis": object_column(basis),
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
                "reason": object_column(reasons), "evidence": object_column(evidence),
            })
        return out

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

    def reorder_winners(self) -> pd.DataFrame | None:
        """Every customer's reorder list, ranked once: the winning pairs (row, col, rank, score)
        with the reason's raw figures, by customer row; None when no pair may be suggested."""
        h = self.history_
        frame = self._reorder_pairs()
        if frame.empty:
            return None
        score = self._reorder_score(frame)
        # Rank a slim (row, col, score) frame, then fetch the reason columns of the winners:
        # sorting the full feature frame of every pair costs memory for nothing.
        slim = pd.DataFrame({"row": frame["row"].to_numpy(), "col": frame["col"].to_numpy(),
                             "at": np.arange(len(frame))})
        ranked = rank_frame(slim, score, self.n, h.category_code, self.reorder_cap_)
        at = ranked["at"].to_numpy()
        return frame.iloc[at][["row", "col", "rebuy_evidence", "days", "since_last", "own_interval",
                               "product_cycle", "buyers", "repeat_buyers", "category", "category_pairs",
                               "category_repeat_pairs"]].assign(
            rank=ranked["rank"].to_numpy(np.int64), score=score[at]).reset_index(drop=True)

    def _reorder(self, customer_ids, rows, winners) -> pd.DataFrame:
        """The reorder lists of the customers at ``rows``, from ``reorder_winners``."""
        h = self.history_
        if len(rows) == 0 or winners is None:
            return empty_frame()
        mine = np.zeros(len(h.customer_ids), bool)
        mine[rows] = True
        frame = winners.loc[mine[winners["row"].to_numpy()]]
        if frame.empty:
            return empty_frame()
        reasons, evidence = reorder_reason(frame, h.categories)
        # Day numbers are days since 1970-01-01, as numpy's datetime64[D] counts them.
        expected_on = (h.as_of_day + expected_days(frame)).astype("datetime64[D]").astype(object)
        id_of_row = pd.Series(customer_ids, index=rows)
        return pd.DataFrame({
            "customer_id": id_of_row.reindex(frame["row"].to_numpy()).to_numpy(np.int64),
            "kind": object_column("reorder", len(frame)), "rank": frame["rank"].to_numpy(np.int64),
            "product_id": h.product_ids[frame["col"].to_numpy()],
            "score": frame["score"].to_numpy(float), "reason": object_column(reasons),
            "evidence": object_column(evidence), "basis": object_column("personal", len(frame)),
            "expected_on": object_column(list(expected_on)),
        })

    def similar_products(self, n=10) -> pd.DataFrame:
        """Per product, the active products bought with it (co-purchase cosine), then the
        closest by text when few customers bought both. Columns: product_id, rank,
        similar_product_id, score, reason (and evidence)."""
        return similar_products(self.history_, n)

    def _explain(self, rows, cols, algs, segment=None) -> tuple[list, list, list]:
        """Words, evidence and basis for (customer row, product column) pairs (see
        :func:`ml.pipelines.recommendation.reasons.explain`)."""
        return explain(self.history_, self.scorer_, rows, cols, algs, self.recent_days, segment=segment)
