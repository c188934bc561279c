"""Scoring fanned out over Celery workers: one worker against two, each pinned to a core.

    python bench/fanout_bench.py [--kind forecast|recommendation] [--customers 50000] [--chunk 8000] [--reuse]
        [--database-url postgres://postgres@127.0.0.1:5432/h_fanout3] [--redis-url redis://127.0.0.1:6379/14]

On PostgreSQL and Redis (fan-out is off on the embedded broker): migrate and ``seed_demo
--customers N --seed 0`` into the scratch database (``--reuse`` keeps an earlier seed of the same
size), then three retrains of ``--kind``, each queued with ``retrain --kind K`` (no --sync) and
taken by fresh workers on a queue of their own:

- ``one process``: ML_SCORING_CHUNK=0, one worker (``taskset -c 0``): the run's worker scores everyone;
- ``1 worker``: chunks of --chunk, one worker on core 0: the fit, then every chunk one by one;
- ``2 workers``: chunks of --chunk, workers on core 0 and core 1: the fit on one, the chunks on both.

The chunk size is ML_SCORING_CHUNK (buyers) for forecasts, ML_SUGGEST_CHUNK (customers) for
recommendations; rows are the forecasts or the suggestions written.

Prints per round the run's total seconds, its fit seconds (everything before the scoring), the
scoring's wall seconds (to the last chunk's publish) and the sum of the chunks' own seconds, and
the 1-minute load average at the end of the round. Worker logs: ``<CRM_VAR_DIR>/fanout-*.log``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def manage(env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
        raise SystemExit(f"manage.py {' '.join(args)} failed")
    return result.stdout


def start_workers(env: dict, cores: list[int], queue: str, log_dir: Path) -> list[subprocess.Popen]:
    procs = []
    for core in cores:
        log = open(log_dir / f"fanout-{queue}-{core}.log", "w")  # noqa: SIM115 -- closed with the process
        procs.append(subprocess.Popen(
            ["taskset", "-c", str(core), sys.executable, "-m", "celery", "-A", "crm", "worker", "--pool", "prefork",
             "--concurrency", "1", "--loglevel", "INFO", "-Q", queue, "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-n", f"{queue}-{core}@%h"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    return procs


def peak_rss_mb(procs: list[subprocess.Popen]) -> list[float]:
    """Each worker's peak RSS (VmHWM of its pool process, or of the main process if larger), MB."""
    import psutil  # noqa: PLC0415 -- only for the figures

    peaks = []
    for proc in procs:
        try:
            family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            peaks.append(float("nan"))
            continue
        kb = 0
        for member in family:
            with open(f"/proc/{member.pid}/status") as status:
                kb = max([kb] + [int(line.split()[1]) for line in status if line.startswith("VmHWM")])
        peaks.append(kb / 1024)
    return peaks


def stop_workers(procs: list[subprocess.Popen]) -> None:
    import signal  # noqa: PLC0415 -- only when stopping

    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        proc.wait(timeout=60)


