"""Complete Journey recommendations benchmark (see shared/data/completejourney/ANCHORS.md).

Fits the recommender as of 2017-10-03 on the rows up to that day, builds the export's
``recommendations`` and ``reorder`` columns, and scores them exactly per ANCHORS.md:
``recommendations`` in "new" mode, ``reorder`` in "any" mode, top 10.

    .venv/bin/python bench/cj_recs_eval.py [--data-dir DIR] [--fixed-caps] [--synthetic]

``--synthetic`` instead times fit + all suggestions on 100,000 customers x 5,000 products
x 2,000,000 interactions and prints the peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cj_protocol import K, export_lists, recs_split  # noqa: E402
from bench.cj_protocol import score_lists as _score  # noqa: E402
from bench.cj_protocol import skus as _skus  # noqa: E402
from ml.pipelines.recommendation import Recommender  # noqa: E402

DATA_DIR = Path("/work/shared/data/completejourney")
AS_OF = "2017-10-03"
WINDOW_END = "2018-01-01"

ANCHORS = {
    # name: (P, R, NDCG, HR, coverage) any mode, then new mode; None where not reported.
    "random": ((0.0003, 0.0003, 0.0004, 0.0031, 0.6609), (0.0004, 0.0008, 0.0005, 0.0042, 0.6580)),
    "popularity": ((0.0366, 0.0538, 0.0618, 0.2869, 0.0006), (0.0258, 0.0462, 0.0472, 0.2147, 0.0011)),
    "popularity_recent": ((0.0361, 0.0549, 0.0613, 0.2859, 0.0006), (0.0248, 0.0463, 0.0462, 0.2137, 0.0010)),
    "repeat_buy": ((0.0465, 0.0608, 0.0678, 0.3194, 0.2785), None),
    "item_cf": ((0.0129, 0.0227, 0.0180, 0.1157, 0.7709), (0.0125, 0.0149, 0.0204, 0.1058, 0.3585)),
    "user_cf": ((0.0448, 0.0575, 0.0654, 0.3194, 0.0709), (0.0213, 0.0360, 0.0383, 0.1847, 0.0646)),
    "content": ((0.0094, 0.0138, 0.0154, 0.0832, 0.3420), (0.0042, 0.0067, 0.0060, 0.0379, 0.3419)),
    "als": ((0.0417, 0.0499, 0.0613, 0.2911, 0.1629), (0.0135, 0.0215, 0.0215, 0.1253, 0.0707)),
    "bpr": ((0.0292, 0.0322, 0.0457, 0.2120, 0.0267), (0.0082, 0.0115, 0.0121, 0.0747, 0.0292)),
    "itemknn_bm25": ((0.0157, 0.0258, 0.0249, 0.1330, 0.7682), (0.0006, 0.0013, 0.0012, 0.0063, 0.5438)),
    "hybrid": ((0.0472, 0.0595, 0.0673, 0.3246, 0.2741), (0.0222, 0.0357, 0.0355, 0.1889, 0.0605)),
}
METRICS = ("precision", "recall", "ndcg", "hit_rate", "coverage")


def load_frames(data_dir: Path = DATA_DIR, as_of: str = AS_OF):
    """Schema frames of the rows with day <= as_of, only the customers/products in them."""
    t = pd.read_csv(data_dir / "contract" / "interactions.csv", dtype=str)
    t = t.loc[t["occurred_at"].str[:10] <= as_of]
    p = pd.read_csv(data_dir / "contract" / "products.csv", dtype=str, keep_default_na=False)
    p = p.loc[p["sku"].isin(set(t["product_sku"]))].reset_index(drop=True)
    p["product_id"] = np.arange(1, len(p) + 1, dtype=np.int64)
    products = pd.DataFrame({
        "product_id": p["product_id"], "sku": p["sku"], "name": p["name"], "category": p["category"],
        "description": p["description"], "tags": p["tags"],
        "active": p["active"].str.lower().isin(("true", "1", "yes")) | (p["active"] == ""),
        "price": pd.to_numeric(p["price"], errors="coerce"),
    })
    pid = dict(zip(p["sku"], p["product_id"]))
    interactions = pd.DataFrame({
        "customer_id": t["customer_external_id"].astype(np.int64).to_numpy(),
        "product_id": t["product_sku"].map(pid).fillna(-1).astype(np.int64).to_numpy(),
        "type": t["type"].to_numpy(),
        "occurred_at": pd.to_datetime(t["occurred_at"].str[:19]).to_numpy(),
        "quantity": pd.to_numeric(t["quantity"]).fillna(1).astype(np.int64).to_numpy(),
        "amount": pd.to_numeric(t["amount"]).fillna(0.0).to_numpy(),
        "order_ref": t["order_ref"].fillna("").to_numpy(),
    })
    return interactions, products


def score_recommendations(export_df: pd.DataFrame, data_dir=DATA_DIR) -> dict:
    """Score an export (external_id, recommendations, reorder; `;`-separated SKUs).

    ``recommendations`` in new mode and ``reorder`` in any mode, exactly per ANCHORS.md.
    Returns {"recommendations_new": metrics, "reorder_any": metrics,
    "recommendations_any": metrics} with plain floats.
    """
    t = pd.read_csv(Path(data_dir) / "contract" / "interactions.csv", dtype=str,
                    usecols=["customer_external_id", "occurred_at", "product_sku"])
    catalogue, seen, truth = recs_split(t, AS_OF, WINDOW_END)
    recs, reorder = export_lists(export_df, "recommendations"), export_lists(export_df, "reorder")
    return {
        "recommendations_new": _score(recs, truth, seen, True, len(catalogue)),
        "reorder_any": _score(reorder, truth, seen, False, len(catalogue)),
        "recommendations_any": _score(recs, truth, seen, False, len(catalogue)),
    }


def export_frame(rec: Recommender, products: pd.DataFrame) -> pd.DataFrame:
    """The export's recommendations / reorder columns from a fitted recommender."""
    frame = rec.recommend()
    sku = dict(zip(products["product_id"], products["sku"]))
    frame = frame.assign(sku=frame["product_id"].map(sku)).sort_values(["customer_id", "kind", "rank"])
    joined = frame.groupby(["customer_id", "kind"])["sku"].agg(";".join).unstack(fill_value="")
    for kind in ("recommendation", "reorder"):
        if kind not in joined:
            joined[kind] = ""
    return pd.DataFrame({"external_id": joined.index.astype(str),
                         "recommendations": joined["recommendation"].to_numpy(),
                         "reorder": joined["reorder"].to_numpy()})


