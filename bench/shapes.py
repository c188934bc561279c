"""The product on data of other shapes, made from the Complete Journey sample by transformation.

    python bench/shapes.py [--backend sqlite|postgres] [--shapes a,b,...] [--check] [--write] [--json FILE]

For every shape of bench/shape_builders.py (history of one or 1.5 horizons, no catalogue, no
amounts, refunds, one-time buyers, 20 customers, one category, ratings-like, a seasonal peak,
huge orders, timestamps near midnight in a non-UTC zone, a tiny / a very large catalogue,
dense ratings), end to end through the product's own commands on a fresh scratch database,
exactly as bench/completejourney.py does it: ``migrate``, ``import_data`` of the shape's rows on
or before as_of (with only the customers and products that occur in them, plus products that
occur in no row at all), ``retrain --kind all --as-of … --horizon-days … --sync`` and
``export_insights``; subprocesses with ``CRM_VAR_DIR`` in a temporary folder,
``RETRAIN_AFTER_IMPORT=false`` and no Redis. The run of each kind is read back from the scratch
database with ``manage.py shell -c`` (its status, publication, ``metrics["outcome"]`` and
``metrics["targets"]``).

The export is scored on the shape's own rows after as_of by ANCHORS.md's protocol
(bench/cj_protocol.py), next to anchors trained on the same rows and scored the same way
(bench/shape_anchors.py): naive rate, BG/NBD and LinearRegression (inner backtest) for
forecasts; popularity and item-kNN (and repeat-buy for reorder) for recommendations.
A forecast PASSes when its orders RMSE <= the best anchor's, its churn AUC >= the best
anchor's, and its |orders total % error| <= the largest of the anchors'. ``--check`` exits 1
when a scored shape FAILs; ``--write`` puts the method and the tables into BENCHMARKS.md
(between ``<!-- shapes:start -->`` and ``<!-- shapes:end -->``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import shape_anchors as A  # noqa: E402
from bench.cj_protocol import (  # noqa: E402
    export_lists,
    forecast_truth,
    purchases,
    recs_split,
    row_days,
    score_forecast_export,
    score_lists,
)
from bench.completejourney import DEFAULT_DATA, manage_result, read_export, replace_section, scratch_env  # noqa: E402
from bench.shape_builders import BUILDERS, Shape  # noqa: E402

DATABASE = "crm_bench_shapes"
KINDS = ("segmentation", "forecast", "recommendation")
FORECAST_ANCHORS = ("naive rate", "BG/NBD", "LinearRegression")
# Recommendation anchors per list ("ALS": ANCHORS' als, `implicit` ALS with 64 factors,
# regularization 0.05, 15 iterations on BM25-weighted counts, K1 = 100, B = 0.8).
RECS_ANCHORS = {"recommendations": ("popularity", "item-kNN", "ALS"),
                "reorder": ("popularity", "item-kNN", "repeat-buy", "ALS")}

# Read back by `manage.py shell -c`: the latest run of each kind on the scratch database.
RUNS_SCRIPT = """
import json
from ml.models import TrainingRun
out = {}
for kind in TrainingRun.Kind.values:
    run = TrainingRun.objects.filter(kind=kind).order_by("-id").first()
    if run is None:
        continue
    m = run.metrics if isinstance(run.metrics, dict) else {}
    bt = m.get("backtest") if isinstance(m.get("backtest"), dict) else {}
    choice = bt.get("choice") if isinstance(bt.get("choice"), dict) else {}
    out[kind] = {
        "id": run.pk, "status": run.status, "is_published": run.is_published,
        "chosen_algorithm": run.chosen_algorithm, "error": (run.error or "")[:2000],
        "outcome": m.get("outcome"), "targets": m.get("targets"),
        "backtest": {k: bt.get(k) for k in ("history_days", "window_days", "validated", "reason")},
        "choice": {t: {k: c.get(k) for k in ("metric", "chosen", "baseline", "is_baseline", "reason")}
                   for t, c in choice.items() if isinstance(c, dict)},
        "timings": run.timings,
    }
