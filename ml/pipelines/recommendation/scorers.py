"""The cross-sell scorers: per chunk of customers, a score block over every product.

Popularity lists (all time, recent, per segment), the customer's own categories, text
similarity, item-item and user-user neighbours, and the learned models of :mod:`.factors`
(EASE, BM25 item-kNN, ALS, BPR), each block scaled to a maximum of 1 per customer so that
scorers can be blended. Nothing dense of size customers x products ever exists.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ml.pipelines.recommendation.factors import (
    EASE_LAMBDAS,
    FACTOR_SCORERS,
    LEARNED_SCORERS,
    EaseGram,
    ease_columns,
    fit_als,
    fit_bm25_knn,
    fit_bpr,
)
from ml.pipelines.recommendation.history import History, lookup

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
# Weight of popularity inside every personal scorer, as a tie-break (see ``Scorer.features``);
# the personal scores are scaled to a maximum of 1 per customer.
TIE_BREAK = 1e-3

# Dense per-chunk score blocks are chunk x products float32; ~4M cells (16 MB) per block
# keeps a handful of blocks well under 200 MB whatever the catalogue size.
CHUNK_CELLS = 4_000_000


class Scorer:
    """Per-chunk score blocks (rows x products, float32, each row scaled to max 1).

    Parameters: ``user_neighbours`` (k of user_cf), ``user_pool_cells`` (cap on customers x
    neighbour-pool cells), ``random_state``, ``n_threads``, ``ease_penalty`` (EASE's relative
    lambda, see :meth:`set_ease_penalty`), ``with_bpr`` (BPR among the candidates).
    ``fit(history)`` learns ``history_``, ``n_products_``, ``chunk_rows_``, ``popularity_``,
    ``popularity_recent_``, ``segment_norm_`` (None without segments), ``user_x_``,
    ``k_users_``, the neighbour pool (``pool_``, ``pool_pos_``, ``pool_xt_``, ``pool_bought_``),
    ``category_counts_`` and ``learned_`` (the learned scorers' models, fitted on first use).
    """

    def __init__(self, user_neighbours=50, user_pool_cells=100_000_000, random_state=0, n_threads=1,
                 ease_penalty=EASE_LAMBDAS[-1], with_bpr=True):
        self.user_neighbours = user_neighbours
        self.user_pool_cells = user_pool_cells
        self.random_state = random_state
        self.n_threads = n_threads
        self.ease_penalty = ease_penalty
        self.with_bpr = with_bpr

    def fit(self, history: History) -> Scorer:
        """Learn the popularity lists, the customers' normalised rows and neighbour pool and
        their category counts from ``history``; the learned models (:meth:`learned`) are fitted
        on first use."""
        h = self.history_ = history
        self.n_products_ = h.n_products
        n_customers = h.bought.shape[0]
        self.chunk_rows_ = int(max(64, min(4096, CHUNK_CELLS // max(self.n_products_, 1))))
        self.popularity_ = _scale(np.log1p(h.buyers)).astype(np.float32)
        self.popularity_recent_ = _scale(np.log1p(h.recent_buyers) + 1e-3 * np.log1p(h.buyers)).astype(np.float32)
        self.segment_norm_ = None
        if h.segment_buyers is not None and len(h.segment_buyers):
            seg = np.log1p(h.segment_buyers)
            self.segment_norm_ = (seg / np.maximum(seg.max(axis=1, keepdims=True), 1e-12)).astype(np.float32)
        # Customers' rows weighted by product IDF then L2-normalised: sharing a rare product
        # says more about two customers' tastes than sharing milk.
        idf = np.log1p(n_customers / np.maximum(h.buyers, 1.0)).astype(np.float32)
        x = (h.bought @ sp.diags(idf)).tocsr()
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        self.user_x_ = (sp.diags((1.0 / norms).astype(np.float32)) @ x).tocsr()
        self.k_users_ = int(self.user_neighbours)
        pool_size = int(min(n_customers, max(self.k_users_ + 1, self.user_pool_cells // max(n_customers, 1))))
        rng = np.random.default_rng(self.random_state)
        self.pool_ = np.arange(n_customers) if pool_size >= n_customers else np.sort(
            rng.choice(n_customers, pool_size, replace=False))
        self.pool_pos_ = np.full(n_customers, -1, np.int64)
        self.pool_pos_[self.pool_] = np.arange(len(self.pool_))
        self.pool_xt_ = self.user_x_[self.pool_].T.tocsr()
        self.pool_bought_ = h.bought[self.pool_].tocsr()
        self._pool_keys = None
        cats = h.category_code
        has = cats >= 0
        n_cat = int(cats.max(initial=-1)) + 1
        onehot = sp.csr_matrix((np.ones(has.sum(), np.float32), (np.flatnonzero(has), cats[has])),
                               shape=(self.n_products_, max(n_cat, 1)))
        self.category_counts_ = (h.bought @ onehot).tocsr()
        # name -> fitted learned scorer (:meth:`learned`), filled on first use.
        self.learned_ = {}
        self._ease_gram = None
        self._ease_x = None
        return self

    def learned(self, name: str):
        """The fitted model of a learned scorer (:mod:`.factors`), fitted on first use:
        a final fit only pays for the scorers the choice kept."""
        if name not in self.learned_:
            h = self.history_
            if name == "als":
                self.learned_[name] = fit_als(h.bought, h.pair_rows, int(self.random_state), self.n_threads or 1)
            elif name == "bpr":
                self.learned_[name] = fit_bpr(h.bought, int(self.random_state))
            elif name == "bm25_knn":
                self.learned_[name] = fit_bm25_knn(h.bought, self.n_threads or 1)
            elif name == "ease":
                self.learned_[name] = self.ease_gram().solve(self.ease_penalty)
            else:
                raise KeyError(name)
        return self.learned_[name]

    def ease_gram(self) -> EaseGram:
        if self._ease_gram is None:
            self._ease_gram = EaseGram(self.history_.bought, ease_columns(self.history_.buyers))
        return self._ease_gram

    def set_ease_penalty(self, relative: float) -> None:
        if relative != self.ease_penalty:
            self.learned_.pop("ease", None)
        self.ease_penalty = relative

    def learned_block(self, name: str, rows) -> np.ndarray:
        model = self.learned(name)
        if name in FACTOR_SCORERS:
            return _row_scale(model.block(rows))
        if name == "ease":
            if self._ease_x is None or self._ease_x[0] is not model:
                # The purchase matrix cut to EASE's columns once, not per chunk.
                self._ease_x = (model, self.history_.bought[:, model.columns].tocsr())
            return _row_scale(model.block(self.history_.bought[rows], self._ease_x[1][rows]))
        return _row_scale(model.block(self.history_.bought[rows]))

    def available(self) -> tuple:
        """The scorers this data supports, in CROSS_ORDER. They depend on the catalogue and
        the segments only (not on who bought what by a date), so every backtest origin and
        the final fit have the same ones."""
        names = ["popularity", "popularity_recent"]
        if self.segment_norm_ is not None:
            names.append("segment")
        if (self.history_.category_code >= 0).any():
            names.append("category")
        if self.history_.text_sim.nnz:
            names.append("content")
        names += ["item_cf", "user_cf", "bm25_knn", "als"]
        if self.n_products_ >= 2:  # EASE on no product with two buyers yet scores 0: the tie-break
            names.append("ease")
        if self.with_bpr:
            names.append("bpr")
        return tuple(a for a in CROSS_ORDER if a in names)

    def excluded(self, rows) -> np.ndarray:
        """Bought before, refunded (and not bought again) or inactive: never suggested."""
        h = self.history_
        out = (h.bought[rows] + h.blocked[rows]).toarray() > 0
        out |= ~h.active[None, :]
        return out

    def blend(self, rows, weights: dict) -> np.ndarray:
        block = self.features(rows, tuple(weights))
        score = np.zeros((len(rows), self.n_products_), np.float32)
        for a, w in weights.items():
            score += np.float32(w) * block[a]
        return score

    def features(self, rows, names) -> dict:
        h = self.history_
        out = {}
        for a in names:
            if a == "popularity":
                out[a] = np.broadcast_to(self.popularity_, (len(rows), self.n_products_))
            elif a == "popularity_recent":
                out[a] = np.broadcast_to(self.popularity_recent_, (len(rows), self.n_products_))
            elif a == "segment":
                seg = h.customer_segment[rows]
                block = self.segment_norm_[np.maximum(seg, 0)].copy()
                block[seg < 0] = 0.0
                out[a] = block
            elif a == "item_cf":
                out[a] = _row_scale((h.bought[rows] @ h.item_sim).toarray())
            elif a == "content":
                out[a] = _row_scale((h.bought[rows] @ h.text_sim).toarray())
            elif a == "user_cf":
                out[a] = _row_scale((self._neighbour_matrix(rows) @ self.pool_bought_).toarray())
            elif a in LEARNED_SCORERS:
                out[a] = self.learned_block(a, rows)
            elif a == "category":
                counts = self.category_counts_[rows].toarray()
                share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
                block = share[:, np.maximum(h.category_code, 0)]
                block[:, h.category_code < 0] = 0.0
                out[a] = _row_scale(block)
            if a in PERSONAL:
                # Ties (above all the products a personal scorer has no signal for, all 0)
                # are broken by popularity, not by column order: a thousandth of the
                # popularity scale moves nothing the scorer tells apart.
                out[a] += np.float32(TIE_BREAK) * self.popularity_
        return out

    def _neighbour_matrix(self, rows) -> sp.csr_matrix:
        """The k most similar pool customers of each row, as a sparse similarity matrix."""
        sims = (self.user_x_[rows] @ self.pool_xt_).toarray()
        own = self.pool_pos_[rows]
        sims[np.flatnonzero(own >= 0), own[own >= 0]] = 0.0
        k = min(self.k_users_, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else np.tile(np.arange(sims.shape[1]), (len(rows), 1))
        val = np.take_along_axis(sims, top, 1)
        r = np.repeat(np.arange(len(rows)), top.shape[1])
        keep = val.ravel() > 0
        return sp.csr_matrix((val.ravel()[keep], (r[keep], top.ravel()[keep])), shape=(len(rows), sims.shape[1]))

    def neighbour_buyers(self, rows, cols) -> np.ndarray:
        """How many of the row's nearest customers bought the product (for the reason)."""
        out = np.zeros(len(rows), np.int64)
        if self._pool_keys is None:
            pb = self.pool_bought_
            self._pool_keys = np.repeat(np.arange(pb.shape[0], dtype=np.int64), np.diff(pb.indptr)) * pb.shape[1] + pb.indices
        for start in range(0, len(rows), 2048):
            r, c = rows[start:start + 2048], cols[start:start + 2048]
            nb = self._neighbour_matrix(r).tocsr()
            nr = np.repeat(np.arange(len(r)), np.diff(nb.indptr))
            hit = lookup(self.pool_bought_, nb.indices, c[nr], self._pool_keys) > 0
            out[start:start + len(r)] = np.bincount(nr[hit], minlength=len(r))
        return out


def _scale(v: np.ndarray) -> np.ndarray:
    m = v.max(initial=0.0)
    return v / m if m > 0 else v


def _row_scale(block: np.ndarray) -> np.ndarray:
    """Each row to max 1, so scorers with different units can be blended per customer."""
    block = block.astype(np.float32, copy=False)
    m = block.max(axis=1, keepdims=True)
    np.divide(block, m, out=block, where=m > 0)
    return block
