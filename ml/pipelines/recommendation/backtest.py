"""Choosing the recommenders on rolling origins (part of the recommendation pipeline).

The windows come from :func:`ml.pipelines.backtest.plan_backtest` (the last 2-3 windows of
``W`` days that the history allows). On each origin ``cut`` the candidates are fitted on the
history up to the cut and scored on the purchases of the ``W`` days after it:

- **cross-sell** (target ``cross_sell``): NDCG@10 on the products new to the customer
  (the window's purchases of products they had not bought before the cut), over customers
  with such a purchase. Candidates: each scorer (the personal ones first, popularity, the
  baseline, and the other shared lists last), each with and without the per-category cap, and
  a blend of the best four. Each candidate's coverage, share of lists unlike the customer's
  popularity list and intra-list diversity are recorded with its scores. EASE's penalty is
  chosen before, on the learning half of the latest origin (:func:`tune_ease`).
- **reorder** (target ``reorder``): NDCG@10 on the re-bought products (the window's
  purchases of products they had bought before), over customers with such a purchase.
  Candidates: repeat_buy (the baseline), the ``due`` rule and the learned classifiers, each
  with and without the cap; only pairs with evidence of re-buying are ranked.

Customers are picked (at most ``max_customers`` per origin) and split into two halves by a
hash of their id, so the same data gives the same customers, halves and choice whatever the
row order. Half A teaches what has to be learned (the blend weights, pooled over the
origins; the reorder classifiers, on that origin); every candidate is scored on half B.

The choice is :func:`ml.pipelines.backtest.choose` (first in the given order, one-standard-error
rule on the per-origin differences): the unconstrained list comes before the capped one, so the
cap is kept only where it wins beyond the spread, and for cross-sell the personal candidates
come before the lists every customer shares. When a shared list (popularity) is the best, the
same list with its last 1-3 of 10 places kept for one of the two best personal scorers
(:func:`reserved_variants`) is scored too, and the product's preference for personal lists
decides: among the candidates within the spread of the best, the personal scorers first, then
these lists, the most personal (highest coverage on the backtest) first, then the shared
lists. The blend is kept only when it beats the best candidate on every origin.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ml.pipelines.backtest import BacktestPlan, choose
from ml.pipelines.recommendation.factors import EASE_LAMBDAS
from ml.pipelines.recommendation.history import History, lookup
from ml.pipelines.recommendation.ranking import (
    candidate_table,
    chunks,
    frame_top_n,
    ranking_metrics,
    stable_unit,
    stack_tables,
    table_metrics,
    top_n,
    truth_matrix,
)
from ml.pipelines.recommendation.reorder import (
    LEARNED,
    MAX_TRAINING_PAIRS,
    REORDER_BASELINE,
    REORDER_CANDIDATES,
    fit_reorder_model,
    has_evidence,
    not_due,
    reorder_frame,
    reorder_labels,
    score_reorder,
)
from ml.pipelines.recommendation.scorers import POPULAR

CROSS_BASELINE = "popularity"
CROSS_METRIC = "NDCG@10 on products new to the customer"
REORDER_METRIC = "NDCG@10 on re-bought products"
# Weights tried for a scorer added to the blend, relative to the first scorer's 1.0:
# a coarse log grid, so the search stays a few dozen evaluations.
BLEND_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
# Scorers the blend search considers: the best four on their own (see ``search_blend``).
BLEND_SCORERS = 4
# Shared lists with places kept for personal scorers (see ``reserved_variants``): at most 30 %
# of the list, for the two best personal scorers.
RESERVE_SHARE = 0.3
RESERVE_SCORERS = 2
# Popularity discounts tried on the reserved places (see ranking.discounted): none, its square
# root, all of it.
RESERVE_LIFTS = (0.0, 0.5, 1.0)
# Salts of the customer hash: one picks the customers scored, one splits them in halves.
PICK_SALT, HALF_SALT = 1, 2


def variant_name(algorithm: str, cap) -> str:
    """A candidate's name: the scorer, and its category cap when it has one."""
    return algorithm if cap is None else f"{algorithm}, {cap} per category"


