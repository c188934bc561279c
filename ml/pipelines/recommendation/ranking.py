"""Top-n lists under a category cap, and their ranking metrics (part of the recommendation
pipeline): used both to write suggestions and to score candidates on backtest windows.

Lists are arrays of product *columns* (the column order of a ``History``), one row per
customer, best first, ``-1`` padding a list shorter than ``n``. Metrics are plain floats.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ml.pipelines.recommendation.history import History, lookup
from ml.pipelines.schema import visible


def chunks(values, size):
    for start in range(0, len(values), size):
        yield values[start:start + size]


def top_cols(score: np.ndarray, k: int) -> np.ndarray:
    k = min(k, score.shape[1])
    return np.argpartition(-score, k - 1, axis=1)[:, :k]


def top_n(score: np.ndarray, n: int, category: np.ndarray, cap, candidates=False):
    """Best n columns per row, best first, at most ``cap`` per category; -1 pads.

    Looks at the best ``max(5n, n + 40)`` only: enough to fill n under a cap of 1-3
    (without a cap, the best n are enough). ``candidates=True`` also returns those
    (columns, scores), best first.
    """
    rows, n_cols = score.shape
    m = min(n_cols, n if cap is None and not candidates else max(5 * n, n + 40))
    if m < n_cols:
        # On the negated block: numpy's introselect is far slower when many tied zeros sit
        # at the partition point, which the "largest last" form of the call hits.
        part = np.argpartition(-score, m - 1, axis=1)[:, :m]
    else:
        part = np.tile(np.arange(n_cols), (rows, 1))
    val = np.take_along_axis(score, part, 1)
    order = np.argsort(-val, axis=1, kind="stable")
    part = np.take_along_axis(part, order, 1)
    val = np.take_along_axis(val, order, 1)
    valid = np.isfinite(val)
    if cap is not None:
        cat = category[part] if category.ndim == 1 else np.take_along_axis(category, part, 1)
        key = (np.arange(rows)[:, None] * (category.max(initial=0) + 2) + cat + 1).ravel()
        o = np.argsort(key, kind="stable")
        ks = key[o]
        start = np.r_[True, ks[1:] != ks[:-1]]
        idx = np.arange(len(ks))
        seen = np.empty(len(ks), np.int64)
        seen[o] = idx - np.maximum.accumulate(np.where(start, idx, 0))
        valid &= (seen.reshape(rows, m) < cap) | (cat < 0)
    pos = np.cumsum(valid, axis=1) - 1
    keep = valid & (pos < n)
    out = np.full((rows, n), -1, np.int64)
    r, c = np.nonzero(keep)
    out[r, pos[r, c]] = part[r, c]
    if candidates:
        return out, part, val
    return out


def reserve_slots(base: np.ndarray, personal: np.ndarray, n: int, slots: int) -> np.ndarray:
    """Lists whose last ``slots`` of ``n`` places go to a personal scorer: the first
    ``n - slots`` entries of ``base``, then the best entries of ``personal`` not already
    listed, then the rest of ``base`` if ``personal`` runs short (both rows x width arrays of
    columns or table positions, best first, -1 padding). Returns rows x n, -1 padding."""
    keep = min(max(n - slots, 0), base.shape[1])
    merged = np.concatenate([base[:, :keep], personal, base[:, keep:]], axis=1)
    valid = merged >= 0
    # Drop repeats within a row: a value counts only where it first appears.
    earlier = (merged[:, :, None] == merged[:, None, :]) & np.tril(np.ones((merged.shape[1],) * 2, bool), -1)[None]
    valid &= ~earlier.any(axis=2)
    pos = np.cumsum(valid, axis=1) - 1
    take = valid & (pos < n)
    out = np.full((len(merged), n), -1, merged.dtype)
    r, c = np.nonzero(take)
    out[r, pos[r, c]] = merged[r, c]
    return out


def discounted(score: np.ndarray, popularity: np.ndarray, lift: float) -> np.ndarray:
    """A personal score divided by popularity ** lift (popularity scaled to a maximum of 1):
    with lift > 0 the reserved places favour what the scorer finds for this customer over
    what every customer buys anyway. lift 0 leaves the score as it is."""
    if not lift:
        return score
    return np.maximum(score, 1e-6) / np.maximum(popularity, 1e-3) ** np.float32(lift)


def candidate_table(scorer, rows, truth, names, width=50) -> dict:
    """Each customer's candidates: the union of every scorer's top ``width`` products.

    Returns customers x W arrays (W = width x scorers): product columns, per-scorer
    features, an invalid mask (duplicates, excluded products), labels from ``truth``, and
    the size of each customer's truth. A blend of these scorers with positive weights
    takes its top 10 from this union, so weights can be searched without rescoring.
    """
    parts = {"cols": [], "invalid": [], "labels": [], "n_truth": [], "feats": {a: [] for a in names}}
    for chunk in chunks(rows, scorer.chunk_rows_):
        block = scorer.features(chunk, names)
        excluded = scorer.excluded(chunk)
        cand = np.concatenate([top_shared(block[a][0], excluded, width) if block[a].strides[0] == 0
                               else top_cols(np.where(excluded, -np.inf, block[a]), width) for a in names], axis=1)
        cand.sort(axis=1)
        invalid = np.zeros(cand.shape, bool)
        invalid[:, 1:] = cand[:, 1:] == cand[:, :-1]
        invalid |= np.take_along_axis(excluded, cand, 1)
        r = np.repeat(chunk, cand.shape[1])
        parts["labels"].append((lookup(truth, r, cand.ravel()) > 0).reshape(cand.shape))
        parts["cols"].append(cand)
        parts["invalid"].append(invalid)
        parts["n_truth"].append(np.diff(truth.indptr)[chunk])
        for a in names:
            parts["feats"][a].append(np.take_along_axis(np.broadcast_to(block[a], excluded.shape), cand, 1))
    if not parts["cols"]:
        width_all = width * len(names)
        empty = {"cols": np.zeros((0, width_all), np.int64), "invalid": np.zeros((0, width_all), bool),
                 "labels": np.zeros((0, width_all), bool), "n_truth": np.zeros(0, np.int64),
                 "feats": {a: np.zeros((0, width_all), np.float32) for a in names}}
        empty["category"] = np.zeros((0, width_all), np.int64)
        empty["shared_lists"] = np.zeros((0, 10), np.int64)
        empty["popularity"] = scorer.popularity_
        return empty
    table = {k: np.concatenate(v) for k, v in parts.items() if k != "feats"}
    table["feats"] = {a: np.concatenate(v) for a, v in parts["feats"].items()}
    table["category"] = scorer.history_.category_code[table["cols"]]
    table["shared_lists"] = shared_lists(scorer, rows)
    table["popularity"] = scorer.popularity_
    return table


def shared_lists(scorer, rows, n: int = 10) -> np.ndarray:
    """Each customer's popularity top n (the best sellers they have not bought), as product
    columns: what "differs from popularity" compares a list with."""
    out = []
    for chunk in chunks(rows, scorer.chunk_rows_):
        out.append(top_shared(scorer.popularity_, scorer.excluded(chunk), n))
    return np.concatenate(out) if out else np.zeros((0, n), np.int64)


def list_diversity(lists: np.ndarray, category: np.ndarray, shared: np.ndarray | None,
                   popularity: np.ndarray | None = None) -> dict:
    """How personal and varied top-n lists are (``lists``: customers x n product columns, -1
    padding; ``shared``: the same customers' popularity lists, or None; ``popularity``: the
    popularity score per column, so that products tied on it count as the same).

    - ``differs``: the share of customers whose list (as a set, up to ties in popularity) is not
      their popularity list;
    - ``diversity``: intra-list diversity, the mean over lists of the share of pairs of listed
      products in different categories (pairs with a product without a category left out;
      None when no list has such a pair).
    """
    out = {"differs": None, "diversity": None}
    if len(lists) == 0:
        return out
    if shared is not None and len(shared) == len(lists):
        key = np.append(popularity if popularity is not None else np.arange(len(category), dtype=float), -1.0)
        a = np.sort(key[np.where(lists >= 0, lists, -1)], axis=1)
        b = np.sort(key[np.where(shared >= 0, shared, -1)[:, :lists.shape[1]]], axis=1)
        width = min(a.shape[1], b.shape[1])
        out["differs"] = float((a[:, -width:] != b[:, -width:]).any(axis=1).mean()) if width else None
    cat = np.where(lists >= 0, category[np.maximum(lists, 0)], -1)
    known = cat >= 0
    pair = known[:, :, None] & known[:, None, :]
    upper = np.triu(np.ones((cat.shape[1], cat.shape[1]), bool), 1)
    pair &= upper[None]
    differ = (cat[:, :, None] != cat[:, None, :]) & pair
    n_pairs = pair.sum(axis=(1, 2))
    ok = n_pairs > 0
    if ok.any():
        out["diversity"] = float((differ.sum(axis=(1, 2))[ok] / n_pairs[ok]).mean())
    return out


def top_shared(score: np.ndarray, excluded: np.ndarray, k: int) -> np.ndarray:
    """``top_cols`` for a score every row shares (popularity): one sort of the catalogue,
    then each row's first k columns that are not excluded (padded with excluded ones, which
    the candidate table marks invalid)."""
    order = np.argsort(-score, kind="stable")
    n = len(order)
    k = min(k, n)
    length = min(n, 2 * k)
    while True:
        ok = ~excluded[:, order[:length]]
        if length == n or ok.sum(axis=1).min() >= k:
            break
        length = min(n, 2 * length)
    pos = np.cumsum(ok, axis=1) - 1
    take = ok & (pos < k)
    out = np.tile(order[:k], (len(excluded), 1))
    r, c = np.nonzero(take)
    out[r, pos[r, c]] = order[c]
    return out


def stack_tables(tables: list) -> dict:
    """Candidate tables of several windows as one (same scorers, same width)."""
    out = {k: np.concatenate([t[k] for t in tables])
           for k in ("cols", "invalid", "labels", "n_truth", "category", "shared_lists")}
    out["feats"] = {a: np.concatenate([t["feats"][a] for t in tables]) for a in tables[0]["feats"]}
    out["popularity"] = tables[0].get("popularity")
    return out


def table_metrics(table, weights, n, cap, n_products, diversity=False, per_customer=False,
                  reserve: tuple | None = None) -> dict:
    """Metrics of the blend ``weights`` over a candidate table (see ``candidate_table``);
    ``diversity`` adds ``differs`` and ``diversity`` (see :func:`list_diversity`),
    ``per_customer`` each customer's NDCG (an array, for the spread of a difference);
    ``reserve`` = (personal scorer, slots, lift): the last ``slots`` places go to that
    scorer's best products, discounted by popularity ** lift (see :func:`reserve_slots`,
    :func:`discounted`)."""
    score = np.zeros(table["cols"].shape, np.float32)
    for a, w in weights.items():
        score += np.float32(w) * table["feats"][a]
    score[table["invalid"]] = -np.inf
    pos = top_n(score, n, table["category"], cap)
    if reserve is not None:
        personal = discounted(table["feats"][reserve[0]], table["popularity"][table["cols"]], reserve[2])
        personal = np.where(table["invalid"], -np.inf, personal).astype(np.float32)
        pos = reserve_slots(pos, top_n(personal, n, table["category"], None), n, reserve[1])
    ok = pos >= 0
    safe = np.maximum(pos, 0)
    hits = np.take_along_axis(table["labels"], safe, 1) & ok
    lists = np.where(ok, np.take_along_axis(table["cols"], safe, 1), -1)
    metrics = metrics_from_hits(hits, table["n_truth"], n, len(np.unique(lists[ok])), n_products)
    if per_customer:
        metrics["per_customer"] = ndcg_per_customer(hits, table["n_truth"], n)
    if diversity:
        metrics.update(list_diversity(lists, category_of(table), table.get("shared_lists"), table.get("popularity")))
    return metrics


def category_of(table) -> np.ndarray:
    """Product column -> category code, from a candidate table's own (cols, category)."""
    size = int(table["cols"].max(initial=-1)) + 1
    out = np.full(max(size, 1), -1, np.int64)
    out[table["cols"].ravel()] = table["category"].ravel()
    return out


