"""End-to-end evaluation on the real Complete Journey data, through the product's own commands.

    python bench/completejourney.py [--backend sqlite|postgres] [--floor] [--write]

Protocol of ../shared/data/completejourney/ANCHORS.md: import only the rows on or before
2017-10-03 (with the customers and products that occur in them) with ``import_data``, run
``retrain --kind all --as-of 2017-10-03 --horizon-days 90 --sync``, ``export_insights``, and
score the export on the 90 days after. ``--floor`` exits non-zero when a figure falls below
the naive-rate anchor (forecasts) or the popularity / repeat-buy anchors (suggestions);
``--write`` puts the figures into BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "completejourney"
AS_OF = "2017-10-03"

# The anchors of ANCHORS.md: (metric, best anchor, naive-rate floor, better)
FORECAST_BAR = [
    ("orders_rmse", 3.0006, 3.2336, "lower"),
    ("orders_abs_total_pct_error", 1.43, 3.34, "lower"),
    ("orders_spearman", 0.7430, 0.7339, "higher"),
    ("spend_rmse", 21.35, 29.72, "lower"),
    ("churn_auc", 0.8366, 0.8260, "higher"),
]
# (export column and mode, metric, best anchor, floor). Floors against regressions: the
# popularity anchor for cross-sell in new mode; for reorder in any mode the ALS anchor (the
# best anchors there, repeat_buy and the hybrid, also list products the household never
# bought, which the contract's reorder column may not: see BENCHMARKS.md).
SUGGESTION_BAR = [
    ("recommendations_new", "precision", 0.0258, 0.0258),
    ("recommendations_new", "recall", 0.0463, 0.0462),
    ("recommendations_new", "ndcg", 0.0472, 0.0472),
    ("recommendations_new", "hit_rate", 0.2147, 0.2147),
    ("reorder_any", "precision", 0.0472, 0.0417),
    ("reorder_any", "recall", 0.0608, 0.0499),
    ("reorder_any", "ndcg", 0.0678, 0.0613),
    ("reorder_any", "hit_rate", 0.3246, 0.2911),
]


def prepare(data_dir: Path, out: Path) -> dict:
    """The training files: rows on or before AS_OF, and only the customers/products in them."""
    t = pd.read_csv(data_dir / "contract" / "interactions.csv", dtype=str, keep_default_na=False)
    t = t[t["occurred_at"].str[:10] <= AS_OF]
    customers = pd.read_csv(data_dir / "contract" / "customers.csv", dtype=str, keep_default_na=False)
    products = pd.read_csv(data_dir / "contract" / "products.csv", dtype=str, keep_default_na=False)
    customers = customers[customers["external_id"].isin(set(t["customer_external_id"]))]
    products = products[products["sku"].isin(set(t["product_sku"]))]
    paths = {}
    for name, frame in (("customers", customers), ("products", products), ("interactions", t)):
        paths[name] = out / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    return {"paths": paths, "rows": len(t), "customers": len(customers), "products": len(products)}


def manage_result(env, *args) -> tuple[float, int, str, str]:
    """Run ``manage.py ARGS`` as a subprocess: (wall seconds, exit code, stdout, stderr)."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    return time.monotonic() - started, result.returncode, result.stdout, result.stderr


def manage(env, *args):
    seconds, code, out, err = manage_result(env, *args)
    if code != 0:
        sys.stderr.write(out + err)
        raise SystemExit(f"manage.py {' '.join(args)} failed")
    return seconds, out


def scratch_env(backend: str, tmp: Path, database: str = "crm_bench_cj", **extra) -> dict:
    """The environment of the product's commands on a fresh scratch database.

    ``CRM_VAR_DIR`` in ``tmp``, no automatic retrain after an import, no Redis (runs are
    ``--sync``); SQLite in ``tmp``, or PostgreSQL database ``database`` dropped and created
    (server from ``BENCH_POSTGRES``). ``extra`` adds variables (e.g. ``TIME_ZONE``).
    """
    env = {**os.environ, "CRM_VAR_DIR": str(tmp / "var"), "RETRAIN_AFTER_IMPORT": "false", **extra}
    env.pop("REDIS_URL", None)
    if backend == "postgres":
        base = os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")
        subprocess.run(["psql", f"{base}/postgres", "-q", "-c", f"DROP DATABASE IF EXISTS {database}",
                        "-c", f"CREATE DATABASE {database}"], check=True, capture_output=True)
        env["DATABASE_URL"] = f"{base}/{database}"
    else:
        env["DATABASE_URL"] = f"sqlite:///{tmp / (database + '.sqlite3')}"
    return env


