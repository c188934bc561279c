"""Learned cross-sell scorers on the purchase matrix (part of the recommendation pipeline).

Each scorer is fitted on one cut's customer x product purchase matrix (``History.bought``, and
the purchase rows per pair, ``History.pair_rows``) and gives dense score blocks for a chunk of
customer rows (rows x products, float32), plus, for the reasons, the weight every product a
customer bought carries towards a suggested one (``weights``: the evidence the scorer used).

- ``als``: `implicit`'s AlternatingLeastSquares on BM25-weighted purchase counts, with the
  settings of the shared benchmark's anchor (64 factors, regularization 0.05, 15 iterations,
  BM25 K1 = 100, B = 0.8: the values of implicit's own examples, not tuned here);
- ``bpr``: `implicit`'s BayesianPersonalizedRanking on the binary matrix (64 factors and the
  library's defaults otherwise: learning rate 0.01, regularization 0.01, 100 iterations);
- ``bm25_knn``: `implicit`'s BM25Recommender item-kNN (K = 100 neighbours, the library's
  K1 = 1.2, B = 0.75);
- ``ease``: EASE (Steck 2019), the closed-form item x item linear model
  ``B = I - P / diag(P)``, ``P = (X'X + lambda I)^-1`` (diagonal of B zero), on the products
  with at least two buyers; ``lambda`` is chosen on the backtest (see ``EASE_LAMBDAS``).

Determinism: ALS solves each customer's and product's factors independently (any number of
threads gives the same result for a seed); BPR's stochastic updates race between threads, so
it always runs on one thread. Thread counts are bounded by the caller (``threadpoolctl``) and
passed to implicit as ``num_threads``.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack

from ml.pipelines.recommendation.history import lookup
from ml.pipelines.recommendation.ranking import stable_unit

# EASE needs a dense products x products solve: 4 N^2 bytes per float32 matrix and about N^3
# operations. At 3,000 products that is 36 MB and ~0.3 s per solve on the 2-vCPU benchmark
# machine (4,000: 0.7-1.2 s, measured), so the seven solves of a run (the lambda grid on the
# latest origin, the two other origins, the final fit) stay a few seconds whatever the
# catalogue. Above it the 3,000 products with the most buyers are solved and the rest of the
# catalogue is left to the sparse scorers: beyond its 3,000 best sellers a product has too
# few buyers for the dense model to learn much from.
EASE_MAX_PRODUCTS = 3_000
# lambda as a multiple of the mean number of buyers of the solved products (the diagonal of
# X'X): the penalty then means the same on a base of 2,000 or of 200,000 customers. Steck's
# published values sit between a fraction and a few hundred times that scale, hence a
# decade-spaced grid across it; the backtest's learning half picks one.
EASE_LAMBDAS = (1.0, 10.0, 100.0, 1000.0)
ALS_PARAMS = {"factors": 64, "regularization": 0.05, "iterations": 15}
BM25_ALS = {"K1": 100, "B": 0.8}
BPR_PARAMS = {"factors": 64, "learning_rate": 0.01, "regularization": 0.01, "iterations": 100}
# BPR's cost is iterations x purchase pairs x factors on one thread: above 100,000 pairs per
# fit (~3 s here; 440,000 pairs took 13 s, measured) it is left out of the candidates.
BPR_MAX_PAIRS = 100_000
# ALS learns product factors from at most this many customers (a hashed sample) and solves the
# others' factors against them: a full fit's cost grows with the base (15 iterations over every
# customer: 5 s for 20,000 customers on the shared benchmark machine), a fold-in is one step.
ALS_MAX_CUSTOMERS = 25_000
# Up to this many products, the factor models keep the products x products dot products
# (4 N^2 bytes: 144 MB at 6,000) to look up the reasons' weights instead of recomputing them.
DENSE_WEIGHTS_PRODUCTS = 6_000
KNN_NEIGHBOURS = 100
FACTOR_SCORERS = ("als", "bpr")
LEARNED_SCORERS = ("ease", "bm25_knn", "als", "bpr")


def _quiet(fn, *args, **kwargs):
    # implicit warns that OpenBLAS has its own threads; the caller bounds them with
    # threadpoolctl, and the warning would fill the worker's log on every fit.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


class FactorModel:
    """ALS or BPR: score = user factors . product factors."""

    def __init__(self, kind: str, user_factors: np.ndarray, item_factors: np.ndarray):
        self.kind = kind
        self.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)

    def block(self, rows) -> np.ndarray:
        return self.user_factors[rows] @ self.item_factors.T

    def weights(self, items: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """How close each bought product is to the suggested one in taste space (dot product
        of their factors): the products that pulled the customer's factors towards it."""
        v = self.item_factors
        if len(v) <= DENSE_WEIGHTS_PRODUCTS:
            if getattr(self, "_gram", None) is None:
                self._gram = v @ v.T
            return self._gram[items, targets]
        out = np.empty(len(items), np.float32)
        for start in range(0, len(items), 200_000):
            sl = slice(start, start + 200_000)
            out[sl] = np.einsum("ij,ij->i", v[items[sl]], v[targets[sl]])
        return out


