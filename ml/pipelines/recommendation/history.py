"""Purchase history as sparse matrices, cut at ``as_of`` (:func:`ml.pipelines.schema.visible`).

Everything the recommenders learn from is built here once per cut: the customer x product
purchase matrix, per-pair timing (first / last purchase day, distinct purchase days), the
pairs blocked by a refund, product popularity (all-time, recent, per segment) and the
item-item neighbour matrices (co-purchase and text). Nothing dense of size customers x
products is ever built.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.nearest_neighbours import all_pairs_knn
from sklearn.feature_extraction.text import TfidfVectorizer

from ml.pipelines.schema import MONEY_TYPES, as_of_day, visible

EPOCH = pd.Timestamp("1970-01-01")
DAY_NS = 86_400 * 10**9


def day_number(ts) -> np.ndarray:
    """Days since 1970-01-01 (int64) of naive datetimes."""
    values = pd.DatetimeIndex(ts).as_unit("ns").asi8
    return values // DAY_NS


@dataclass
class History:
    """The state learned from one cut; attributes are arrays indexed by row / column codes."""

    as_of: pd.Timestamp
    as_of_day: int
    product_ids: np.ndarray          # (P,) int64, column order
    active: np.ndarray               # (P,) bool
    category_code: np.ndarray        # (P,) int, -1 when the product has no category
    categories: np.ndarray           # category names by code
    names: np.ndarray                # (P,) str
    customer_ids: np.ndarray         # (N,) int64, row order: customers with a purchase
    bought: sp.csr_matrix            # (N, P) float32 1.0 where the pair has a purchase
    pair_rows: np.ndarray            # aligned with bought.data: purchase rows of the pair
    pair_days: np.ndarray            # distinct purchase days of the pair
    pair_first: np.ndarray           # first purchase day (day number)
    pair_last: np.ndarray            # last purchase day (day number)
    blocked: sp.csr_matrix           # (N, P) 1.0 where refunded and not bought again
    buyers: np.ndarray               # (P,) distinct buyers, all time
    recent_buyers: np.ndarray        # (P,) distinct buyers in the last recent_days
    segment_names: np.ndarray        # segment names by code
    customer_segment: np.ndarray     # (N,) segment code, -1 when none
    segment_of: dict = field(default_factory=dict)  # customer_id -> segment code, all given
    segment_buyers: np.ndarray | None = None        # (S, P) distinct buyers per segment
    item_sim: sp.csr_matrix | None = None           # (P, P) co-purchase cosine, top-k per row
    item_cobuyers: sp.csr_matrix | None = None      # same pattern: customers who bought both
    text_sim: sp.csr_matrix | None = None           # (P, P) TF-IDF cosine, top-k per row

    @property
    def n_products(self) -> int:
        return len(self.product_ids)

    def pair_keys(self) -> np.ndarray:
        """row * P + column of every stored pair, sorted (CSR order)."""
        rows = np.repeat(np.arange(self.bought.shape[0], dtype=np.int64), np.diff(self.bought.indptr))
        return rows * self.n_products + self.bought.indices


def purchases_until(interactions: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Purchase and refund rows on or before ``as_of`` (inclusive day), with a product."""
    keep = (
        visible(interactions, as_of)
        & (interactions["product_id"] >= 0).to_numpy()
        & interactions["type"].isin(MONEY_TYPES).to_numpy()
    )
    return interactions.loc[keep, ["customer_id", "product_id", "type", "occurred_at"]]


def catalogue_purchases(interactions: pd.DataFrame, products: pd.DataFrame, as_of) -> pd.DataFrame:
    """Purchase rows on or before ``as_of`` whose product is in ``products``: what every
    recommender learns from (empty when purchases carry no product of the catalogue)."""
    rows = purchases_until(interactions, as_of_day(as_of))
    rows = rows.loc[rows["type"] == "purchase"]
    return rows.loc[rows["product_id"].isin(products["product_id"].to_numpy())]


