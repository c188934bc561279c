"""The lists of :class:`~ml.pipelines.recommendation.recommender.Recommender` that are not one
personal customer's: popular lists for customers without history, similar products, and the
prospects merged over customer chunks (``Recommender.suggest_chunks``)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ml.pipelines.recommendation.history import History, lookup, top_k_per_row
from ml.pipelines.recommendation.ranking import empty_frame, object_column, top_n
from ml.pipelines.recommendation.reasons import similar_reasons
from ml.pipelines.recommendation.scorers import ALGORITHMS


def cold_lists(model, customer_ids) -> pd.DataFrame:
    """Popular products (overall, recent, the customer's segment) for customers the fitted
    ``model`` has no history of (the columns of ``Recommender.recommend``, basis "popular")."""
    h, scorer = model.history_, model.scorer_
    if len(customer_ids) == 0:
        return empty_frame()
    seg = np.array([h.segment_of.get(int(c), -1) for c in customer_ids], np.int64)
    frames = []
    for s in np.unique(seg):
        parts = {"popularity": scorer.popularity_, "popularity_recent": scorer.popularity_recent_}
        if s >= 0:
            parts["segment"] = scorer.segment_norm_[s]
        score = sum(parts.values()) / len(parts)
        score = np.where(h.active, score, -np.inf)[None, :].astype(np.float32)
        top = top_n(score, model.n, h.category_code, model.cross_cap_)[0]
        top = top[top >= 0]
        contrib = np.column_stack([parts[a][top] for a in parts])
        alg_names = list(parts)
        alg = np.array([ALGORITHMS.index(alg_names[i]) for i in contrib.argmax(axis=1)])
        reasons, evidence, _ = model._explain(np.full(len(top), -1), top, alg, segment=s)
        ids = customer_ids[seg == s]
        frames.append(pd.DataFrame({
            "customer_id": np.repeat(ids, len(top)), "kind": object_column("recommendation", len(ids) * len(top)),
            "rank": np.tile(np.arange(1, len(top) + 1), len(ids)),
            "product_id": np.tile(h.product_ids[top], len(ids)),
            "score": np.tile(score[0, top].astype(float), len(ids)),
            "reason": object_column(np.tile(np.array(reasons, dtype=object), len(ids))),
            "evidence": object_column(np.tile(np.array(evidence, dtype=object), len(ids))),
            "basis": object_column("popular", len(ids) * len(top)),
        }))
    return pd.concat(frames, ignore_index=True)


def similar_products(h: History, n: int) -> pd.DataFrame:
    """Per product, the n active products most bought with it (co-purchase cosine), then the
    closest by text. Columns: product_id, rank, similar_product_id, score, reason, evidence."""
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
    reasons, evidence = similar_reasons(h, frame["src"].to_numpy(), frame["dst"].to_numpy(), co, text)
    return pd.DataFrame({
        "product_id": h.product_ids[frame["src"].to_numpy()], "rank": frame["rank"].to_numpy(np.int64),
        "similar_product_id": h.product_ids[frame["dst"].to_numpy()],
        "score": frame["score"].to_numpy(float), "reason": object_column(reasons), "evidence": object_column(evidence),
    })


def merge_prospects(kept: pd.DataFrame | None, new: pd.DataFrame | None, n: int) -> pd.DataFrame | None:
    """The top ``n`` prospects per product of two prospect frames (product_id, rank, customer_id,
    score, ...), best score first. The top n over all customers is within the union of each
    chunk's own top n, and the stable sort keeps the earlier chunk first on a tie, as one pass
    over every customer in order does."""
    if new is None:
        return kept
    frame = new if kept is None else pd.concat([kept, new], ignore_index=True)
    order = np.lexsort((-frame["score"].to_numpy(), frame["product_id"].to_numpy()))
    frame = frame.iloc[order]
    rank = frame.groupby("product_id").cumcount().to_numpy()
    return frame.loc[rank < n].assign(rank=rank[rank < n] + 1).reset_index(drop=True)
