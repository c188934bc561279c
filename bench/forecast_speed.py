"""Time the customer forecaster on a synthetic interactions frame and report peak RSS.

    .venv/bin/python bench/forecast_speed.py                      # 100k customers, ~20 rows each
    .venv/bin/python bench/forecast_speed.py --customers 1000000 --rows-per-customer 10
    .venv/bin/python bench/forecast_speed.py --mode service       # evaluate_holdout, then fit + predict

The frame follows ``ml.pipelines.schema`` (customer_id, product_id, type, occurred_at,
quantity, amount, order_ref as str), two years long, with a fixed seed: customers join
over the first year and buy at a Gamma-distributed rate until an exponential lifetime ends
(Pareto/NBD-like), about 1.5 lines per order; ~5% of rows are non-purchase types and ~1%
refunds, so the type filters are exercised. ``--mode`` picks what is timed:

- ``fit``      fit + predict as of the last day (the publishing step alone);
- ``service``  what the retrain service does: honest holdout metrics, then fit + predict
  as of the last day. Uses ``fit_evaluate`` when the forecaster has it, otherwise
  ``evaluate_holdout`` followed by a separate fit + predict.
- ``legacy``   ``evaluate_holdout`` + fit + predict, even when ``fit_evaluate`` exists.

Peak RSS is printed twice: the process's (``resource.getrusage``, which includes building
the frame, itself costly at 1M customers) and the high-water mark since the frame was
built (``VmHWM`` after a reset), i.e. the frame held in memory plus what the forecaster
adds. Timings are noisy on a shared machine: the
1-minute load average is printed next to them.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.pipelines import forecasting as F  # noqa: E402

START = pd.Timestamp("2023-01-01")
DAYS = 730


def simulate_interactions(n_customers: int, rows_per_customer: float = 20, random_state: int = 0) -> pd.DataFrame:
    """About ``n_customers * rows_per_customer`` interaction rows (see the module doc)."""
    rng = np.random.default_rng(random_state)
    # Mean purchase rows per customer active for the whole span; scaled so the total row
    # count lands near n * rows_per_customer whatever the lifetimes turn out to be.
    birth = rng.uniform(0, 365, n_customers)
    life = rng.exponential(1 / rng.gamma(1.0, 1 / 400, n_customers))
    end = np.minimum(birth + life, DAYS)
    rate = rng.gamma(1.5, 1.0, n_customers)
    weight = rate * (end - birth)
    rate *= rows_per_customer * 0.95 * n_customers / max(weight.sum(), 1e-9)
    lines = rng.poisson(rate * (end - birth)) + 1  # the first purchase, at birth
    cust = np.repeat(np.arange(n_customers, dtype=np.int64), lines)
    first = np.r_[0, np.cumsum(lines)[:-1]]
    t = birth[cust] + rng.random(len(cust)) * (end - birth)[cust]
    t[first] = birth
    # ~1.5 lines per order: a line shares the previous line's order (and time) w.p. 1/3.
    same = rng.random(len(cust)) < 1 / 3
    same[first] = False
    order_no = np.cumsum(~same) - 1
    t = t[np.flatnonzero(~same)][order_no]
    n_buy = len(cust)
    # Other types: ~5% activity rows and ~1% refunds, on the same customers.
    n_other = int(0.05 * n_buy)
    o_idx = rng.integers(0, n_buy, n_other)
    n_ref = int(0.01 * n_buy)
    r_idx = rng.integers(0, n_buy, n_ref)
    cust_all = np.r_[cust, cust[o_idx], cust[r_idx]]
    t_all = np.r_[t, t[o_idx] + rng.random(n_other) * 5, t[r_idx] + rng.random(n_ref) * 20]
    value = rng.gamma(3.0, 10.0, n_customers)
    amount = np.r_[rng.gamma(4.0, value[cust] / 4.0), np.zeros(n_other), rng.gamma(4.0, value[cust[r_idx]] / 8.0)]
    types = np.empty(len(cust_all), dtype=object)
    types[:n_buy] = "purchase"
    types[n_buy:n_buy + n_other] = rng.choice(np.array(["view", "email", "call", "note"], dtype=object), n_other)
    types[n_buy + n_other:] = "refund"
    order_ref = np.r_[order_no, -1 - np.arange(n_other + n_ref)]
    seconds = np.floor(np.minimum(t_all, DAYS - 1e-6) * 86400).astype(np.int64)
    return pd.DataFrame({
        "customer_id": cust_all + 1_000,
        "product_id": rng.integers(0, 20_000, len(cust_all)).astype(np.int64),
        "type": pd.array(types, dtype="str"),
        "occurred_at": START + pd.to_timedelta(seconds, unit="s"),
        "quantity": rng.integers(1, 4, len(cust_all)).astype(np.int64),
        "amount": amount,
        "order_ref": pd.array(np.char.add("o", order_ref.astype(str)).astype(object), dtype="str"),
    })


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark (VmHWM), so that the forecaster's own peak can be
    read apart from the frame generator's (Linux >= 4.0; False where it is refused)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def hwm_mb() -> float | None:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_seconds() -> float:
    """User + system CPU time of this process: less sensitive to other jobs than wall time."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def load() -> str:
    return "load " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--rows-per-customer", type=float, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mode", choices=("fit", "service", "legacy"), default="fit")
    ap.add_argument("--horizon-days", type=int, default=90)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    frame = simulate_interactions(args.customers, args.rows_per_customer, args.seed)
    as_of = START + pd.Timedelta(days=DAYS - 1)
    print(f"frame: {frame['customer_id'].nunique():,} customers, {len(frame):,} rows "
          f"({(frame['type'] == 'purchase').mean():.1%} purchases), built in {time.perf_counter() - t0:.1f} s; "
          f"RSS now {current_rss_mb():.0f} MB, peak {peak_rss_mb():.0f} MB   [{load()}]")

    reset = reset_peak_rss()
    params = {"horizon_days": args.horizon_days, "random_state": 0}
    timings = {}
    cpu0 = cpu_seconds()
    mode = args.mode
    if mode == "service" and not hasattr(F, "fit_evaluate"):
        mode = "legacy"
    if mode == "legacy":
        t = time.perf_counter()
        res = F.evaluate_holdout(frame, as_of, **params)
        timings["evaluate_holdout"] = time.perf_counter() - t
        print(f"  holdout: chosen {res['chosen']}, orders RMSE {res['model']['orders']['rmse']:.4f}, "
              f"beats naive {res['beats_naive']}")
    if mode == "service":
        t = time.perf_counter()
        model, res = F.fit_evaluate(frame, as_of, **params)
        timings["fit_evaluate"] = time.perf_counter() - t
        print(f"  holdout: chosen {res['chosen']}, orders RMSE {res['model']['orders']['rmse']:.4f}, "
              f"beats naive {res['beats_naive']}")
    else:
        t = time.perf_counter()
        model = F.CustomerForecaster(**params).fit(frame, as_of)
        timings["fit"] = time.perf_counter() - t
    t = time.perf_counter()
    pred = model.predict(frame, as_of)
    timings["predict"] = time.perf_counter() - t
    total = sum(timings.values())
    print("  " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()) + f"; total {total:.1f} s wall, "
          f"{cpu_seconds() - cpu0:.1f} s CPU   [{load()}]")
    print(f"  chosen {model.chosen_}, window {model.window_days_} d, {len(pred):,} forecasts, "
          f"mean expected purchases {pred['expected_purchases'].mean():.3f}")
    since = f"{hwm_mb():.0f} MB since the frame was built" if reset else "no reset available"
    print(f"  peak RSS {peak_rss_mb():.0f} MB for the process; {since}")


if __name__ == "__main__":
    main()