@dataclass
class Origin:
    """What one backtest origin keeps once its history is dropped."""

    cut: pd.Timestamp
    n_products: int
    category_code: np.ndarray
    table_a: dict | None = None        # cross-sell candidate tables (see candidate_table)
    table_b: dict | None = None
    cross_customers: int = 0
    train: pd.DataFrame | None = None  # reorder: labelled evidence pairs of half A (sample)
    test: pd.DataFrame | None = None   # reorder: labelled evidence pairs of half B
    test_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    test_truth: sp.csr_matrix | None = None  # re-bought products of test_rows
    scores: dict = field(default_factory=dict)


def collect_origin(cut, history: History, scorer, window: pd.DataFrame | None, names, *, window_days: int,
                   max_scored: int, max_learning: int, random_state: int) -> Origin:
    """The cross-sell tables and reorder pairs of one origin (``window``: the purchases with a
    product in the ``window_days`` after ``cut``; see ``ranking.window_purchases``).

    At most ``max_scored`` customers of half B are scored per target, and the blend learns
    from at most ``max_learning`` customers of half A (the caller shares its budget out
    between the origins: the search costs in proportion to all of them together).
    """
    origin = Origin(cut=cut, n_products=history.n_products, category_code=history.category_code)
    truth_any, rebought, truth_new = window_truths(history, window)
    half_b = halves(history, random_state)

    def picked(mask, most):
        return pick_rows(history, mask, most, random_state)

    has_new = np.diff(truth_new.indptr) > 0
    rows_a, rows_b = picked(has_new & ~half_b, max_learning), picked(has_new & half_b, max_scored)
    if len(rows_a) and len(rows_b):
        origin.table_a = candidate_table(scorer, rows_a, truth_new, names)
        origin.table_b = candidate_table(scorer, rows_b, truth_new, names)
        origin.cross_customers = int(len(rows_b))

    frame = reorder_frame(history, window_days)
    r, c = frame["row"].to_numpy(), frame["col"].to_numpy()
    usable = has_evidence(frame) & history.active[c] & ~(lookup(history.blocked, r, c) > 0)
    usable &= ~not_due(frame, window_days)
    frame = frame.loc[usable]
    frame = frame.assign(label=reorder_labels(frame, truth_any))
    in_b = half_b[frame["row"].to_numpy()]
    train = frame.loc[~in_b]
    if len(train) > MAX_TRAINING_PAIRS:
        train = train.sample(MAX_TRAINING_PAIRS, random_state=random_state)
    origin.train = train
    test_rows = picked(half_b & (np.diff(rebought.indptr) > 0), max_scored)
    origin.test_rows = test_rows
    origin.test_truth = rebought[test_rows]
    origin.test = frame.loc[in_b & np.isin(frame["row"].to_numpy(), test_rows)]
    return origin


def window_truths(history: History, window) -> tuple:
    """(all, re-bought, new) binary matrices of the window's purchases, rows x products."""
    truth_any = truth_matrix(history, window)
    rebought = truth_any.multiply(history.bought).tocsr()
    rebought.eliminate_zeros()
    truth_new = (truth_any - rebought).tocsr()
    truth_new.eliminate_zeros()
    truth_new.sort_indices()
    return truth_any, rebought, truth_new


def halves(history: History, random_state: int) -> np.ndarray:
    """True for the customers of half B (scored), False for half A (learning), by id hash."""
    return stable_unit(history.customer_ids, random_state * 16 + HALF_SALT) >= 0.5