def round_(env: dict, kind: str, label: str, chunk: int, cores: list[int], log_dir: Path) -> dict:
    from ml.models import ScoringChunk, TrainingRun  # noqa: PLC0415 -- after django.setup() in main

    queue = f"fanout-{uuid.uuid4().hex[:6]}"
    sizes = {"ML_SCORING_CHUNK": str(chunk)} if kind == "forecast" or not chunk else {"ML_SUGGEST_CHUNK": str(chunk)}
    wenv = {**env, "CELERY_QUEUE": queue, **sizes}
    procs = start_workers(wenv, cores, queue, log_dir)
    try:
        out = manage(wenv, "retrain", "--kind", kind)
        before = TrainingRun.objects.filter(kind=kind).order_by("-pk").values_list("pk", flat=True).first()
        run_id = before
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            run = TrainingRun.objects.get(pk=run_id)
            if run.status not in ("queued", "running"):
                break
            time.sleep(0.5)
        else:
            raise SystemExit(f"{label}: run #{run_id} did not finish within an hour")
        if run.status != "succeeded":
            raise SystemExit(f"{label}: run #{run_id} {run.status}: {run.error[:500]} ({out.strip()})")
        timings = run.timings
        chunks = ScoringChunk.objects.filter(run_id=run_id)
        scoring = timings.get("scoring chunks")
        fit = timings["total"] - scoring if scoring is not None else None
        phases: dict = {}
        for c in chunks:
            for name, seconds in (c.summary.get("seconds") or {}).items():
                phases[name] = phases.get(name, 0) + seconds
        return {"phases": phases, "model_bytes": run.metrics.get("scoring", {}).get("model_bytes"), "round": label, "run": run_id, "total": timings["total"], "fit": fit, "scoring_wall": scoring,
                "chunks": chunks.count(), "chunk_seconds": sum(c.seconds or 0 for c in chunks),
                "rows": run.artefact.get("forecasts") or run.metrics.get("counts", {}).get("suggestions"),
                "load": os.getloadavg()[0], "peaks": peak_rss_mb(procs)}
    finally:
        stop_workers(procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kind", choices=["forecast", "recommendation"], default="forecast")
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--chunk", type=int, default=8000)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/h_fanout3")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--reuse", action="store_true", help="keep the scratch database's earlier seed")
    args = parser.parse_args()
    var = Path(os.environ.get("CRM_VAR_DIR", ROOT / "var" / "fanout"))
    var.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DATABASE_URL": args.database_url, "REDIS_URL": args.redis_url, "CRM_VAR_DIR": str(var),
           "RETRAIN_AFTER_IMPORT": "false", "CELERY_BROKER_URL": ""}
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")
    import django  # noqa: PLC0415 -- configured from the environment set just above

    django.setup()
    from crm.models import Customer  # noqa: PLC0415 -- after django.setup()

    manage(env, "migrate", "--no-input", "-v0")
    if not (args.reuse and Customer.objects.count() == args.customers):
        started = time.monotonic()
        manage(env, "flush", "--no-input")
        manage(env, "seed_demo", "--customers", str(args.customers), "--seed", "0", "--end", "2025-12-31")
        print(f"seed_demo {args.customers} customers: {time.monotonic() - started:.0f} s "
              f"(load {os.getloadavg()[0]:.2f})", flush=True)
    rows = [round_(env, args.kind, "one process (ML_SCORING_CHUNK=0), 1 worker", 0, [0], var),
            round_(env, args.kind, f"chunks of {args.chunk}, 1 worker (core 0)", args.chunk, [0], var),
            round_(env, args.kind, f"chunks of {args.chunk}, 2 workers (cores 0, 1)", args.chunk, [0, 1], var)]
    print(f"\n{'round':<44} {'total s':>8} {'fit s':>7} {'scoring s':>9} {'chunks':>6} {'chunk s':>8} "
          f"{'rows':>9} {'load':>5}")
    for r in rows:
        fit = "" if r["fit"] is None else f"{r['fit']:.1f}"
        wall = "" if r["scoring_wall"] is None else f"{r['scoring_wall']:.1f}"
        print(f"{r['round']:<44} {r['total']:>8.1f} {fit:>7} {wall:>9} {r['chunks']:>6} {r['chunk_seconds']:>8.1f} "
              f"{r['rows'] or 0:>9} {r['load']:>5.2f}")
    for r in rows:
        if r["chunks"]:
            print(f"{r['round']}: stored model {r['model_bytes'] / 1e6:.1f} MB; chunk seconds by phase (sum over "
                  f"chunks): " + ", ".join(f"{k} {v:.1f}" for k, v in r["phases"].items()))
    for r in rows:
        print(f"{r['round']}: peak RSS per worker " + ", ".join(f"{mb:,.0f} MB" for mb in r["peaks"]))
    print(f"\nmachine: {os.cpu_count()} cores; load average now {os.getloadavg()}")


if __name__ == "__main__":
    main()