print("SHAPES-RUNS " + json.dumps(out, default=str))
"""


def load_contract(data_dir: Path) -> dict:
    """The contract frames of the sample, as text (read from ../shared by path, never copied)."""
    read = lambda name: pd.read_csv(data_dir / "contract" / f"{name}.csv", dtype=str,  # noqa: E731
                                    keep_default_na=False)
    return {"customers": read("customers"), "products": read("products"), "interactions": read("interactions")}


def training_files(shape: Shape, out: Path) -> dict:
    """Write the import files of a shape: its rows on or before as_of (local day), the customers
    and products that occur in them (as ANCHORS does: nothing after as_of is stored), and, when
    the shape says so, the products that occur in no row at all (they tell nothing of the future)."""
    t = shape.interactions
    train = t[row_days(t, shape.tz) <= shape.as_of]
    customers = shape.customers[shape.customers["external_id"].isin(set(train["customer_external_id"]))]
    files = {"customers": customers, "interactions": train}
    if shape.products is not None:
        used = set(t["product_sku"]) if "product_sku" in t else set()
        seen = set(train["product_sku"]) if "product_sku" in train else set()
        sku = shape.products["sku"]
        keep = sku.isin(seen) | (~sku.isin(used) if shape.unbought_products else False)
        files["products"] = shape.products[keep]
    paths = {}
    for name in ("customers", "products", "interactions"):
        if name in files:
            paths[name] = out / f"{name}.csv"
            files[name].to_csv(paths[name], index=False)
    return {"paths": paths, "counts": {k: len(v) for k, v in files.items()}}


def read_runs(env: dict) -> dict:
    _, code, out, err = manage_result(env, "shell", "-c", RUNS_SCRIPT)
    for line in out.splitlines():
        if line.startswith("SHAPES-RUNS "):
            return json.loads(line[len("SHAPES-RUNS "):])
    return {"_error": (err or out).strip().splitlines()[-1:] if code else "no runs printed"}


def run_shape(shape: Shape, backend: str) -> dict:
    """Import, retrain, export one shape on a fresh scratch database; the raw results."""
    result = {"shape": shape.name, "note": shape.note, "as_of": shape.as_of, "horizon_days": shape.horizon_days,
              "load_1min": os.getloadavg()[0], "timings": {}, "backend": backend, "code_commit": code_commit()}
    with tempfile.TemporaryDirectory(prefix="crm-shapes-") as tmp:
        tmp = Path(tmp)
        files = training_files(shape, tmp)
        result["imported"] = files["counts"]
        env = scratch_env(backend, tmp, DATABASE, **shape.env)
        t = result["timings"]
        t["migrate"], code, out, err = manage_result(env, "migrate", "--no-input", "-v0")
        if code:
            result["error"] = "migrate failed: " + _last_line(err or out)
            return result
        t["import_data"], code, out, err = manage_result(
            env, "import_data", *(f"--{k}={v}" for k, v in files["paths"].items()))
        result["import_output"] = out.strip().splitlines()[-6:]
        if code:
            result["error"] = "import_data failed: " + _last_line(err or out)
            return result
        t["retrain"], code, out, err = manage_result(
            env, "retrain", "--kind", "all", "--as-of", shape.as_of, "--horizon-days", str(shape.horizon_days),
            "--sync")
        result["retrain_exit"] = code
        result["retrain_lines"] = {line.split(":", 1)[0]: line for line in out.splitlines()
                                   if line.split(":", 1)[0] in KINDS}
        if code:
            result["retrain_error"] = _last_line(err or out)
        result["runs"] = read_runs(env)
        export = tmp / "insights.csv"
        t["export_insights"], code, out, err = manage_result(env, "export_insights", "--out", str(export))
        if code or not export.exists():
            result["export_error"] = _last_line(err or out)
            frame = pd.DataFrame(columns=["external_id", "expected_purchases", "expected_spend",
                                          "churn_probability", "expected_refund_rate", "recommendations", "reorder"])
        else:
            frame = read_export(export)
    result["exported_customers"] = len(frame)
    segments = frame["segment"].fillna("") if "segment" in frame else pd.Series(dtype=str)
    result["segments"] = {str(k): int(v) for k, v in segments.value_counts().items()}
    result["forecast"] = score_forecast_shape(shape, frame)
    result["recommendation"] = score_recs_shape(shape, frame)
    return result


def _last_line(text: str) -> str:
    lines = [x for x in (text or "").strip().splitlines() if x.strip()]
    return lines[-1][:300] if lines else ""


def score_forecast_shape(shape: Shape, export: pd.DataFrame) -> dict:
    """The export's forecasts and the three anchors on the shape's window (ANCHORS protocol)."""
    t = shape.interactions
    scored, truth = forecast_truth(t, shape.as_of, shape.window_end, shape.tz)
    out = {"households": len(scored), "window_orders": float(truth["orders"].sum()),
           "has_amounts": "amount" in t.columns}
    if not scored:
        out["not_scored"] = "no household with a purchase on or before as_of"
        return out
    out["ours"] = score_forecast_export(export, scored, truth)
    p = purchases(t)
    rows = p.assign(day=row_days(p, shape.tz))
    rows = rows[rows["day"] <= shape.as_of]
    anchors, info = {}, {}
    builders = {
        "naive rate": lambda: A.naive_rate(rows, shape.as_of, shape.horizon_days),
        "BG/NBD": lambda: A.bg_nbd(rows, shape.as_of, shape.horizon_days, with_spend=out["has_amounts"]),
        "LinearRegression": lambda: A.linear_regression(rows, shape.as_of, shape.horizon_days),
    }
    for name, build in builders.items():
        try:
            pred = build()
            if isinstance(pred, tuple):
                pred, info[name] = pred
            anchors[name] = score_forecast_export(pred, scored, truth)
        except Exception as exc:  # an anchor that cannot fit this shape is reported, not fatal
            anchors[name] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
    out["anchors"], out["anchor_info"] = anchors, info
    refund = pd.to_numeric(export.get("expected_refund_rate"), errors="coerce") \
        if "expected_refund_rate" in export else None
    out["exported_refund_rate_mean"] = float(refund.mean()) if refund is not None and refund.notna().any() else None
    out["history_refund_share"] = _refund_share(t, shape)
    out["verdict"], out["reasons"] = forecast_verdict(out)
    return out


def _refund_share(t: pd.DataFrame, shape: Shape) -> float | None:
    """Refunded amount / purchased amount on or before as_of (None without amounts)."""
    if "amount" not in t:
        return None
    before = t[row_days(t, shape.tz) <= shape.as_of]
    amount = pd.to_numeric(before["amount"], errors="coerce").fillna(0)
    bought = amount[before["type"] == "purchase"].sum()
    return float(amount[before["type"] == "refund"].sum() / bought) if bought > 0 else None


def forecast_verdict(f: dict) -> tuple[str, list]:
    """PASS / FAIL / not scored, and the reasons (figures compared at 4 decimals)."""
    if f.get("not_scored"):
        return "not scored", [f["not_scored"]]
    if f["window_orders"] == 0:
        return "not scored", ["no purchase in the window"]
    anchors = {k: v for k, v in f["anchors"].items() if "error" not in v}
    if not anchors:
        return "not scored", ["no anchor could be fitted"]
    ours, reasons, failed = f["ours"], [], False

    def r4(v):
        return None if v is None else round(v, 4)

    best_rmse = min(r4(a["orders_rmse"]) for a in anchors.values())
    if r4(ours["orders_rmse"]) > best_rmse:
        failed = True
        reasons.append(f"orders RMSE {ours['orders_rmse']:.4f} > best anchor {best_rmse:.4f}")
    aucs = [r4(a["churn_auc"]) for a in anchors.values() if a["churn_auc"] is not None]
    if ours["churn_auc"] is None or not aucs:
        reasons.append("churn AUC not defined (one class only)")
    elif r4(ours["churn_auc"]) < max(aucs):
        failed = True
        reasons.append(f"churn AUC {ours['churn_auc']:.4f} < best anchor {max(aucs):.4f}")
    totals = [r4(a["orders_abs_total_pct_error"]) for a in anchors.values()
              if a["orders_abs_total_pct_error"] is not None]
    if totals and r4(ours["orders_abs_total_pct_error"]) > max(totals):
        failed = True
        reasons.append(f"abs orders total % {ours['orders_abs_total_pct_error']:.2f} > largest anchor's {max(totals):.2f}")
    missing = [k for k, v in f["anchors"].items() if "error" in v]
    if missing:
        reasons.append("anchors not fitted: " + ", ".join(f"{k} ({f['anchors'][k]['error']})" for k in missing))
    return ("FAIL" if failed else "PASS"), reasons


def score_recs_shape(shape: Shape, export: pd.DataFrame) -> dict:
    """The export's lists and the anchors' on the shape's split (ANCHORS protocol):
    ``recommendations`` in new mode, ``reorder`` in any mode."""
    t = shape.interactions
    catalogue, seen, truth = recs_split(t, shape.as_of, shape.window_end, shape.tz)
    reorder_lists = export_lists(export, "reorder")
    out = {"catalogue": len(catalogue), "households_any": len(truth),
           "reorder_lists": sum(1 for v in reorder_lists.values() if v),
           "recommendation_lists": sum(1 for v in export_lists(export, "recommendations").values() if v)}
    if not catalogue or not truth:
        out["not_scored"] = "no product catalogue" if not catalogue else "no catalogue purchase in the window"
        return out
    p = purchases(t)
    p = p[p["product_sku"].fillna("") != ""]
    rows = p.assign(day=row_days(p, shape.tz))
    rows = rows[rows["day"] <= shape.as_of]
    households = sorted(truth)
    size = len(catalogue)
    anchor_lists = {
        "recommendations": {"popularity": lambda: A.popularity_lists(rows, households, new=True),
                            "item-kNN": lambda: A.item_knn_lists(rows, households, new=True),
                            "ALS": lambda: A.als_lists(rows, households, new=True)},
        "reorder": {"popularity": lambda: A.popularity_lists(rows, households, new=False),
                    "item-kNN": lambda: A.item_knn_lists(rows, households, new=False),
                    "repeat-buy": lambda: A.repeat_buy_lists(rows, households),
                    "ALS": lambda: A.als_lists(rows, households, new=False)},
    }
    for column, new in (("recommendations", True), ("reorder", False)):
        scores = {"ours": score_lists(export_lists(export, column), truth, seen, new, size)}
        for name, build in anchor_lists[column].items():
            scores[name] = score_lists(build(), truth, seen, new, size)
        out[column] = scores
    for column, key in (("recommendations", "beats_anchors_cross_sell"), ("reorder", "beats_anchors_reorder")):
        ours = out[column]["ours"]["ndcg"]
        anchors = [s["ndcg"] for n, s in out[column].items() if n != "ours" and s and s["ndcg"] is not None]
        out[key] = None if ours is None else bool(ours > max(anchors, default=0.0))
    return out


# --- report ------------------------------------------------------------------------------

def outcome(run: dict | None) -> tuple[str, str, str]:
    """(outcome in a few words, chosen algorithm, the run's one-line summary or reason)."""
    if not run:
        return "no run", "", ""
    status, summary = run["status"], ((run.get("outcome") or {}).get("summary") or "")
    error = (run.get("error") or "").strip().splitlines()
    reason = error[0] if error else ""  # a failed run's error starts with the exception line
    if status == "succeeded":
        basis = (run.get("outcome") or {}).get("basis")
        label = {"model": "published model", "baseline": "baseline", "not validated": "not validated"}.get(
            basis, "published" if run["is_published"] else "succeeded")
        if basis and not run["is_published"]:
            label += " (not published)"
        return label, run.get("chosen_algorithm") or "", summary
    return status, run.get("chosen_algorithm") or "", reason[:160]


# Names with an empty filler in them (issue 12 saw "Champions (mostly (none))").
FILLERS = re.compile(r"\(none\)|\bnan\b|\bNone\b|\(\s*\)")


def segment_check(segments: dict | None) -> str:
    """How many segments the export names, and the names with an empty filler."""
    if segments is None:
        return "–"
    named = {k: v for k, v in segments.items() if k}
    text = f"{len(named)} segments"
    if len(named) < sum(1 for _ in segments):
        text += f", {segments.get('', 0)} customers without one"
    bad = [k for k in named if FILLERS.search(k)]
    return text + (f"; filler in: {', '.join(bad)}" if bad else "")


def _f(v, digits=4):
    return "–" if v is None else f"{v:.{digits}f}"


def _sep(*values, digits=4):
    return " / ".join(_f(v, digits) for v in values)


def report(results: list[dict]) -> str:
    lines = ["### Outcome per shape and kind", "",
             "| shape | kind | outcome | algorithm | check | the run says |", "|---|---|---|---|---|---|"]
    for r in results:
        runs = r.get("runs") or {}
        for kind in KINDS:
            if r.get("error"):
                lines.append(f"| {r['shape']} | {kind} | not run | | | {r['error']} |")
                continue
            label, algorithm, says = outcome(runs.get(kind))
            if not says:  # no outcome summary stored: the retrain line after "kind: run N"
                says = (r.get("retrain_lines") or {}).get(kind, "").split(" ", 3)[-1]
            check = ""
            if kind == "segmentation":
                check = segment_check(r.get("segments"))
            elif kind == "forecast":
                check = r["forecast"].get("verdict", "not scored")
            elif kind == "recommendation":
                rec = r["recommendation"]
                yes = {True: "yes", False: "no", None: "–"}
                check = ("not scored: " + rec["not_scored"]) if rec.get("not_scored") else (
                    f"beats anchors (NDCG@10): cross-sell {yes[rec['beats_anchors_cross_sell']]}, "
                    f"reorder {yes[rec['beats_anchors_reorder']]}")
            says = says.split("; as of ")[0].replace("|", "/")
            lines.append(f"| {r['shape']} | {kind} | {label} | {algorithm} | {check} | {says} |")
    lines += ["", "### Forecasts on the shape's window (ours / naive rate / BG/NBD / LinearRegression)", "",
              "| shape | households | orders RMSE | orders total % | churn AUC | spend RMSE | refund rate: "
              "exported mean (history) | verdict |",
              "|---|---:|---|---|---|---|---|---|"]
    for r in results:
        f = r.get("forecast")
        if not f:
            continue
        if f.get("not_scored"):
            lines.append(f"| {r['shape']} | {f['households']} | | | | | | not scored: {f['not_scored']} |")
            continue
        order = [f["ours"], *(f["anchors"][n] for n in FORECAST_ANCHORS)]

        def cells(key, digits=4, rows=order):
            return _sep(*(x.get(key) if "error" not in x else None for x in rows), digits=digits)

        total = _sep(*((x["orders"]["total_pct_error"] if "error" not in x else None) for x in order), digits=2)
        spend = cells("spend_rmse", 2) if f["has_amounts"] else "no amounts"
        refund = f"{_f(f['exported_refund_rate_mean'])} ({_f(f['history_refund_share'])})"
        verdict = f["verdict"] + (": " + "; ".join(f["reasons"]) if f["reasons"] else "")
        lines.append(f"| {r['shape']} | {f['households']} | {cells('orders_rmse')} | {total} | "
                     f"{cells('churn_auc')} | {spend} | {refund} | {verdict.replace('|', '/')} |")
    lines += ["", "### Recommendations (NDCG@10 / recall@10 / coverage)", "",
              "Cross-sell = the export's `recommendations`, new mode; reorder = `reorder`, any mode. "
              "ALS = ANCHORS' als (`implicit`, 64 factors, regularization 0.05, 15 iterations, BM25 K1 = 100, "
              "B = 0.8), fitted on the shape's rows up to as_of.", "",
              "| shape | households (new / any) | list | ours | popularity | item-kNN | repeat-buy | ALS | "
              "customers with a list |", "|---|---|---|---|---|---|---|---|---:|"]
    for r in results:
        rec = r.get("recommendation")
        if not rec:
            continue
        if rec.get("not_scored"):
            lines.append(f"| {r['shape']} | | | not scored: {rec['not_scored']} | | | | | "
                         f"{rec['recommendation_lists']} / {rec['reorder_lists']} |")
            continue
        for column, label, n_lists in (("recommendations", "cross-sell", rec["recommendation_lists"]),
                                       ("reorder", "reorder", rec["reorder_lists"])):
            s = rec[column]

            def cell(x):
                return "–" if not x else _sep(x["ndcg"], x["recall"], x["coverage"])

            households = f"{rec['recommendations']['ours']['households']} / {rec['reorder']['ours']['households']}"
            lines.append(f"| {r['shape']} | {households} | {label} | {cell(s['ours'])} | {cell(s.get('popularity'))} "
                         f"| {cell(s.get('item-kNN'))} | {cell(s.get('repeat-buy'))} | {cell(s.get('ALS'))} "
                         f"| {n_lists} |")
    lines += ["", "### Runs", "",
              "| shape | what | imported (customers / products / interactions) | import s | retrain s | "
              "retrain exit | load (1 min) |", "|---|---|---|---:|---:|---:|---:|"]
    for r in results:
        c = r.get("imported", {})
        t = r.get("timings", {})
        lines.append(f"| {r['shape']} | {r['note']} | {c.get('customers', 0):,} / "
                     f"{c.get('products', 0) if 'products' in c else 'no file'} / {c.get('interactions', 0):,} | "
                     f"{_f(t.get('import_data'), 1)} | {_f(t.get('retrain'), 1)} | {r.get('retrain_exit', '–')} | "
                     f"{r['load_1min']:.2f} |")
    return "\n".join(lines)


def code_commit() -> str:
    """The last commit that changed the product's code (ml/, crm/): what the figures measure."""
    return subprocess.run(["git", "log", "-1", "--format=%h", "--", "ml", "crm"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()


def method_text(backend: str, results: list[dict]) -> str:
    commit = results[0].get("code_commit") or code_commit()
    loads = [r["load_1min"] for r in results]
    return (
        f"`python bench/shapes.py --backend {backend} --write` (product code, ml/ and crm/, as of commit {commit}; "
        f"{time.strftime('%Y-%m-%d')}; {os.cpu_count()} CPUs (`nproc`), 1-minute load "
        f"{min(loads):.2f}–{max(loads):.2f} at the start of the shapes). Each shape is made from "
        "`../shared/data/completejourney/contract/*.csv` by a pure function of bench/shape_builders.py and run "
        "end to end on a fresh scratch database: `migrate`, `import_data` of the rows on or before as_of (2017-10-03; "
        "the local day for near_midnight_tz) with the customers and products in them, `retrain --kind all --as-of "
        "2017-10-03 --horizon-days 90 --sync`, `export_insights`. The outcome comes from the latest run of each kind "
        "(read back with `manage.py shell -c`: status, publication, `metrics.outcome`). The export is scored on the "
        "shape's own rows in 2017-10-04 .. 2018-01-01 by ANCHORS.md's protocol (purchases only; missing households "
        "count as 0 orders and churn 1), next to anchors trained on the same rows and scored by the same code "
        "(bench/shape_anchors.py: naive rate; BG/NBD from `ml.pipelines.forecasting.btyd` on purchase days, x orders per "
        "purchase day, churn = P(no purchase in the window), spend x Gamma-Gamma; LinearRegression by the inner "
        "backtest, whose label window is 90 days, or history // 3 scaled to 90 when the history is shorter than two "
        "horizons: 30 days x3 for short_1h, 45 days x2 for short_1_5h; popularity, item-kNN = ANCHORS' item_cf, "
        "repeat-buy). On the full shape the anchors give ANCHORS.md's figures (item-kNN within 0.0002 NDCG@10). "
        "PASS: orders RMSE <= the best anchor's, churn AUC >= the best anchor's, |orders total % error| <= the "
        "largest of the anchors'. `no_refunds` is the full data again (it has no refunds): a second run of `full`, "
        "which also shows whether the same data gives the same choice; `refunds` adds refund rows for 5 % of the "
        "purchases before as_of.")


def write_section(backend: str, results: list[dict], table: str) -> None:
    start, end = "<!-- shapes:start -->", "<!-- shapes:end -->"
    section = (f"{start}\n## Data shapes (Complete Journey transformed, end to end)\n\n"
               f"{method_text(backend, results)}\n\n{table}\n{end}")
    replace_section(start, end, section)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--shapes", default=",".join(BUILDERS), help="comma-separated shape names")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--check", action="store_true", help="exit 1 when a scored shape FAILs")
    parser.add_argument("--write", action="store_true", help="write the tables into BENCHMARKS.md")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON to this file")
    parser.add_argument("--from-json", type=Path, metavar="FILE",
                        help="run nothing: print (and --write, --check) the tables of an earlier --json FILE")
    args = parser.parse_args(argv)
    if args.from_json:
        return finish(json.loads(args.from_json.read_text()), args)
    names = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        parser.error(f"unknown shapes: {', '.join(unknown)} (known: {', '.join(BUILDERS)})")
    if not args.data_dir.exists():
        raise SystemExit(f"{args.data_dir} not found: this benchmark needs the shared Complete Journey data")
    frames = load_contract(args.data_dir)
    results = []
    for name in names:
        shape = BUILDERS[name](frames)
        started = time.monotonic()
        print(f"== {name}: {shape.note} (load {os.getloadavg()[0]:.2f})", flush=True)
        result = run_shape(shape, args.backend)
        result["wall_seconds"] = time.monotonic() - started
        for line in (result.get("retrain_lines") or {}).values():
            print("   " + line, flush=True)
        if result.get("error") or result.get("retrain_error"):
            print("   " + (result.get("error") or result.get("retrain_error")), flush=True)
        print(f"   forecast: {result.get('forecast', {}).get('verdict', '-')}; {result['wall_seconds']:.0f} s",
              flush=True)
        results.append(result)
        if args.json:  # after every shape, so a long run that stops keeps what it measured
            args.json.write_text(json.dumps(results, indent=1, default=float))
    return finish(results, args)


def finish(results: list[dict], args) -> int:
    table = report(results)
    print()
    print(table)
    if args.write:
        write_section(args.backend, results, table)
    failed = [r["shape"] for r in results if (r.get("forecast") or {}).get("verdict") == "FAIL"]
    if args.check and failed:
        print("\nFAIL: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