def pick_rows(history: History, mask, most: int, random_state: int) -> np.ndarray:
    """At most ``most`` of the rows in ``mask``, picked by a hash of the customer id."""
    rows = np.flatnonzero(mask)
    if len(rows) > most:
        pick = stable_unit(history.customer_ids[rows], random_state * 16 + PICK_SALT)
        rows = np.sort(rows[np.argsort(pick, kind="stable")[:most]])
    return rows


def tune_ease(scorer, history: History, window, *, n: int, max_rows: int, random_state: int) -> dict | None:
    """EASE's lambda (relative to the mean diagonal of X'X, one of ``EASE_LAMBDAS``) by NDCG@n
    on products new to the customer, for the learning half's customers of one origin (the
    latest). The best lambda's model is left in ``scorer`` (no second solve). Returns
    {"lambda": relative value, "penalty": absolute, "scores": {lambda: NDCG}}, or None when no
    customer of the learning half bought a new product in the window."""
    if "ease" not in scorer.available():
        return None
    _, _, truth_new = window_truths(history, window)
    rows = pick_rows(history, (np.diff(truth_new.indptr) > 0) & ~halves(history, random_state), max_rows,
                     random_state)
    if len(rows) == 0:
        return None
    gram = scorer.ease_gram()
    scores, best = {}, None
    for lam in EASE_LAMBDAS:
        model = gram.solve(lam)
        lists = []
        for chunk in chunks(rows, scorer.chunk_rows_):
            score = model.block(history.bought[chunk])
            score[scorer.excluded(chunk)] = -np.inf
            lists.append(top_n(score, n, history.category_code, None))
        ndcg = ranking_metrics(np.concatenate(lists), truth_new[rows], n, history.n_products)["ndcg"]
        scores[str(lam)] = float(ndcg)
        if best is None or ndcg > best[0]:
            best = (ndcg, lam, model)
        del model
    scorer.set_ease_penalty(best[1])
    scorer.learned_["ease"] = best[2]
    return {"lambda": float(best[1]), "penalty": float(best[2].penalty), "scores": scores,
            "products": int(len(gram.columns))}