def ndcg_per_customer(hits, n_truth, k) -> np.ndarray:
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * disc[: hits.shape[1]]).sum(axis=1)
    ideal = np.cumsum(disc)[np.clip(n_truth, 1, k) - 1]
    return np.where(n_truth > 0, dcg / ideal, 0.0)


def metrics_from_hits(hits, n_truth, k, n_recommended, catalogue_size) -> dict:
    """P@k, R@k, NDCG@k (binary gains, ideal DCG over min(|truth|, k)), hit rate, coverage."""
    if len(hits) == 0:
        return {"precision": 0.0, "recall": 0.0, "ndcg": 0.0, "hit_rate": 0.0, "coverage": 0.0, "customers": 0}
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * disc[: hits.shape[1]]).sum(axis=1)
    ok = n_truth > 0
    ideal = np.cumsum(disc)[np.clip(n_truth, 1, k) - 1]
    return {
        "precision": float((hits.sum(axis=1) / k).mean()),
        "recall": float(np.where(ok, hits.sum(axis=1) / np.maximum(n_truth, 1), 0).mean()),
        "ndcg": float(np.where(ok, dcg / ideal, 0).mean()),
        "hit_rate": float(hits.any(axis=1).mean()),
        "coverage": float(n_recommended / max(catalogue_size, 1)),
        "customers": int(len(hits)),
    }