def build_history(
    interactions: pd.DataFrame,
    products: pd.DataFrame,
    as_of,
    segments: pd.DataFrame | None = None,
    recent_days: int = 30,
    item_neighbours: int = 100,
    text_neighbours: int = 50,
    text_sim: sp.csr_matrix | None = None,
    cobuyers: bool = True,
) -> History:
    """Sparse purchase history of every customer as of ``as_of``.

    ``interactions``: customer_id, product_id, type, occurred_at (see ``schema``); rows after
    ``as_of`` (a date, inclusive) are ignored. ``products``: product_id, name, category,
    description, tags, active. ``segments``: optional customer_id, segment_name.
    """
    as_of = as_of_day(as_of)
    today = int(day_number([as_of])[0])
    prods = products.sort_values("product_id", kind="stable")
    product_ids = prods["product_id"].to_numpy(np.int64)
    n_products = len(product_ids)
    product_index = pd.Index(product_ids)
    cat = prods["category"].fillna("").astype(str).to_numpy()
    cat_codes, cat_names = pd.factorize(cat)
    cat_names = np.asarray(cat_names, dtype=object)
    if "" in set(cat_names):
        empty = int(np.flatnonzero(cat_names == "")[0])
        cat_codes = np.where(cat_codes == empty, -1, cat_codes)

    rows = purchases_until(interactions, as_of)
    col = product_index.get_indexer(rows["product_id"].to_numpy())
    rows = rows.loc[col >= 0].assign(col=col[col >= 0])
    rows = rows.assign(day=day_number(rows["occurred_at"]), ns=pd.DatetimeIndex(rows["occurred_at"]).as_unit("ns").asi8)
    buys = rows.loc[rows["type"] == "purchase"]
    customer_ids = np.unique(buys["customer_id"].to_numpy(np.int64))
    customer_index = pd.Index(customer_ids)
    n_customers = len(customer_ids)

    r = customer_index.get_indexer(buys["customer_id"].to_numpy())
    key = r.astype(np.int64) * n_products + buys["col"].to_numpy()
    day = buys["day"].to_numpy()
    ns = buys["ns"].to_numpy()
    # One sort gives every per-pair statistic: rows, distinct days, first and last day.
    order = np.lexsort((day, key))
    key_s, day_s, ns_s = key[order], day[order], ns[order]
    pair_start = np.flatnonzero(np.r_[True, key_s[1:] != key_s[:-1]])
    pair_end = np.r_[pair_start[1:], len(key_s)]
    pair_key = key_s[pair_start]
    new_day = np.r_[True, (key_s[1:] != key_s[:-1]) | (day_s[1:] != day_s[:-1])]
    pair_days = np.add.reduceat(new_day.astype(np.int64), pair_start) if len(key_s) else np.zeros(0, np.int64)
    pair_rows = (pair_end - pair_start).astype(np.int64)
    pair_first = day_s[pair_start] if len(key_s) else np.zeros(0, np.int64)
    pair_last = day_s[pair_end - 1] if len(key_s) else np.zeros(0, np.int64)
    pair_last_ns = ns_s[pair_end - 1] if len(key_s) else np.zeros(0, np.int64)
    prow, pcol = np.divmod(pair_key, n_products)
    bought = sp.csr_matrix(
        (np.ones(len(pair_key), np.float32), (prow, pcol)), shape=(n_customers, n_products)
    )
    bought.sort_indices()
    # csr_matrix from COO keeps the (row, col) order we built, which is CSR order already.

    # A refund blocks the pair unless the customer bought the product again afterwards.
    refunds = rows.loc[rows["type"] == "refund"]
    rr = customer_index.get_indexer(refunds["customer_id"].to_numpy())
    refunds = refunds.loc[rr >= 0]
    rr = rr[rr >= 0]
    blocked = sp.csr_matrix((n_customers, n_products), dtype=np.float32)
    if len(refunds):
        rkey = rr.astype(np.int64) * n_products + refunds["col"].to_numpy()
        last_refund = pd.Series(refunds["ns"].to_numpy()).groupby(rkey).max()
        pos = np.searchsorted(pair_key, last_refund.index.to_numpy())
        pos_c = np.minimum(pos, max(len(pair_key) - 1, 0))
        found = (len(pair_key) > 0) & (pair_key[pos_c] == last_refund.index.to_numpy())
        later_purchase = found & (pair_last_ns[pos_c] > last_refund.to_numpy())
        bkey = last_refund.index.to_numpy()[~later_purchase]
        br, bc = np.divmod(bkey, n_products)
        blocked = sp.csr_matrix((np.ones(len(bkey), np.float32), (br, bc)), shape=(n_customers, n_products))

    buyers = np.bincount(pcol, minlength=n_products).astype(np.float64)
    recent = pair_last > today - recent_days
    recent_buyers = np.bincount(pcol[recent], minlength=n_products).astype(np.float64)

    segment_names = np.zeros(0, dtype=object)
    customer_segment = np.full(n_customers, -1, np.int64)
    segment_of: dict = {}
    segment_buyers = None
    if segments is not None and len(segments):
        seg_codes, segment_names = pd.factorize(segments["segment_name"].astype(str))
        segment_names = np.asarray(segment_names, dtype=object)
        segment_of = dict(zip(segments["customer_id"].to_numpy(np.int64).tolist(), seg_codes.tolist()))
        customer_segment = pd.Series(segment_of).reindex(customer_ids).fillna(-1).to_numpy(np.int64)
        s = customer_segment[prow]
        ok = s >= 0
        segment_buyers = np.zeros((len(segment_names), n_products), np.float64)
        np.add.at(segment_buyers, (s[ok], pcol[ok]), 1.0)

    history = History(
        as_of=as_of, as_of_day=today, product_ids=product_ids,
        active=prods["active"].fillna(False).astype(bool).to_numpy(),
        category_code=cat_codes.astype(np.int64), categories=cat_names,
        names=prods["name"].fillna("").astype(str).to_numpy(),
        customer_ids=customer_ids, bought=bought, pair_rows=pair_rows, pair_days=pair_days,
        pair_first=pair_first, pair_last=pair_last, blocked=blocked, buyers=buyers,
        recent_buyers=recent_buyers, segment_names=segment_names,
        customer_segment=customer_segment, segment_of=segment_of, segment_buyers=segment_buyers,
    )
    history.item_sim, history.item_cobuyers = item_similarity(bought, item_neighbours, cobuyers)
    history.text_sim = text_sim if text_sim is not None else text_similarity(prods, text_neighbours)
    return history