class SimilarityModel:
    """Item-kNN (a sparse products x products similarity) or EASE (a dense one over the
    solved products): score = the customer's purchases times the similarity."""

    def __init__(self, kind: str, n_products: int, sparse_sim=None, dense=None, columns=None, penalty=None):
        self.kind = kind
        self.n_products = n_products
        self.sparse_sim = sparse_sim
        self.dense = dense
        self.columns = columns
        self.penalty = penalty
        if columns is not None:
            self.position = np.full(n_products, -1, np.int64)
            self.position[columns] = np.arange(len(columns))

    def block(self, bought_rows: sp.csr_matrix, solved_rows: sp.csr_matrix | None = None) -> np.ndarray:
        """Scores of customers given their purchase rows (``solved_rows``: the same rows cut to
        the solved columns already, for EASE; cut here when not given)."""
        if self.dense is None:
            return np.asarray((bought_rows @ self.sparse_sim).todense(), dtype=np.float32)
        out = np.zeros((bought_rows.shape[0], self.n_products), np.float32)
        if len(self.columns):
            x = solved_rows if solved_rows is not None else bought_rows[:, self.columns]
            out[:, self.columns] = x @ self.dense
        return out

    def weights(self, items: np.ndarray, targets: np.ndarray) -> np.ndarray:
        if self.dense is None:
            return lookup(self.sparse_sim, items, targets)
        a, b = self.position[items], self.position[targets]
        ok = (a >= 0) & (b >= 0)
        out = np.zeros(len(items), np.float32)
        out[ok] = self.dense[a[ok], b[ok]]
        return out


