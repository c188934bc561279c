"""Soak of the embedded defaults: `make run`'s stack (run_all: runserver, a Celery worker and beat on
the SQLite broker and a SQLite database) under steady load, with imports and retrains, for hours.

    python bench/soak.py --embedded [--minutes 120] [--customers 2000] [--import-every 5]
        [--retrain-every 15] [--sweep-seconds 5] [--write]

Steps: a scratch var dir (``var/soak-embedded``, emptied first) with its own SQLite database and
broker file; ``migrate``, ``seed_demo --customers N --seed 0``, ``retrain --kind all --sync``; then
``manage.py run_all`` exactly as ``make run`` starts it, with beat sending the stale-work sweep every
``--sweep-seconds`` (``SWEEP_EVERY_SECONDS``) instead of every 60 s. Two client threads (closed loop,
50 ms pause) ask for the login page, customer details and customer lists with a manager's token;
every ``--import-every`` minutes an import of 500 new interactions goes through
``POST /api/v1/imports/``, every ``--retrain-every`` minutes a retrain of every kind through
``POST /api/v1/training-runs/`` (the token's rate limit is raised: ``API_USER_RATE_PER_MINUTE``). Nothing is killed: the point is that nothing dies on its own.

Counted: requests and the share answered 200 (anything else, a refused connection or a timeout,
is a miss), p50/p95; processes that stopped and were restarted by run_all (its log lines);
"Unrecoverable error" or a traceback in the worker's or beat's output; imports and runs by status
at the end (after waiting for queued work); rows left in the broker table; the broker file's size.
PASS: 0 restarts, 0 unrecoverable errors, 100 % answered, every import and run ended succeeded.
``--write`` replaces the ``<!-- soak-embedded:start -->`` section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api_bench import free_port  # noqa: E402
from bench.completejourney import replace_section  # noqa: E402
from bench.soak import KINDS, Api, Stats, django_setup, fixtures, log, make_item, manage, multipart  # noqa: E402

MARK_START, MARK_END = "<!-- soak-embedded:start -->", "<!-- soak-embedded:end -->"
IMPORT_ROWS = 500


def embedded_env(var_dir: Path, sweep_seconds: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}}
    env.update(CRM_VAR_DIR=str(var_dir), DATABASE_URL=f"sqlite:///{var_dir / 'db.sqlite3'}",
               SWEEP_EVERY_SECONDS=str(sweep_seconds), ML_STALE_AFTER_SECONDS="20", PYTHONUNBUFFERED="1",
               # One manager's token carries the whole load: above the default 1,200 a minute, as an
               # integration's would be (throttling is tested elsewhere; here a 429 would be a miss).
               API_USER_RATE_PER_MINUTE="1000000")
    return env


class Client(threading.Thread):
    def __init__(self, n: int, port: int, data: dict, stats: Stats, stop: threading.Event):
        super().__init__(daemon=True)
        self.api, self.data, self.stop, self.rng = Api(port, data["token"], stats), data, stop, random.Random(n)

    def run(self):
        while not self.stop.is_set():
            pick = self.rng.random()
            if pick < 0.2:
                self.api.call("login page", "GET", "/login/")
            elif pick < 0.8:
                self.api.call("customer detail", "GET", f"/api/v1/customers/{self.rng.choice(self.data['customer_ids'])}/")
            else:
                self.api.call("customer list", "GET", f"/api/v1/customers/?page={self.rng.randint(1, 20)}")
            time.sleep(0.05)


def import_body(data: dict, n: int) -> tuple[bytes, str]:
    rng = random.Random(1000 + n)
    now = datetime.now(UTC).replace(microsecond=0)
    columns = ["customer_external_id", "type", "occurred_at", "product_sku", "quantity", "amount", "external_id"]
    lines = [",".join(columns)]
    for i in range(IMPORT_ROWS):
        item = make_item(rng, f"emb-{n}-{i}", data, now)
        lines.append(",".join(str(item.get(c, "")) for c in columns))
    return multipart("interactions", "interactions.csv", ("\n".join(lines) + "\n").encode())


def soak(args) -> dict:
    var_dir = Path(args.var_dir).resolve()
    shutil.rmtree(var_dir, ignore_errors=True)
    var_dir.mkdir(parents=True)
    env = embedded_env(var_dir, args.sweep_seconds)
    os.environ.update(env)
    manage(env, "migrate", "--no-input", "-v0")
    manage({**env, "RETRAIN_AFTER_IMPORT": "false"}, "seed_demo", "--customers", str(args.customers), "--seed", "0")
    manage(env, "retrain", "--kind", "all", "--sync")
    django_setup()
    data = fixtures()
    port = free_port()
    stack_log = var_dir / "run_all.log"
    with open(stack_log, "w") as out:
        stack = subprocess.Popen([sys.executable, "manage.py", "run_all", "--addr", f"127.0.0.1:{port}"], cwd=ROOT,
                                 env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    stats, stop = Stats(), threading.Event()
    control = Api(port, data["token"], Stats())
    deadline = time.monotonic() + 60
    while control.call("wait", "GET", "/login/")[0] != 200:
        if time.monotonic() > deadline:
            raise SystemExit(f"the site did not answer within 60 s; see {stack_log}")
        time.sleep(0.5)
    log(f"stack up on port {port}; load for {args.minutes} min (log: {stack_log})")
    clients = [Client(n, port, data, stats, stop) for n in range(2)]
    load_before = os.getloadavg()
    started = time.monotonic()
    for client in clients:
        client.start()
    imports, retrains, next_import, next_retrain = [], [], args.import_every * 60, args.retrain_every * 60
    while (elapsed := time.monotonic() - started) < args.minutes * 60:
        time.sleep(1)
        if elapsed >= next_import:
            body, ctype = import_body(data, len(imports))
            status, result = control.call("import", "POST", "/api/v1/imports/", body, ctype)
            imports.append((status, (result or {}).get("id")))
            next_import += args.import_every * 60
        if elapsed >= next_retrain:
            for kind in KINDS:
                status, result = control.call("retrain", "POST", "/api/v1/training-runs/",
                                              json.dumps({"kind": kind}).encode())
                retrains.append((kind, status))
            next_retrain += args.retrain_every * 60
        if int(elapsed) % 600 == 0:
            log(f"{elapsed / 60:.0f} min: {sum(len(v) for v in stats.latencies.values())} requests, "
                f"{len(imports)} imports, {len(retrains)} retrain requests")
    stop.set()
    for client in clients:
        client.join(timeout=40)
    load_after = os.getloadavg()
    settled = settle(args.settle_minutes * 60)
    stack.send_signal(signal.SIGTERM)
    try:
        stack.wait(timeout=60)
    except subprocess.TimeoutExpired:  # run_all's children lead process groups of their own: kill each
        for child in psutil.Process(stack.pid).children(recursive=True):
            child.kill()
        stack.kill()
    return {"stats": stats, "imports": imports, "retrains": retrains, "settled": settled, "log": stack_log,
            "load": (load_before, load_after), "minutes": (time.monotonic() - started) / 60,
            "broker": var_dir / "broker.sqlite3", "stack_exit": stack.returncode}


def settle(timeout: float) -> bool:
    from crm.models import ImportRun
    from ml.models import TrainingRun

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not (ImportRun.objects.filter(status__in=["queued", "running"]).exists()
                or TrainingRun.objects.filter(status__in=["queued", "running"]).exists()):
            return True
        time.sleep(2)
    return False


def outcome(args, result: dict) -> tuple[str, bool]:
    from crm.models import ImportRun
    from ml.models import TrainingRun

    text = result["log"].read_text(errors="replace")
    restarts = re.findall(r"run_all: (\w+) stopped \(([^)]*)\)", text)
    unrecoverable = text.count("Unrecoverable error")
    tracebacks = text.count("Traceback (most recent call last)")
    stats = result["stats"]
    counts = {endpoint: sum(c.values()) for endpoint, c in stats.statuses.items()}
    total = sum(counts.values())
    ok = sum(c[200] for c in stats.statuses.values())
    latencies = sorted(t for values in stats.latencies.values() for t in values)
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else 0  # noqa: E731
    import_status = Counter(ImportRun.objects.values_list("status", flat=True))
    run_status = Counter(TrainingRun.objects.values_list("status", flat=True))
    with sqlite3.connect(result["broker"]) as db:
        left = db.execute("select count(*) from kombu_message").fetchone()[0]
    size = sum(f.stat().st_size for f in result["broker"].parent.glob("broker.sqlite3*"))
    bad_runs = {s: n for s, n in run_status.items() if s not in {"succeeded", "skipped"}}
    bad_imports = {s: n for s, n in import_status.items() if s != "succeeded"}
    passed = (not restarts and not unrecoverable and total > 0 and ok == total and result["settled"]
              and not bad_runs and not bad_imports)
    lines = [
        f"- {result['minutes']:.1f} minutes of load; 1-minute load average {result['load'][0][0]:.2f} at the start, "
        f"{result['load'][1][0]:.2f} at the end; {args.customers:,} customers seeded",
        f"- web: {total:,} requests, {ok:,} answered 200 (**{100 * ok / total if total else 0:.3f} %**), "
        f"p50 {p(0.5):.1f} ms, p95 {p(0.95):.1f} ms, p99 {p(0.99):.1f} ms; by endpoint: "
        + ", ".join(f"{e} {n:,}" for e, n in sorted(counts.items()))
        + ("; not 200: " + ", ".join(f"{e} {s}: {n}" for e, c in stats.statuses.items() for s, n in c.items()
                                      if s != 200) if ok < total else ""),
        f"- **processes restarted by run_all: {len(restarts)}**"
        + (" (" + "; ".join(f"{n} {why}" for n, why in restarts) + ")" if restarts else "")
        + f"; 'Unrecoverable error' in the logs: **{unrecoverable}**; tracebacks: {tracebacks}",
        f"- imports uploaded: {len(result['imports'])} (answers {dict(Counter(s for s, _ in result['imports']))}); "
        f"by status at the end: {dict(import_status)}",
        f"- retrain requests: {len(result['retrains'])} (answers {dict(Counter(s for _, s in result['retrains']))}); "
        f"training runs by status at the end: {dict(run_status)}; all work done when the load stopped: "
        f"{'yes' if result['settled'] else 'no'}",
        f"- broker: {left} rows left in kombu_message, file with WAL {size / 1e6:.1f} MB; run_all exit {result['stack_exit']}",
    ]
    return "\n".join(lines), passed


def write_benchmarks(text: str) -> None:
    replace_section(MARK_START, MARK_END, f"{MARK_START}\n{text}\n{MARK_END}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embedded", action="store_true", help="(the mode flag of bench/soak.py)")
    parser.add_argument("--minutes", type=float, default=120)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--import-every", type=float, default=5, help="minutes between imports")
    parser.add_argument("--retrain-every", type=float, default=15, help="minutes between retrains")
    parser.add_argument("--sweep-seconds", type=int, default=5, help="beat's sweep interval")
    parser.add_argument("--settle-minutes", type=float, default=10)
    parser.add_argument("--var-dir", default=str(ROOT / "var" / "soak-embedded"))
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    result = soak(args)
    body, passed = outcome(args, result)
    # The command as run: the flags that differ from their defaults.
    flags = " ".join(f"--{name.replace('_', '-')} {value:g}" for name, value in vars(args).items()
                     if isinstance(value, float | int) and not isinstance(value, bool)
                     and value != parser.get_default(name))
    text = (f"## Soak of the embedded defaults (`make run`'s stack)\n\n`python bench/soak.py --embedded {flags}"
            f"{' --write' if args.write else ''}` on {datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} CPUs: `manage.py run_all` "
            f"(runserver, one Celery worker, beat) on a SQLite database and the SQLite broker, beat's sweep every "
            f"{args.sweep_seconds} s, two client threads, an import of {IMPORT_ROWS} rows every {args.import_every:g} "
            f"min and a retrain of every kind every {args.retrain_every:g} min (method: the docstring of "
            f"bench/soak_embedded.py).\n\n{body}\n\nResult: **{'PASS' if passed else 'FAIL'}**")
    print(text)
    if args.write:
        write_benchmarks(text)
    return 0 if passed else 1