def run_cj(data_dir: Path, caps) -> None:
    interactions, products = load_frames(data_dir)
    print(f"training rows {len(interactions)}, customers {interactions['customer_id'].nunique()}, "
          f"products {len(products)}")
    for cap in caps:
        t0 = time.perf_counter()
        rec = Recommender(max_per_category=cap, random_state=0).fit(interactions, products, AS_OF)
        t1 = time.perf_counter()
        export = export_frame(rec, products)
        t2 = time.perf_counter()
        scores = score_recommendations(export, data_dir)
        print(f"\n=== max_per_category={cap}: fit {t1 - t0:.1f}s, suggest {t2 - t1:.1f}s")
        print("chosen:", json.dumps(rec.chosen_), f"cap {rec.cross_cap_}", "| reorder:", rec.reorder_chosen_,
              f"cap {rec.reorder_cap_}")
        print("outcome:", rec.outcome_["summary"])
        _backtest_table(rec.backtest_)
        _diversity_table(rec)
        _table("new mode, `recommendations`", scores["recommendations_new"], 1)
        _table("any mode, `reorder`", scores["reorder_any"], 0)
        _table("any mode, `recommendations` (for reference)", scores["recommendations_any"], 0)
        # References for the reorder bar: the anchor's repeat_buy tops short lists up with
        # popular products, which a reorder list (bought before, by definition) cannot.
        combined = export.assign(reorder=[
            ";".join(list(dict.fromkeys(_skus(o) + _skus(r)))[:K])
            for o, r in zip(export["reorder"], export["recommendations"])])
        _table("any mode, reorder then recommendations (reference)",
               score_recommendations(combined, data_dir)["reorder_any"], 0)
        _table("any mode, repeat_buy without the popularity top-up (reference)",
               score_recommendations(_repeat_buy_export(interactions, products), data_dir)["reorder_any"], 0)


def _backtest_table(backtest: dict) -> None:
    """Each candidate's NDCG@10 on every backtest origin, and the choice per target."""
    origins = backtest["origins"]
    print(f"backtest: {backtest['reason']}; cuts " + ", ".join(o["cut"] for o in origins))
    for target, choice in backtest.get("choice", {}).items():
        print(f"  {target} ({choice['metric']}): chosen {choice['chosen']} - {choice['reason']}")
        for name, values in choice["origins"].items():
            cells = " ".join("   -   " if v is None else f"{v:7.4f}" for v in values)
            print(f"    {name:34s} {cells}  mean {choice['mean'].get(name, float('nan')):.4f}")


def _diversity_table(rec: Recommender) -> None:
    """Cross-sell: each candidate's coverage, share of lists unlike popularity's and intra-list
    diversity (means over the backtest windows), then the published lists' (``rec.diversity_``,
    set by ``recommend``)."""
    def pct(v):
        return "   -   " if v is None else f"{100 * v:6.1f}%"

    print("  cross-sell lists: coverage / unlike popularity's / intra-list diversity")
    for name, m in rec.candidates_.items():
        if "differs from popularity" in m:
            print(f"    {name:34s} {pct(m['coverage'])} {pct(m['differs from popularity'])} "
                  f"{pct(m['intra-list diversity'])}")
    if getattr(rec, "diversity_", None) is None:
        rec.recommend()
    d = rec.diversity_
    print(f"    {'published lists':34s} {pct(d['coverage'])} {pct(d['differs from popularity'])} "
          f"{pct(d['intra-list diversity'])}  ({d['customers']} customers, {d.get('products', 0)} products)")