def top_k_per_row(matrix: sp.csr_matrix, k: int, block_cells: int = 20_000_000) -> sp.csr_matrix:
    """Keep the k largest entries of every row (a product's nearest neighbours).

    Works on row blocks: a dense block and one argpartition when the block is dense
    enough, else a sort of its stored entries by (row, -value).
    """
    matrix = matrix.tocsr()
    n_rows, n_cols = matrix.shape
    counts = np.diff(matrix.indptr)
    if counts.max(initial=0) <= k:
        return matrix
    step = max(1, block_cells // max(n_cols, 1))
    rows_out, cols_out, vals_out = [], [], []
    for start in range(0, n_rows, step):
        sub = matrix[start:start + step]
        if sub.nnz == 0:
            continue
        if sub.nnz > 0.05 * sub.shape[0] * n_cols:
            dense = sub.toarray()
            kk = min(k, n_cols)
            top = np.argpartition(-dense, kk - 1, axis=1)[:, :kk] if kk < n_cols else np.tile(np.arange(n_cols), (dense.shape[0], 1))
            val = np.take_along_axis(dense, top, 1)
            r = np.repeat(np.arange(dense.shape[0]), top.shape[1])
            keep = val.ravel() != 0
            rows_out.append(start + r[keep])
            cols_out.append(top.ravel()[keep])
            vals_out.append(val.ravel()[keep])
        else:
            r = np.repeat(np.arange(sub.shape[0]), np.diff(sub.indptr))
            order = np.lexsort((-sub.data, r))
            rank = np.arange(len(order)) - sub.indptr[r[order]]
            sel = order[rank < k]
            rows_out.append(start + r[sel])
            cols_out.append(sub.indices[sel])
            vals_out.append(sub.data[sel])
    if not rows_out:
        return sp.csr_matrix(matrix.shape, dtype=matrix.dtype)
    out = sp.csr_matrix((np.concatenate(vals_out), (np.concatenate(rows_out), np.concatenate(cols_out))),
                        shape=matrix.shape)
    out.sort_indices()
    return out


def item_similarity(bought: sp.csr_matrix, k: int, cobuyers: bool = True,
                    block_cells: int = 10_000_000, num_threads: int = 1) -> tuple:
    """Item-item cosine on the purchase matrix, each customer weighted by IDF.

    A customer who bought few products says more about each pair than one who bought
    everything, hence idf = log(1 + P / products bought). Returns the top-k neighbours per
    product and, on the same pattern, the number of customers who bought both (None when
    ``cobuyers`` is False). The product x product gram is built in row blocks and cut to
    its top k at once, so it never exists whole (it can hold tens of millions of entries).
    The neighbours come from implicit's ``all_pairs_knn``; the co-buyer counts are computed
    in row blocks on their pattern.
    """
    n_products = bought.shape[1]
    per_customer = np.diff(bought.indptr)
    idf = np.log1p(n_products / np.maximum(per_customer, 1)).astype(np.float32)
    weighted = (sp.diags(idf) @ bought).tocsr()
    norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=0)).ravel())
    norms[norms == 0] = 1.0
    inv = (1.0 / norms).astype(np.float32)
    # implicit's all-pairs k-nearest-neighbours (compiled) on the IDF-weighted, column-normalised
    # matrix gives the same cosines as a blocked gram + top-k in numpy, faster; k + 1 because
    # a product comes out as its own nearest neighbour, dropped below.
    normalised = (weighted @ sp.diags(inv)).tocsr().astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # implicit's note on OpenBLAS threads: bounded by the caller
        knn = all_pairs_knn(normalised, k + 1, show_progress=False, num_threads=num_threads).tocsr()
    knn.setdiag(0.0)  # a product is not its own neighbour
    knn.eliminate_zeros()
    knn = top_k_per_row(knn.astype(np.float32), k)
    knn.sort_indices()
    bought_t = bought.T.tocsr() if cobuyers else None
    step = max(1, block_cells // max(n_products, 1))
    sims, counts = [], []
    for start in range(0, n_products, step):
        stop = min(start + step, n_products)
        top = knn[start:stop]
        sims.append(top)
        if cobuyers:
            both = (bought_t[start:stop] @ bought).tocsr()
            both.sort_indices()
            t_rows = np.repeat(np.arange(stop - start), np.diff(top.indptr))
            co = lookup(both, t_rows, top.indices)
            counts.append(sp.csr_matrix((co.astype(np.float32), top.indices.copy(), top.indptr.copy()),
                                        shape=top.shape))
    sim = sp.vstack(sims).tocsr() if sims else sp.csr_matrix((n_products, n_products), dtype=np.float32)
    sim.sort_indices()
    if not cobuyers:  # only the reasons quote co-buyer counts; a validation fit skips them
        return sim.astype(np.float32), None
    cob = sp.vstack(counts).tocsr() if counts else sp.csr_matrix(sim.shape, dtype=np.float32)
    cob.sort_indices()
    return sim.astype(np.float32), cob


def product_text(products: pd.DataFrame) -> pd.Series:
    """name + category + description + tags, one string per product."""
    parts = [products[c].fillna("").astype(str) for c in ("name", "category", "description")]
    tags = products["tags"].fillna("").astype(str).str.replace(";", " ", regex=False)
    return parts[0] + " " + parts[1] + " " + parts[2] + " " + tags


def text_similarity(products: pd.DataFrame, k: int, block: int = 2048) -> sp.csr_matrix:
    """Top-k TF-IDF cosine neighbours of every product (products in ``product_id`` order).

    In a catalogue of thousands, terms in more than 20% of it (a department, "Private")
    link everything to everything: dropped so the product-product blocks stay sparse and
    the neighbours mean something. A small catalogue keeps them (IDF is enough there).
    """
    text = product_text(products)
    n = len(text)
    try:
        vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), max_df=0.2 if n >= 1000 else 1.0, min_df=1,
                              max_features=200_000, dtype=np.float32)
        tfidf = vec.fit_transform(text)
    except ValueError:  # empty vocabulary: no text at all
        return sp.csr_matrix((n, n), dtype=np.float32)
    parts = []
    tt = tfidf.T.tocsr()
    for start in range(0, n, block):
        chunk = (tfidf[start:start + block] @ tt).tocsr()
        rows = start + np.repeat(np.arange(chunk.shape[0]), np.diff(chunk.indptr))
        chunk.data[chunk.indices == rows] = 0.0  # a product is not its own neighbour
        chunk.eliminate_zeros()
        parts.append(top_k_per_row(chunk, k))
    out = sp.vstack(parts).tocsr()
    out.sort_indices()
    return out.astype(np.float32)


def _csr_keys(matrix: sp.csr_matrix) -> np.ndarray:
    rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    return rows * matrix.shape[1] + matrix.indices


def lookup(matrix: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray, keys: np.ndarray | None = None) -> np.ndarray:
    """matrix[rows[i], cols[i]] for many pairs at once (0 where absent); CSR sorted."""
    if not matrix.has_sorted_indices:
        matrix = matrix.sorted_indices()
        keys = None
    if keys is None:
        keys = _csr_keys(matrix)
    if len(keys) == 0:
        return np.zeros(len(rows), np.float64)
    q = rows.astype(np.int64) * matrix.shape[1] + cols
    pos = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    return np.where(keys[pos] == q, matrix.data[pos], 0.0)