# ---------------------------------------------------------------------- cross-sell
def choose_cross_sell(origins: list, names, caps, *, n: int, forced: str | None = None) -> dict:
    """The cross-sell choice over the origins: {"algorithm", "cap", "weights", "record"}.

    ``names``: the scorers available on every origin; ``caps``: the category caps to try
    (None = no cap), simplest first. ``forced``: an algorithm the caller insists on (its
    cap is still chosen). ``record`` is the JSON of ``backtest.choice["cross_sell"]``.
    """
    scored = [o for o in origins if o.table_b is not None]
    variants = [(a, cap) for a in names for cap in caps]
    if forced is not None:
        variants = [(a, cap) for a, cap in variants if a == forced]
    default = {"algorithm": forced or CROSS_BASELINE, "cap": caps[0], "weights": None}
    if len(scored) < len(origins) or not origins:
        return {**default, "record": None}
    per = {}
    for a, cap in variants:
        metrics = [table_metrics(o.table_b, {a: 1.0}, n, cap, o.n_products, diversity=True) for o in origins]
        per[variant_name(a, cap)] = metrics
        for o, m in zip(origins, metrics):
            o.scores[variant_name(a, cap)] = _score_json(m)
    keys = [variant_name(a, cap) for a, cap in variants]
    values = {k: [m["ndcg"] for m in per[k]] for k in keys}
    pick = _choose_metric(values, keys, CROSS_METRIC, CROSS_BASELINE, caps)
    if pick is None:
        return {**default, "record": None}
    by_name = dict(zip(keys, variants))
    algorithm, cap = by_name[pick["chosen"]]
    out = {"algorithm": algorithm, "cap": cap, "weights": None, "record": pick}
    if forced is not None or len(names) < 2:
        if forced is not None:
            pick["reason"] = f"{pick['chosen']}: the algorithm asked for; " + pick["reason"]
        return out
    reserved = reserved_variants(origins, names, values, pick, by_name, n)
    if reserved:
        for name, (base, cap, _, metrics) in reserved.items():
            values[name] = [m["ndcg"] for m in metrics]
            for o, m in zip(origins, metrics):
                o.scores[name] = _score_json(m)
            by_name[name] = (base, cap)
        # The product's preference: a cross-sell list is meant to be personal. Among the
        # candidates within the spread of the best, the personal scorers come first, then the
        # shared lists with places kept for a personal scorer, the most personal (highest mean
        # coverage) first, then the shared lists.
        personal = [k for k in keys if by_name[k][0] not in POPULAR]
        shared = [k for k in keys if by_name[k][0] in POPULAR]
        order = personal + sorted(reserved, key=lambda k: -np.mean([m["coverage"] for m in reserved[k][3]])) + shared
        pick = _choose_metric(values, order, CROSS_METRIC, CROSS_BASELINE, caps)
        keys = order
        if pick["chosen"] in reserved:
            base, cap, reserve, _ = reserved[pick["chosen"]]
            out = {"algorithm": base, "cap": cap, "weights": None, "record": pick, "reserve": reserve}
            pick["reserve"] = {"scorer": reserve[0], "slots": reserve[1], "lift": reserve[2], "base": base}
            pick["reason"] = pick["reason"].replace("so the simpler candidate is kept",
                                                    "so the more personal list is kept")
            pick["reason"] += (f"; {reserve[1]} of the {n} places go to {reserve[0]}, the best personal "
                               f"scorer here, at no cost beyond the spread")
        else:
            algorithm, cap = by_name[pick["chosen"]]
            out = {"algorithm": algorithm, "cap": cap, "weights": None, "record": pick}
    best_cap = by_name[pick["best"]][1]
    weights = search_blend(stack_tables([o.table_a for o in origins]), names, n, best_cap, origins[0].n_products)
    if len(weights) < 2:
        return out
    blend = [table_metrics(o.table_b, weights, n, best_cap, o.n_products, diversity=True) for o in origins]
    name = variant_name("blend", best_cap)
    for o, m in zip(origins, blend):
        o.scores[name] = _score_json(m)
    blend_values = [m["ndcg"] for m in blend]
    best_values = values[pick["best"]]
    pick["origins"][name] = blend_values
    pick["mean"][name] = float(np.mean(blend_values))
    pick["spread"][name] = float(np.std(np.subtract(blend_values, best_values), ddof=1) / np.sqrt(len(origins))) \
        if len(origins) > 1 else 0.0
    pick["blend_weights"] = {a: float(w) for a, w in weights.items()}
    if all(b > s for b, s in zip(blend_values, best_values)):
        pick["chosen"], pick["is_baseline"] = name, False
        pick.pop("reserve", None)
        pick["reason"] = (f"{name}: beats the best single candidate, {pick['best']}, on every one of the "
                          f"{len(origins)} backtest windows (mean {pick['mean'][name]:.4f} against "
                          f"{pick['mean'][pick['best']]:.4f})")
        return {"algorithm": "blend", "cap": best_cap, "weights": weights, "record": pick}
    pick["reason"] += f"; the blend did not beat {pick['best']} on every window, so it is not used"
    return out


def reserve_name(personal: str, slots: int, n: int, base: str, lift: float = 0.0) -> str:
    """The name of a shared list with ``slots`` of its ``n`` places kept for a personal scorer."""
    scorer = personal if not lift else f"{personal} / {base} ** {lift:g}"
    return f"{scorer} in {slots} of {n} places, {base} in the rest"


