"""Replenishment: which products a customer bought before will they buy again in the window.

Only pairs with evidence of re-buying are candidates (:func:`evidence_of`): the customer
bought the product on two days or more, or customers like them re-bought it, "like them"
meaning the product's own buyers (one of them bought it on two days or more) or, for a
product with too few buyers to tell, the buyers of its category (they buy the same product
again). Where nobody ever bought a product twice nothing is suggested for reorder, however
recently it was bought (ratings-like data, where each customer has each item once, gets no
reorder list).

Each candidate pair is described by its own rhythm (inter-purchase interval, days since the
last purchase, times bought) and by the product's across customers (typical cycle, share of
buyers who come back, popularity). The scorers (:data:`REORDER_CANDIDATES`, simplest first):
``repeat_buy`` (the baseline: most-bought first), ``due`` (a Poisson rule on the pair's
interval), and classifiers of P(bought again within the window) learned on backtest windows
(logistic regression, gradient boosting); the customer's own interval is used when they
bought the product on two days or more, else the product's typical cycle (its category's
when nobody re-bought it). Repeat rates are shrunk towards the category's, a category's
towards the catalogue's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ml.pipelines.recommendation.history import History, lookup

REORDER_CANDIDATES = ("repeat_buy", "due", "reorder_lr", "reorder_hgb")
REORDER_BASELINE = "repeat_buy"
LEARNED = ("reorder_lr", "reorder_hgb")
# 50k pairs are plenty for 16 features and keep a fit to a few seconds; a sample of them is
# drawn (seeded) above that.
MAX_TRAINING_PAIRS = 50_000
NO_REBUYING = "nobody has bought the same product on two different days: no reorder suggestions"

REORDER_FEATURES = (
    "log_days", "log_rows", "since_last", "span", "own_interval", "interval", "due_ratio",
    "expected_in_window", "product_repeat_rate", "category_repeat_rate", "product_cycle", "log_buyers",
    "log_recent_buyers", "customer_products", "customer_lines", "customer_since_last",
    "share_of_lines",
)

# Prior strength (in buyers, or pairs for a category) of a repeat rate: a product bought by
# two customers should not get a 100% repeat rate from one of them coming back. A product's
# rate is shrunk towards its category's, a category's towards the whole catalogue's.
REPEAT_PRIOR = 5.0
# A product none of whose buyers bought it twice keeps its category's evidence unless that
# would be unlikely: P(no repeat among its n buyers) = (1 - category rate)^n under 5 %, the
# usual significance level.
CONTRADICTION = 0.05
# Why a pair is a reorder candidate (the ``evidence`` column; the reason names it).
OWN, PRODUCT, CATEGORY = 1, 2, 3


def reorder_frame(history: History, horizon_days: int) -> pd.DataFrame:
    """One row per (customer row, product column) the customer bought before as_of.

    Columns: row, col, the ``REORDER_FEATURES``, the reason's raw figures (days bought,
    interval, days since last purchase, product cycle, the product's buyers and repeat
    buyers, the category's pairs and repeated pairs) and ``rebuy_evidence`` (0: none, else OWN,
    PRODUCT or CATEGORY; see :func:`evidence_of`). Days are whole calendar days;
    ``horizon_days`` is the window the features look ahead to.
    """
    b = history.bought
    rows = np.repeat(np.arange(b.shape[0], dtype=np.int64), np.diff(b.indptr))
    cols = b.indices.astype(np.int64)
    days = history.pair_days.astype(np.float64)
    lines = history.pair_rows.astype(np.float64)
    since = (history.as_of_day - history.pair_last).astype(np.float64)
    span = (history.pair_last - history.pair_first).astype(np.float64)
    repeat = days >= 2
    own = np.where(repeat, span / np.maximum(days - 1, 1), np.nan)

    n_products = history.n_products
    category = history.category_code  # per product, -1 when none
    n_cat = int(category.max(initial=-1)) + 2  # the last code collects the products without one
    product_cat = np.where(category >= 0, category, n_cat - 1)
    pair_cat = product_cat[cols]
    repeaters = np.bincount(cols[repeat], minlength=n_products)
    buyers = history.buyers
    global_rate = repeaters.sum() / max(buyers.sum(), 1.0)
    cat_pairs = np.bincount(pair_cat, minlength=n_cat).astype(np.float64)
    cat_repeats = np.bincount(pair_cat[repeat], minlength=n_cat).astype(np.float64)
    cat_rate = (cat_repeats + REPEAT_PRIOR * global_rate) / (cat_pairs + REPEAT_PRIOR)
    cat_rate[n_cat - 1] = global_rate  # no category: nothing to pool over but the catalogue
    repeat_rate = (repeaters + REPEAT_PRIOR * cat_rate[product_cat]) / (buyers + REPEAT_PRIOR)

    global_cycle = float(np.nanmedian(own)) if repeat.any() else float(horizon_days)
    cat_cycle = np.full(n_cat, global_cycle)
    by_cat = pd.Series(own[repeat]).groupby(pair_cat[repeat]).median()
    cat_cycle[by_cat.index.to_numpy()] = by_cat.to_numpy()
    cat_cycle[n_cat - 1] = global_cycle
    product_cycle = cat_cycle[product_cat]
    cycle = pd.Series(own[repeat]).groupby(cols[repeat]).median()
    product_cycle[cycle.index.to_numpy()] = cycle.to_numpy()

    interval = np.maximum(np.where(repeat, own, product_cycle[cols]), 1.0)
    customer_products = np.diff(b.indptr).astype(np.float64)
    customer_lines = np.bincount(rows, weights=lines, minlength=b.shape[0])
    customer_last = np.full(b.shape[0], np.iinfo(np.int64).min)
    np.maximum.at(customer_last, rows, history.pair_last)
    evidence = evidence_of(repeat, repeaters[cols], buyers[cols], np.where(category[cols] >= 0, pair_cat, -1),
                           cat_pairs, cat_repeats)
    frame = pd.DataFrame({
        "row": rows, "col": cols,
        "log_days": np.log1p(days), "log_rows": np.log1p(lines), "since_last": since,
        "span": span, "own_interval": own, "interval": interval,
        "due_ratio": since / interval,
        "expected_in_window": np.minimum(horizon_days / interval, 30.0),
        "product_repeat_rate": repeat_rate[cols], "category_repeat_rate": cat_rate[pair_cat],
        "product_cycle": product_cycle[cols],
        "log_buyers": np.log1p(buyers[cols]),
        "log_recent_buyers": np.log1p(history.recent_buyers[cols]),
        "customer_products": customer_products[rows], "customer_lines": customer_lines[rows],
        "customer_since_last": (history.as_of_day - customer_last[rows]).astype(np.float64),
        "share_of_lines": lines / customer_lines[rows],
        "days": days, "lines": lines,
        "buyers": buyers[cols], "repeat_buyers": repeaters[cols].astype(np.float64),
        "category": category[cols], "category_pairs": cat_pairs[pair_cat],
        "category_repeat_pairs": cat_repeats[pair_cat], "rebuy_evidence": evidence,
    })
    return frame


def evidence_of(own_repeat, repeat_buyers, buyers, category, cat_pairs, cat_repeats) -> np.ndarray:
    """Why each pair may be suggested for reorder (0: no evidence that it is bought again).

    - OWN: the customer bought the product on two days or more;
    - PRODUCT: customers like them re-bought it, "like them" being the product's own buyers:
      at least one of them bought it on two days or more;
    - CATEGORY: none of its buyers did, but they are too few to tell: customers re-buy the
      same product within its category (a category with a product bought on two days by
      one customer), and its buyers' record does not contradict that (see CONTRADICTION).
      A product without a category has no such fallback.

    Inputs are per pair (``category`` -1 when none) except ``cat_pairs`` / ``cat_repeats``:
    per category code, the pairs and the pairs bought on two days or more.
    """
    out = np.zeros(len(own_repeat), np.int8)
    has_cat = category >= 0
    safe = np.maximum(category, 0)
    rate = np.where(has_cat, cat_repeats[safe] / np.maximum(cat_pairs[safe], 1.0), 0.0)
    thin = has_cat & (rate > 0) & ((1.0 - rate) ** buyers >= CONTRADICTION)
    out[thin] = CATEGORY
    out[repeat_buyers >= 1] = PRODUCT
    out[own_repeat] = OWN
    return out


def has_evidence(frame: pd.DataFrame) -> np.ndarray:
    """Pairs with evidence that the product is bought again (see :func:`evidence_of`)."""
    return frame["rebuy_evidence"].to_numpy() > 0


def not_due(frame: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """Pairs with a rhythm of their own whose next purchase falls well after the window.

    Bought on three days or more gives an interval worth trusting; when even the end of
    the window is less than 3/4 of that interval after the last purchase, the customer
    is not expected to buy it again in the window, whatever a model ranks it.
    """
    rhythm = (frame["days"].to_numpy() >= 3) & np.isfinite(frame["own_interval"].to_numpy())
    return rhythm & (frame["since_last"].to_numpy() + horizon_days < 0.75 * frame["own_interval"].to_numpy())


def expected_days(frame: pd.DataFrame) -> np.ndarray:
    """Whole days from as_of to each pair's expected next purchase (negative: overdue).

    The rule: the last purchase plus the customer's own typical interval for the product (their
    mean gap, ``own_interval``) when they bought it on three days or more; with one gap or none,
    one gap says little, so the product's typical cycle across its buyers (``product_cycle``:
    the median of its repeat buyers' intervals, its category's when nobody re-bought it).
    At least a day after the last purchase.
    """
    own = frame["own_interval"].to_numpy()
    trusted = (frame["days"].to_numpy() >= 3) & np.isfinite(own)
    interval = np.maximum(np.where(trusted, own, frame["product_cycle"].to_numpy()), 1.0)
    return np.rint(interval - frame["since_last"].to_numpy()).astype(np.int64)


def repeat_buy_score(frame: pd.DataFrame) -> np.ndarray:
    """The textbook baseline: most-bought first, the most recent first among ties."""
    return frame["lines"].to_numpy() + 1.0 / (2.0 + frame["since_last"].to_numpy())


def due_score(frame: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """P(at least one purchase in the window) if purchases came as a Poisson process at
    the pair's interval, times the product's repeat rate (a rule, no learning)."""
    rate = 1.0 / frame["interval"].to_numpy()
    return (1.0 - np.exp(-rate * horizon_days)) * frame["product_repeat_rate"].to_numpy()


def reorder_labels(frame: pd.DataFrame, truth: sp.csr_matrix) -> np.ndarray:
    """1 where the pair was bought again in the window (truth: rows x products, binary)."""
    return (lookup(truth, frame["row"].to_numpy(), frame["col"].to_numpy()) > 0).astype(np.int8)



def fit_reorder_model(name: str, frame: pd.DataFrame, random_state: int, max_pairs: int = MAX_TRAINING_PAIRS):
    """A learned scorer (one of ``LEARNED``) fitted on labelled pairs (``frame`` with a
    ``label`` column), or None when the pairs hold one class only (nothing to learn)."""
    if len(frame) == 0 or frame["label"].nunique() < 2:
        return None
    if len(frame) > max_pairs:
        frame = frame.sample(max_pairs, random_state=random_state)
    if name == "reorder_lr":
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    else:
        # Small trees and big leaves: a few thousand positives in a typical window.
        model = HistGradientBoostingClassifier(max_iter=30, learning_rate=0.15, max_leaf_nodes=15,
                                               min_samples_leaf=50, random_state=random_state)
    return model.fit(_features(frame), frame["label"].to_numpy())


def score_reorder(name: str, model, frame: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """Scores of ``frame``'s pairs by candidate ``name`` (``model`` for the learned ones)."""
    if name in LEARNED:
        score = np.empty(len(frame))
        # Predict in slices: the feature matrix of every pair at once is a big copy.
        for start in range(0, len(frame), 200_000):
            part = frame.iloc[start:start + 200_000]
            score[start:start + len(part)] = model.predict_proba(_features(part))[:, 1]
        return score
    if name == "due":
        return due_score(frame, horizon_days)
    return repeat_buy_score(frame)


def _features(frame: pd.DataFrame) -> np.ndarray:
    return frame[list(REORDER_FEATURES)].fillna(-1.0).to_numpy()