def _repeat_buy_export(interactions, products) -> pd.DataFrame:
    """The anchor's repeat_buy ordering (most-bought first) with no popularity top-up."""
    sku = dict(zip(products["product_id"], products["sku"]))
    g = interactions.groupby(["customer_id", "product_id"]).agg(n=("type", "size"), last=("occurred_at", "max"))
    g = g.reset_index().sort_values(["customer_id", "n", "last"], ascending=[True, False, False])
    g = g.groupby("customer_id").head(K)
    lists = g.groupby("customer_id")["product_id"].agg(lambda s: ";".join(sku[p] for p in s))
    return pd.DataFrame({"external_id": lists.index.astype(str), "recommendations": "", "reorder": lists.to_numpy()})


def _table(title, ours, mode):
    print(f"\n{title} ({ours['households']} households)")
    print(f"  {'method':20s} {'P@10':>7s} {'R@10':>7s} {'NDCG':>7s} {'HR@10':>7s} {'cov':>7s}")
    print(f"  {'THIS (crm)':20s} " + " ".join(f"{ours[m]:7.4f}" for m in METRICS))
    for name, rows in ANCHORS.items():
        row = rows[mode]
        if row is None:
            continue
        flag = "".join("<" if ours[m] <= v else " " for m, v in zip(METRICS[:4], row[:4]))
        print(f"  {name:20s} " + " ".join(f"{v:7.4f}" for v in row) + ("  beats" if flag.strip() == "" else f"  not beaten on [{flag}]"))


def synthetic(n_customers=100_000, n_products=5_000, n_rows=2_000_000, seed=0):
    """Customers with tastes over product groups, Zipf popularity and replenishment."""
    rng = np.random.default_rng(seed)
    n_groups = 50
    group = rng.integers(0, n_groups, n_products)
    pop = 1.0 / np.arange(1, n_products + 1) ** 0.8
    pop = pop[rng.permutation(n_products)]
    taste = rng.integers(0, n_groups, (n_customers, 2))
    per = rng.poisson(n_rows / n_customers, n_customers).clip(1)
    cust = np.repeat(np.arange(n_customers), per)[:n_rows]
    k = len(cust)
    liked = rng.random(k) < 0.6
    g = np.where(liked, taste[cust, rng.integers(0, 2, k)], rng.integers(0, n_groups, k))
    order = np.argsort(group, kind="stable")
    starts = np.searchsorted(group[order], np.arange(n_groups))
    sizes = np.bincount(group, minlength=n_groups)
    # Popularity-weighted draw inside the group: cumulative weights per group.
    prod = np.empty(k, np.int64)
    for gi in range(n_groups):
        sel = np.flatnonzero(g == gi)
        members = order[starts[gi]:starts[gi] + sizes[gi]]
        w = pop[members] / pop[members].sum()
        prod[sel] = members[rng.choice(len(members), len(sel), p=w)]
    start = pd.Timestamp("2024-01-01")
    when = start + pd.to_timedelta(rng.integers(0, 365 * 86400, k), unit="s")
    interactions = pd.DataFrame({
        "customer_id": cust.astype(np.int64) + 1, "product_id": prod + 1, "type": "purchase",
        "occurred_at": when, "quantity": np.ones(k, np.int64), "amount": np.ones(k),
        "order_ref": np.arange(k).astype(str),
    })
    products = pd.DataFrame({
        "product_id": np.arange(1, n_products + 1, dtype=np.int64),
        "sku": [f"S{i}" for i in range(n_products)],
        "name": [f"item {i} group{group[i]}" for i in range(n_products)],
        "category": [f"cat{group[i] % 40}" for i in range(n_products)],
        "description": [f"group{group[i]} kind{i % 97}" for i in range(n_products)],
        "tags": [f"g{group[i]};t{i % 13}" for i in range(n_products)],
        "active": rng.random(n_products) > 0.02, "price": np.ones(n_products),
    })
    return interactions, products


def run_synthetic() -> None:
    interactions, products = synthetic()
    print(f"synthetic: {interactions['customer_id'].nunique()} customers, {len(products)} products, "
          f"{len(interactions)} interactions")
    t0 = time.perf_counter()
    rec = Recommender(random_state=0).fit(interactions, products, "2024-12-30")
    t1 = time.perf_counter()
    out = rec.suggest_all(n_prospects=20, n_similar=10)
    t2 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"fit {t1 - t0:.1f}s, suggestions {t2 - t1:.1f}s, total {t2 - t0:.1f}s, peak RSS {rss:.0f} MB")
    print({k: len(v) for k, v in out.items()}, "chosen:", rec.chosen_, rec.reorder_chosen_)
    print("outcome:", rec.outcome_["summary"])
    _backtest_table(rec.backtest_)
    _diversity_table(rec)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--fixed-caps", action="store_true",
                        help="also run with the category cap fixed at 3 and with no cap (default: chosen on the backtest)")
    parser.add_argument("--synthetic", action="store_true")
    args = parser.parse_args(argv)
    if args.synthetic:
        run_synthetic()
        return
    run_cj(args.data_dir, ("auto", 3, None) if args.fixed_caps else ("auto",))


if __name__ == "__main__":
    main()