def reserved_variants(origins, names, values, pick, by_name, n) -> dict:
    """When the best single candidate is a list every customer shares (popularity), the same
    list with its last 1 .. ``n * RESERVE_SHARE`` places kept for the best products of each of
    the ``RESERVE_SCORERS`` best personal scorers (by mean over the origins, as scored), their
    scores discounted by popularity ** lift for each of ``RESERVE_LIFTS``: a
    customer then sees the best sellers and a few products picked for them. Nothing is learned:
    each variant is scored on the origins' scored half like every other candidate. Returns
    name -> (base algorithm, cap, (personal scorer, slots), per-origin metrics)."""
    best_algorithm, best_cap = by_name[pick["best"]]
    if best_algorithm not in POPULAR:
        return {}
    personal = [a for a in names if a not in POPULAR and variant_name(a, None) in values]
    personal = sorted(personal, key=lambda a: (-np.mean(values[variant_name(a, None)]), names.index(a)))
    out = {}
    for a in personal[:RESERVE_SCORERS]:
        for slots in range(1, max(1, int(n * RESERVE_SHARE)) + 1):
            for lift in RESERVE_LIFTS:
                name = variant_name(reserve_name(a, slots, n, best_algorithm, lift), best_cap)
                metrics = [table_metrics(o.table_b, {best_algorithm: 1.0}, n, best_cap, o.n_products,
                                         diversity=True, reserve=(a, slots, lift)) for o in origins]
                out[name] = (best_algorithm, best_cap, (a, slots, lift), metrics)
    return out


def search_blend(table, names, n, cap, n_products) -> dict:
    """Greedy forward search of blend weights on a candidate table.

    Start from the best single scorer, then repeatedly add the scorer and weight (from a
    coarse grid) that most improves NDCG@n; stop when nothing improves it by 0.1%; then
    nudge each added weight once. Returns {scorer: weight}.
    """
    if len(table["cols"]) == 0:
        return {}

    def ndcg(weights):
        return table_metrics(table, weights, n, cap, n_products)["ndcg"]

    single = {a: ndcg({a: 1.0}) for a in names}
    # Only the best few scorers on their own are worth blending: a scorer far behind rarely
    # adds anything, and each one costs a pass over the grid per round.
    names = sorted(names, key=lambda a: (-single[a], list(single).index(a)))[:BLEND_SCORERS]
    weights = {names[0]: 1.0}
    best = single[names[0]]
    while len(weights) < len(names):
        trial = None
        for a in names:
            if a in weights:
                continue
            for w in BLEND_GRID:
                m = ndcg({**weights, a: w})
                if m > best * 1.001 and (trial is None or m > trial[0]):
                    trial = (m, a, w)
        if trial is None:
            break
        best, a, w = trial
        weights[a] = w
    # One refinement pass: the grid is coarse, nudge each added weight up or down.
    for a in list(weights)[1:]:
        for factor in (0.5, 0.7, 1.4, 2.0):
            m = ndcg({**weights, a: weights[a] * factor})
            if m > best * 1.001:
                best, weights[a] = m, weights[a] * factor
    return weights


# ---------------------------------------------------------------------- reorder
def choose_reorder(origins: list, caps, *, n: int, window_days: int, random_state: int) -> dict:
    """The reorder choice over the origins: {"algorithm", "cap", "record"} (record None when
    no origin had a customer who re-bought a product)."""
    default = {"algorithm": REORDER_BASELINE, "cap": caps[0], "record": None}
    if not origins or any(len(o.test_rows) == 0 for o in origins):
        return default
    values, keys = {}, []
    for o in origins:
        models = {name: fit_reorder_model(name, o.train, random_state) for name in LEARNED}
        for name in REORDER_CANDIDATES:
            if name in LEARNED and models[name] is None:
                score = None
            else:
                score = score_reorder(name, models.get(name), o.test, window_days)
            for cap in caps:
                key = variant_name(name, cap)
                if key not in values:
                    values[key], keys = [], [*keys, key]
                if score is None:
                    values[key].append(None)
                    o.scores[key] = None
                    continue
                lists = frame_top_n(o.test, score, o.test_rows, n, o.category_code, cap)
                m = ranking_metrics(lists, o.test_truth, n, o.n_products)
                values[key].append(m["ndcg"])
                o.scores[key] = _score_json(m)
    pick = _choose_metric(values, keys, REORDER_METRIC, REORDER_BASELINE, caps)
    if pick is None:
        return default
    by_name = {variant_name(a, cap): (a, cap) for a in REORDER_CANDIDATES for cap in caps}
    algorithm, cap = by_name[pick["chosen"]]
    return {"algorithm": algorithm, "cap": cap, "record": pick}


