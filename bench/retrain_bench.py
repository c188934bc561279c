"""Retrain at scale: seed_demo N customers, then time `retrain --sync` per kind, with peak RSS.

    python bench/retrain_bench.py [--customers 100000] [--backend sqlite|postgres|both] [--kinds segmentation,forecast]
                                  [--reuse] [--repeat N]

Each kind runs in its own `manage.py retrain --kind K --sync` process, so the peak RSS printed
is that kind's alone (getrusage of the finished child). The database is a fresh scratch one;
``--reuse`` keeps the PostgreSQL scratch database of an earlier run (same --customers) instead
of seeding it again, and ``--repeat`` retrains each kind N times (to compare code versions
back to back on the same machine state). The load average is printed with every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_manage(env, *args) -> tuple[float, float, str]:
    """(seconds, peak RSS MB of this child, stdout)"""
    code = ("import os, resource, sys, django; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'crm.settings');"
            "django.setup(); from django.core.management import call_command;"
            f"call_command(*{list(args)!r});"
            "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
        raise SystemExit(f"{' '.join(args)} failed")
    peak = next(int(line.split()[1]) for line in result.stdout.splitlines() if line.startswith("PEAK_RSS_KB"))
    return seconds, peak / 1024, result.stdout


def _seeded(env: dict, customers: int) -> bool:
    """True when the scratch database already holds a seed_demo of ``customers`` customers."""
    code = ("import os, django; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'crm.settings'); django.setup();"
            "from crm.models import Customer; print('CUSTOMERS', Customer.objects.count())")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    line = next((x for x in result.stdout.splitlines() if x.startswith("CUSTOMERS")), "CUSTOMERS 0")
    return result.returncode == 0 and int(line.split()[1]) == customers


def _stages(env: dict, kind: str) -> str:
    """The stages' seconds of the newest run of ``kind`` (its timings), as "stage s; ..."."""
    code = ("import os, django; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'crm.settings'); django.setup();"
            "from ml.models import TrainingRun; import json;"
            f"r = TrainingRun.objects.filter(kind={kind!r}).order_by('-id').first();"
            "print('TIMINGS', json.dumps(r.timings if r else {}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    line = next((x for x in result.stdout.splitlines() if x.startswith("TIMINGS")), "TIMINGS {}")
    timings = json.loads(line.split(" ", 1)[1])
    return "; ".join(f"{stage.split(':')[0]} {seconds:.1f}" for stage, seconds in timings.items() if stage != "total")


def bench(backend: str, customers: int, kinds: list[str], tmp: Path, reuse: bool = False,
          repeat: int = 1, days: int = 730) -> list[dict]:
    env = {**os.environ, "CRM_VAR_DIR": str(tmp / f"var-{backend}"), "RETRAIN_AFTER_IMPORT": "false"}
    env.pop("REDIS_URL", None)
    # seed_demo imports its interactions as one file: at a million customers that is over the
    # 5,000,000 rows a file may hold by default.
    env.setdefault("IMPORT_MAX_ROWS", "50000000")
    rows = []
    if backend == "postgres":
        base = os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")
        env["DATABASE_URL"] = f"{base}/crm_bench_retrain"
        reuse = reuse and _seeded(env, customers)
        if not reuse:
            subprocess.run(["psql", f"{base}/postgres", "-q", "-c", "DROP DATABASE IF EXISTS crm_bench_retrain",
                            "-c", "CREATE DATABASE crm_bench_retrain"], check=True, capture_output=True)
    else:
        env["DATABASE_URL"] = f"sqlite:///{tmp / f'retrain-{customers}.sqlite3'}"
        reuse = False
    if not reuse:
        seconds, rss, _ = run_manage(env, "migrate", "--no-input", "-v0")
        seconds, rss, out = run_manage(env, "seed_demo", "--customers", str(customers), "--seed", "0",
                                       "--end", "2025-12-31", "--days", str(days))
        interactions = next((line for line in out.splitlines() if line.startswith("Generated")), "")
        rows.append({"backend": backend, "step": "seed_demo", "seconds": seconds, "rss_mb": rss,
                     "note": interactions, "load": os.getloadavg()[0]})
    for _ in range(repeat):
        for kind in kinds:
            seconds, rss, out = run_manage(env, "retrain", "--kind", kind, "--sync")
            status = out.splitlines()[0] if out else ""
            rows.append({"backend": backend, "step": f"retrain {kind}", "seconds": seconds, "rss_mb": rss,
                         "note": f"{status} [{_stages(env, kind)}]", "load": os.getloadavg()[0]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=730,
                        help="days of seeded history (seed_demo --days; 730 gives ~22 interactions a customer)")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--kinds", default="segmentation,forecast,recommendation")
    parser.add_argument("--reuse", action="store_true", help="keep an earlier PostgreSQL scratch database")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="crm-retrain-") as tmp:
        for backend in backends:
            for row in bench(backend, args.customers, kinds, Path(tmp), args.reuse, args.repeat, args.days):
                print(f"| {row['backend']} | {row['step']} | {row['seconds']:.1f} | {row['rss_mb']:.0f} | "
                      f"{row['load']:.1f} | {row['note']} |", flush=True)


if __name__ == "__main__":
    main()