def ranking_metrics(lists: np.ndarray, truth: sp.csr_matrix, k: int, catalogue_size: int) -> dict:
    """P@k, R@k, NDCG@k (binary gains), hit rate and coverage of top-k lists.

    ``lists``: customers x k product columns, -1 padding; ``truth``: customers x products.
    Precision divides by k even for shorter lists. Plain floats (JSON-able).
    """
    n = lists.shape[0]
    if n == 0:
        return metrics_from_hits(np.zeros((0, k), bool), np.zeros(0, np.int64), k, 0, catalogue_size)
    truth = truth.tocsr()
    truth.sort_indices()
    rows = np.repeat(np.arange(n), lists.shape[1])
    cols = lists.ravel()
    hit = (lookup(truth, rows, np.maximum(cols, 0)) > 0) & (cols >= 0)
    hit = hit.reshape(n, -1)[:, :k]
    recommended = np.unique(cols[cols >= 0])
    return metrics_from_hits(hit, np.diff(truth.indptr), k, len(recommended), catalogue_size)


def rank_frame(frame, score, n, category, cap) -> pd.DataFrame:
    """Top n rows of a (row, col) frame per customer row, best first, category-capped."""
    frame = frame.assign(score=score)
    frame = frame.sort_values(["row", "score"], ascending=[True, False], kind="stable")
    if cap is not None:
        cat = category[frame["col"].to_numpy()]
        seen = frame.groupby([frame["row"].to_numpy(), cat]).cumcount().to_numpy()
        frame = frame.loc[(seen < cap) | (cat < 0)]
    frame = frame.assign(rank=frame.groupby("row").cumcount() + 1)
    return frame.loc[frame["rank"] <= n]


