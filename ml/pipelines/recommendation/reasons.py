"""Why a product is suggested, in words, with the evidence behind it.

A cross-sell suggestion quotes the scorer that contributed most to it (:func:`reason_algorithm`,
then :func:`explain`): the product of theirs it resembles, how many similar customers bought it,
their category, or its popularity. A reorder suggestion quotes the re-buying that let the pair in
(:func:`reorder_reason`); a similar product, the customers who bought both or the text
(:func:`similar_reasons`). Equal reasons share one string and one evidence dict.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.pipelines.recommendation.factors import FACTOR_SCORERS, LEARNED_SCORERS
from ml.pipelines.recommendation.history import History, lookup
from ml.pipelines.recommendation.reorder import OWN, PRODUCT
from ml.pipelines.recommendation.scorers import ALGORITHMS


def explain(h: History, scorer, rows, cols, algs, recent_days: int, segment=None) -> tuple[list, list, list]:
    """Words, evidence and basis for (customer row, product column) pairs of a cross-sell list.

    ``h``: the history the suggestions were made from; ``scorer``: its :class:`Scorer`;
    ``recent_days``: the "recent" popularity window; ``segment``: the segment code of
    customers without a row (``rows`` -1).

    ``algs`` holds the index (in ALGORITHMS) of the scorer that contributed most.
    """
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
            anchor[name] = (sel, *best_anchor(h.bought, sim, rows[sel], cols[sel]))
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
        if not len(sel) or name not in scorer.learned_:
            continue
        first, second = top_contributors(h.bought, rows[sel], cols[sel], scorer.learned(name).weights)
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
        k_users = scorer.k_users_
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
        counts = lookup(scorer.category_counts_, rows[cat_sel], codes).astype(np.int64).tolist()
        for i, code, k in zip(cat_sel.tolist(), codes.tolist(), counts):
            hit = memo.get(("category", code, k))
            if hit is None:
                cat = h.categories[code]
                hit = memo[("category", code, k)] = (
                    f"You often buy {cat} ({k} products so far)" if k > 1 else
                    f"You have bought {cat} before (1 product so far)",
                    {"algorithm": "category", "category": str(cat), "products_bought_in_category": k})
            reasons[i], evidence[i] = hit
    rest = [i for i in range(n) if not reasons[i]]
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


def reason_algorithm(block, weights, names, r, c) -> np.ndarray:
    """Index in ALGORITHMS of the scorer contributing most to each (r, c)."""
    positive = [a for a in names if weights[a] > 0] or list(names)
    contrib = np.column_stack([weights[a] * block[a][r, c] for a in positive]) if len(r) else np.zeros((0, 1))
    best = contrib.argmax(axis=1) if len(r) else np.zeros(0, np.int64)
    # A personal scorer with no signal for this pair should not be quoted as the reason.
    idx = np.array([ALGORITHMS.index(a) for a in positive])
    return idx[best]


def best_anchor(bought, sim, rows, cols):
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


def top_contributors(bought, rows, cols, weights, step: int = 20_000) -> tuple:
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


def text_reason(h: History, src, dst) -> str:
    if h.category_code[src] >= 0 and h.category_code[src] == h.category_code[dst]:
        return f"Similar to {h.names[src]}: same category ({h.categories[h.category_code[src]]})"
    return f"Similar description to {h.names[src]}"


def similar_reasons(h: History, src, dst, co, text) -> tuple[list, list]:
    """Words and evidence for similar-product pairs (product columns ``src`` -> ``dst``):
    bought together by ``co`` customers, else their text similarity ``text``."""
    reasons, evidence = [], []
    for s, d, n_co, t in zip(src, dst, co, text):
        if n_co > 0:
            reasons.append(f"Bought together with {h.names[s]} by {int(n_co)} customers")
            evidence.append({"co_buyers": int(n_co)})
        else:
            reasons.append(text_reason(h, s, d))
            evidence.append({"text_similarity": round(float(t), 4)})
    return reasons, evidence


def reorder_reason(frame: pd.DataFrame, categories) -> tuple[list[str], list[dict]]:
    """Words and evidence for each row of a (selected) reorder frame: the re-buying that let
    the pair in (see :func:`evidence_of`). ``categories``: category names by code."""
    if len(frame) == 0:
        return [], []
    own = np.nan_to_num(frame["own_interval"].to_numpy(), nan=0.0)
    # Rounded in numpy, then each distinct combination of figures is written once: a million
    # rows share a few thousand reasons (and one evidence dict each, treated as read-only).
    keys = np.column_stack([
        frame["rebuy_evidence"].to_numpy().astype(np.int64), frame["days"].to_numpy().astype(np.int64),
        frame["since_last"].to_numpy().astype(np.int64), np.maximum(np.rint(own), 1).astype(np.int64),
        np.maximum(np.rint(frame["product_cycle"].to_numpy()), 1).astype(np.int64),
        frame["repeat_buyers"].to_numpy().astype(np.int64), frame["buyers"].to_numpy().astype(np.int64),
        frame["category"].to_numpy().astype(np.int64), frame["category_repeat_pairs"].to_numpy().astype(np.int64),
        frame["category_pairs"].to_numpy().astype(np.int64)])
    # Hash groups (no sort): the group of each row, and each group's first row.
    inverse = pd.DataFrame(keys).groupby(list(range(keys.shape[1])), sort=False).ngroup().to_numpy()
    first = np.full(int(inverse.max(initial=-1)) + 1, len(inverse), np.int64)
    np.minimum.at(first, inverse, np.arange(len(inverse)))
    words, proofs = [], []
    for key in keys[first].tolist():
        kind, days, since, every_own, cycle, repeaters, buyers, cat, cat_rep, cat_pairs = key
        if kind == OWN:
            hit = (f"You have bought this on {days} days, about every {every_own} days; "
                   f"last bought {since} days ago",
                   {"evidence": "own", "times_bought": days, "interval_days": every_own,
                    "days_since_last": since})
        elif kind == PRODUCT:
            hit = (f"You bought this {since} days ago; {repeaters} of its {buyers} buyers bought it "
                   f"again, about every {cycle} days",
                   {"evidence": "product", "times_bought": days, "days_since_last": since,
                    "repeat_buyers": repeaters, "buyers": buyers, "product_cycle_days": cycle})
        else:
            name = str(categories[cat])
            hit = (f"You bought this {since} days ago; in {name}, customers buy the same product again "
                   f"({cat_rep} of {cat_pairs} purchases were repeated), about every {cycle} days",
                   {"evidence": "category", "times_bought": days, "days_since_last": since,
                    "category": name, "category_repeat_pairs": cat_rep, "category_pairs": cat_pairs,
                    "product_cycle_days": cycle})
        words.append(hit[0])
        proofs.append(hit[1])
    inverse = inverse.ravel().tolist()
    reasons = [words[i] for i in inverse]
    evidence = [proofs[i] for i in inverse]
    return reasons, evidence