def fit_final_reorder(origins: list, algorithm: str, random_state: int):
    """The chosen learned reorder model, refitted on the labelled pairs of every origin."""
    if algorithm not in LEARNED:
        return None
    pairs = [p for o in origins for p in (o.train, o.test) if p is not None and len(p)]
    if not pairs:
        return None
    return fit_reorder_model(algorithm, pd.concat(pairs, ignore_index=True), random_state,
                             max_pairs=2 * MAX_TRAINING_PAIRS)


# ---------------------------------------------------------------------- records
def _choose_metric(values: dict, order: list, metric: str, baseline: str, caps) -> dict | None:
    """``choose`` on a higher-is-better metric, stored as the metric (not the loss).

    ``baseline`` is an algorithm: each of its cap variants counts as the baseline, the first
    (``caps[0]``) being the one named in the record."""
    losses = {k: [None if v is None else -float(v) for v in values[k]] for k in order}
    picked = choose(losses, order)
    if picked is None:
        return None
    mean = {k: -v for k, v in picked["mean"].items()}
    chosen, best = picked["chosen"], picked["best"]
    k = len(next(iter(values.values())))
    windows = f"{k} backtest window{'s' if k != 1 else ''}"
    if chosen == best:
        reason = f"{best}: the highest mean {metric} over {windows}"
        if len(mean) > 1:
            reason += ", by more than the spread between windows against every simpler candidate"
    else:
        reason = (f"{chosen}: within the spread between the {windows} of the best, {best} "
                  f"(mean {mean[chosen]:.4f} against {mean[best]:.4f}), so the simpler candidate is kept")
    baselines = {variant_name(baseline, cap) for cap in caps}
    return {"metric": metric, "lower_is_better": False, "chosen": chosen, "best": best,
            "baseline": variant_name(baseline, caps[0]), "is_baseline": chosen in baselines,
            "order": picked["order"], "mean": mean, "spread": picked["spread"],
            "origins": {n: [None if v is None else -v for v in vals] for n, vals in picked["origins"].items()},
            "reason": reason}


def _score_json(m: dict) -> dict:
    out = {"NDCG@10": m["ndcg"], "recall@10": m["recall"], "precision@10": m["precision"],
           "hit rate": m["hit_rate"], "coverage": m["coverage"]}
    # Cross-sell only: how personal the lists are (see ranking.list_diversity).
    if "differs" in m:
        out["differs from popularity"] = m["differs"]
        out["intra-list diversity"] = m["diversity"]
    return out


def backtest_record(plan: BacktestPlan, origins: list, choices: dict) -> dict:
    """``run.metrics["backtest"]``: the plan, each origin's customers and scores, the choices."""
    record = plan.to_json()
    for entry, o in zip(record["origins"], origins):
        entry["customers"] = int(o.cross_customers)
        entry["reorder_customers"] = int(len(o.test_rows))
        entry["scores"] = o.scores
    record["choice"] = {k: v for k, v in choices.items() if v is not None}
    return record


def mean_scores(origins: list) -> dict:
    """Each candidate's metrics averaged over the origins (None where not scored on all)."""
    out = {}
    names = [k for o in origins for k in o.scores]
    for name in dict.fromkeys(names):
        rows = [o.scores.get(name) for o in origins]
        if any(r is None for r in rows):
            continue
        out[name] = {m: (None if any(r.get(m) is None for r in rows) else float(np.mean([r[m] for r in rows])))
                     for m in rows[0]}
    return out