def read_export(path: Path) -> pd.DataFrame:
    """export_insights' CSV with the SKU lists as text and the forecast columns as numbers."""
    frame = pd.read_csv(path, dtype={"external_id": str, "recommendations": str, "reorder": str},
                        keep_default_na=False)
    for column in ("expected_purchases", "expected_spend", "churn_probability", "clv", "expected_refund_rate"):
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def run(backend: str, data_dir: Path) -> dict:
    from bench.cj_forecast_eval import score_forecasts

    with tempfile.TemporaryDirectory(prefix="crm-cj-") as tmp:
        tmp = Path(tmp)
        files = prepare(data_dir, tmp)
        env = scratch_env(backend, tmp, "crm_bench_cj")
        timings = {}
        timings["migrate"], _ = manage(env, "migrate", "--no-input", "-v0")
        timings["import_data"], _ = manage(env, "import_data", *(f"--{k}={v}" for k, v in files["paths"].items()))
        timings["retrain"], retrain_out = manage(env, "retrain", "--kind", "all", "--as-of", AS_OF,
                                                 "--horizon-days", "90", "--sync")
        export = tmp / "insights.csv"
        timings["export_insights"], _ = manage(env, "export_insights", "--out", str(export))
        frame = read_export(export)
    figures = {"forecasts": score_forecasts(frame, data_dir), "timings": timings, "retrain_output": retrain_out,
               "files": {k: v for k, v in files.items() if k != "paths"}}
    try:
        from bench.cj_recs_eval import score_recommendations
    except ImportError:
        figures["suggestions"] = None
    else:
        figures["suggestions"] = score_recommendations(frame, data_dir)
    return figures


def report(figures: dict) -> tuple[str, list[str]]:
    lines, below = [], []
    f = figures["forecasts"]
    lines += ["| forecast metric | ours | best anchor | naive-rate anchor | beats every anchor |",
              "|---|---:|---:|---:|---|"]
    for metric, best, floor, better in FORECAST_BAR:
        ours = f[metric]
        beats = ours < best if better == "lower" else ours > best
        under_floor = round(ours, 4) > floor if better == "lower" else round(ours, 4) < floor
        if under_floor:
            below.append(f"{metric} {ours:.4f} is worse than the naive-rate anchor {floor}")
        lines.append(f"| {metric} | {ours:.4f} | {best} | {floor} | {'yes' if beats else 'no'} |")
    lines.append(f"\nAlso: orders MAE {f['orders_mae']:.4f}, spend MAE {f['spend_mae']:.2f}, spend Spearman "
                 f"{f['spend_spearman']:.4f}, churn Brier {f['churn_brier']:.4f}; {f['n_households']} households.")
    s = figures.get("suggestions")
    if s:
        lines += ["", "| suggestions | metric | ours | best anchor | floor anchor | beats every anchor |",
                  "|---|---|---:|---:|---:|---|"]
        for mode, metric, best, floor in SUGGESTION_BAR:
            ours = s[mode][metric]
            if round(ours, 4) < floor:  # the anchors are given to 4 decimals
                below.append(f"{mode} {metric} {ours:.4f} is below the anchor {floor}")
            lines.append(f"| {mode} | {metric} | {ours:.4f} | {best} | {floor} | {'yes' if ours > best else 'no'} |")
        for mode in ("recommendations_new", "reorder_any"):
            lines.append(f"\n{mode} coverage: {s[mode].get('coverage', float('nan')):.4f}")
    t = figures["timings"]
    lines.append("\nWall time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in t.items()))
    return "\n".join(lines), below


def replace_section(start: str, end: str, section: str, path: Path = ROOT / "BENCHMARKS.md") -> None:
    """Put ``section`` (which begins with ``start`` and ends with ``end``) in place of the one
    between those markers in ``path``, or append it."""
    content = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in content:
        before, rest = content.split(start, 1)
        content = before + section + rest.split(end, 1)[1]
    else:
        content = content.rstrip() + "\n\n" + section + "\n"
    path.write_text(content)


LOAD_AT_START = os.getloadavg()[0]


def code_commit() -> str:
    """The last commit that changed the product's code (ml/, crm/): what the figures measure."""
    return subprocess.run(["git", "log", "-1", "--format=%h", "--", "ml", "crm"], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True).stdout.strip()


def write_benchmarks(text: str, backend: str) -> None:
    start = "<!-- completejourney:start -->"
    end = "<!-- completejourney:end -->"
    section = (f"{start}\n## Complete Journey (real data, end to end)\n\n"
               f"`python bench/completejourney.py --backend {backend} --write` — imports the rows on or before "
               f"2017-10-03 with `import_data`, runs `retrain --kind all --as-of 2017-10-03 --horizon-days 90 --sync` "
               f"and `export_insights`, and scores the export on 2017-10-04 .. 2018-01-01 exactly as "
               f"../shared/data/completejourney/ANCHORS.md does. Product code as of commit "
               f"{code_commit()}; machine: {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}, 1-minute load "
               f"{LOAD_AT_START:.2f} at the start.\n\n{text}\n{end}")
    replace_section(start, end, section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--floor", action="store_true", help="fail when a figure falls below its floor anchor")
    parser.add_argument("--write", action="store_true", help="write the figures into BENCHMARKS.md")
    args = parser.parse_args()
    if not args.data_dir.exists():
        raise SystemExit(f"{args.data_dir} not found: this benchmark needs the shared Complete Journey data")
    figures = run(args.backend, args.data_dir)
    text, below = report(figures)
    print(figures["retrain_output"])
    print(text)
    if args.write:
        write_benchmarks(text, args.backend)
    if args.floor and below:
        print("\nBelow the floor:\n  " + "\n  ".join(below))
        raise SystemExit(1)


if __name__ == "__main__":
    main()