def frame_top_n(frame, score, rows, n, category, cap) -> np.ndarray:
    """Lists (rows x n product columns, -1 padding) from scored (row, col) pairs, for the
    given customer rows; pairs of other rows are ignored."""
    ranked = rank_frame(frame[["row", "col"]], np.asarray(score), n, category, cap)
    out = np.full((len(rows), n), -1, np.int64)
    pos = pd.Index(rows).get_indexer(ranked["row"].to_numpy())
    ok = pos >= 0
    out[pos[ok], ranked["rank"].to_numpy()[ok] - 1] = ranked["col"].to_numpy()[ok]
    return out


def window_purchases(interactions, cut, last_day):
    """Purchases with a product in (cut, last_day] (days, inclusive), or None when there is
    no such purchase or none with a product on or before the cut."""
    buys = interactions.loc[(interactions["type"] == "purchase") & (interactions["product_id"] >= 0)]
    seen = visible(buys, cut)
    before = seen.any()
    window = buys.loc[~seen & visible(buys, last_day)]
    if not before or window.empty:
        return None
    return window[["customer_id", "product_id"]]


def truth_matrix(history: History, window: pd.DataFrame | None) -> sp.csr_matrix:
    """Binary customer row x product column matrix of the window's purchases (customers and
    products of the history only)."""
    if window is None:
        return sp.csr_matrix(history.bought.shape, dtype=np.float32)
    r = pd.Index(history.customer_ids).get_indexer(window["customer_id"].to_numpy())
    c = pd.Index(history.product_ids).get_indexer(window["product_id"].to_numpy())
    ok = (r >= 0) & (c >= 0)
    m = sp.csr_matrix((np.ones(ok.sum(), np.float32), (r[ok], c[ok])), shape=history.bought.shape)
    m.sum_duplicates()
    m.data[:] = 1.0
    m.sort_indices()
    return m


def stable_unit(ids, salt: int) -> np.ndarray:
    """A number in [0, 1) per id, fixed for a given id and salt (splitmix64): picks and
    halves customers the same way whatever the row order or the rest of the data."""
    with np.errstate(over="ignore"):  # the mixing wraps around 2**64 on purpose
        x = np.asarray(ids, dtype=np.int64).astype(np.uint64) + np.uint64(salt) * np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


# --- the recommender's frames and its published lists' diversity ---------------------------

def published_diversity(stats, n_active) -> dict:
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


def object_column(values, n=None) -> pd.Series:
    """An object column: strings and dicts stay shared Python objects (a repeated reason
    is stored once) instead of being copied into an Arrow string column."""
    if n is not None:
        return pd.Series(np.full(n, values, dtype=object), dtype=object)
    return pd.Series(values, dtype=object)


def empty_pairs() -> pd.DataFrame:
    return pd.DataFrame({"row": np.zeros(0, np.int64), "customer_id": np.zeros(0, np.int64),
                         "rank": np.zeros(0, np.int64), "col": np.zeros(0, np.int64),
                         "score": np.zeros(0), "alg": np.zeros(0, np.int64)})


def empty_frame() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": np.zeros(0, np.int64), "kind": pd.Series([], dtype=object),
                         "rank": np.zeros(0, np.int64), "product_id": np.zeros(0, np.int64),
                         "score": np.zeros(0), "reason": pd.Series([], dtype=object),
                         "evidence": pd.Series([], dtype=object), "basis": pd.Series([], dtype=object)})