def factors_for(n_products: int) -> int:
    """64 factors (the anchors' setting), but at most a quarter of the products (and at least
    4): with more factors than that a factor model memorises the purchases it saw instead of
    generalising (on a planted rank-4 matrix of 48 products, 64 factors put 59 % of each
    customer's top 5 in their own group, 12 factors 86 %, 8 factors 95 %; measured)."""
    return int(max(4, min(ALS_PARAMS["factors"], n_products // 4)))


def fit_als(bought: sp.csr_matrix, pair_rows: np.ndarray, random_state: int, n_threads: int) -> FactorModel:
    """ALS on BM25-weighted purchase counts (purchase rows per pair, in ``bought``'s order)."""
    from implicit.cpu.als import AlternatingLeastSquares  # noqa: PLC0415 -- compiled, loaded only to fit
    from implicit.nearest_neighbours import bm25_weight  # noqa: PLC0415

    counts = sp.csr_matrix((np.asarray(pair_rows, np.float32), bought.indices, bought.indptr), shape=bought.shape)
    weighted = bm25_weight(counts, **BM25_ALS).tocsr().astype(np.float32)
    params = {**ALS_PARAMS, "factors": factors_for(bought.shape[1])}
    model = _quiet(AlternatingLeastSquares, **params, random_state=random_state, num_threads=max(int(n_threads), 1))
    n_users = weighted.shape[0]
    if n_users <= ALS_MAX_CUSTOMERS:
        _quiet(model.fit, weighted, show_progress=False)
        return FactorModel("als", model.user_factors, model.item_factors)
    # A big base: the product factors are learned from a hashed sample of customers, then every
    # customer's factors are solved against them (one least-squares step each: "fold-in").
    sample = np.sort(np.argsort(stable_unit(np.arange(n_users), random_state * 16 + 4), kind="stable")
                     [:ALS_MAX_CUSTOMERS])
    _quiet(model.fit, weighted[sample], show_progress=False)
    users = np.empty((n_users, model.item_factors.shape[1]), np.float32)
    for start in range(0, n_users, 50_000):
        ids = np.arange(start, min(start + 50_000, n_users))
        users[ids] = _quiet(model.recalculate_user, np.arange(len(ids)), weighted[ids])
    return FactorModel("als", users, model.item_factors)


def fit_bpr(bought: sp.csr_matrix, random_state: int) -> FactorModel:
    """BPR on the binary matrix, on one thread (see the module docstring: determinism)."""
    from implicit.cpu.bpr import BayesianPersonalizedRanking  # noqa: PLC0415 -- compiled, loaded only to fit

    params = {**BPR_PARAMS, "factors": factors_for(bought.shape[1])}
    model = _quiet(BayesianPersonalizedRanking, **params, random_state=random_state, num_threads=1)
    _quiet(model.fit, bought.astype(np.float32), show_progress=False)
    return FactorModel("bpr", model.user_factors, model.item_factors)


def fit_bm25_knn(bought: sp.csr_matrix, n_threads: int) -> SimilarityModel:
    from implicit.nearest_neighbours import BM25Recommender  # noqa: PLC0415 -- compiled, loaded only to fit

    model = _quiet(BM25Recommender, K=KNN_NEIGHBOURS, num_threads=max(int(n_threads), 1))
    _quiet(model.fit, bought.astype(np.float32), show_progress=False)
    sim = model.similarity.tocsr().astype(np.float32)
    sim.setdiag(0.0)  # a product bought is never suggested: its own weight says nothing
    sim.eliminate_zeros()
    sim.sort_indices()
    return SimilarityModel("bm25_knn", bought.shape[1], sparse_sim=sim)


def ease_columns(buyers: np.ndarray, max_products: int = EASE_MAX_PRODUCTS) -> np.ndarray:
    """The products EASE solves for: bought by two customers or more (a product with one
    buyer co-occurs with one basket only), the ``max_products`` most bought of them (ties
    by column), in column order."""
    cand = np.flatnonzero(buyers >= 2)
    if len(cand) > max_products:
        order = np.lexsort((cand, -buyers[cand]))
        cand = np.sort(cand[order[:max_products]])
    return cand


class EaseGram:
    """X'X over the EASE products of one cut, kept to solve for several lambdas."""

    def __init__(self, bought: sp.csr_matrix, columns: np.ndarray):
        self.n_products = bought.shape[1]
        self.columns = columns
        x = bought[:, columns].astype(np.float32)
        self.gram = (x.T @ x).toarray().astype(np.float32)
        self.scale = float(self.gram.diagonal().mean()) if len(columns) else 1.0

    def solve(self, relative_penalty: float) -> SimilarityModel:
        """EASE's closed form for lambda = relative_penalty x the mean diagonal of X'X."""
        n = len(self.columns)
        penalty = float(relative_penalty) * max(self.scale, 1e-6)
        if n == 0:
            return SimilarityModel("ease", self.n_products, dense=np.zeros((0, 0), np.float32),
                                   columns=self.columns, penalty=penalty)
        a = self.gram.copy()
        a[np.diag_indices(n)] += np.float32(penalty)
        # X'X + lambda I is symmetric positive definite: its inverse from the Cholesky factor
        # (potrf + potri: half the work of a general inverse), in place, lower triangle.
        c, info = lapack.spotrf(a, lower=1, clean=0, overwrite_a=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"EASE: X'X + lambda I is not positive definite (info {info})")
        p, info = lapack.spotri(c, lower=1, overwrite_c=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"EASE: inverse failed (info {info})")
        upper = np.triu_indices(n, 1)
        p[upper] = p.T[upper]
        d = np.diag(p).copy()
        p /= -d[None, :]
        p[np.diag_indices(n)] = 0.0
        # LAPACK hands back a Fortran-ordered array: made C-ordered once here, or every sparse
        # product with it would copy it first.
        return SimilarityModel("ease", self.n_products, dense=np.ascontiguousarray(p, dtype=np.float32),
                               columns=self.columns, penalty=penalty)
