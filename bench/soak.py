"""Soak: mixed API load against gunicorn + a Celery worker + beat + PostgreSQL + Redis, the worker
restarted twice, then a consistency check that no interaction was lost or duplicated.

    python bench/soak.py [--minutes 10] [--customers 20000] [--concurrency 4] [--bulk-items 50]
        [--database-url postgres://postgres@127.0.0.1:5432/crm_soak] [--redis-url redis://127.0.0.1:6379/7]
        [--reuse] [--write]

Steps:

1. Drop and recreate the database (its name must contain "soak"; ``--reuse`` keeps a seeded one),
   migrate, ``seed_demo --customers N --seed 0`` (20,000 by default to keep seeding and
   retraining to a few minutes; the API benchmark uses 100,000) and ``retrain --kind all --sync`` so insights exist.
2. Start gunicorn (2 workers, 127.0.0.1, a free port), one Celery worker (prefork, concurrency 1)
   and Celery beat (it sends the ``ml.sweep_stale_runs`` task every 60 s, as in production) on a
   queue of their own (``CELERY_QUEUE=soak-<tag>``) in the Redis database of ``--redis-url``.
   ``ML_STALE_AFTER_SECONDS`` is 20 for all of them, so a killed run is taken over within the soak.
3. ``--concurrency`` threads (stdlib http.client, closed loop, no think time) mix: customer detail
   GETs (55 %), customer list GETs (10 %), customer list GETs filtered by a published segment
   (15 %), bulk interaction upserts of ``--bulk-items`` new items (20 %). Every external_id sent
   goes into a ledger with the values sent and the server's answer; 20 % of batches are sent again
   unchanged (the answer must be "unchanged" for all) and 10 % again with half the amounts changed
   (the answer must be "updated" for those). A failed or timed-out bulk request is retried (up to
   3 times, as a client would); items never acknowledged are counted as "unacknowledged".
4. Timeline (fractions of the duration): at 0.25 an import through ``POST /api/v1/imports/`` (a CSV
   of new interactions plus rows already sent by the bulk door, all in the ledger); as soon as the
   import runs, the worker gets SIGTERM (warm shutdown: it must finish the import) and a fresh worker
   starts. At 0.5 a retrain of every kind through ``POST /api/v1/training-runs/``; as soon as a run
   is training (progress >= 15 %), the worker's process group gets SIGKILL (the run's heartbeat goes
   stale; beat's sweep must queue it again) and a fresh worker starts. ``--swap-signals`` swaps the
   two signals (SIGKILL during the import, SIGTERM during the retrain).
5. After the load: wait (bounded, ``--settle-minutes``) until no import or training run is queued
   or running, then check: every acknowledged ledger external_id is in ``crm_interaction`` exactly
   once with the values last acknowledged; no interaction beyond the seed that the ledger does not
   know; the seed rows are all there; the import's counts are the expected ones; exactly one
   published run per kind, none queued or running, no insight rows left by a failed or cancelled
   run; every segment/forecast run id and computed_at seen by the load was a succeeded run's; and
   for 50 random customers the API's segment, forecast and suggestions are those of the published
   runs. Prints requests, per-endpoint counts, errors by status, p50/p95/p99, lost/duplicated rows.

``--embedded`` soaks `make run`'s stack instead (SQLite and the embedded broker): bench/soak_embedded.py.

Exit status 1 when any check fails. ``--write`` replaces the ``<!-- soak:start -->`` ..
``<!-- soak:end -->`` section of BENCHMARKS.md with the method and these figures.
Worker, beat and gunicorn logs: ``<CRM_VAR_DIR>/soak-*.log`` (default var/soak).
"""
from __future__ import annotations

import argparse
import csv
import http.client
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api_bench import free_port  # noqa: E402

STALE_AFTER_SECONDS = 20
HTTP_TIMEOUT = 30
BULK_ATTEMPTS = 3
API_SAMPLE = 50
STALE_PAGE = "404 past the end (segment replaced by a retrain)"
MARK_START, MARK_END = "<!-- soak:start -->", "<!-- soak:end -->"
KINDS = ("segmentation", "forecast", "recommendation")


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


# --- set-up -----------------------------------------------------------------------------------------

def prepare_database(args, env) -> None:
    url = urlparse(args.database_url)
    name = url.path.lstrip("/")
    if args.reuse:
        return
    if "soak" not in name:
        raise SystemExit(f"refusing to drop database {name!r}: its name must contain 'soak' (or pass --reuse)")
    admin = args.database_url.rsplit("/", 1)[0] + "/postgres"
    subprocess.run(["psql", admin, "-q", "-v", "ON_ERROR_STOP=1", "-c", f'DROP DATABASE IF EXISTS "{name}"',
                    "-c", f'CREATE DATABASE "{name}"'], check=True, capture_output=True)
    manage(env, "migrate", "--no-input", "-v0")
    # The seed's import must not queue retrains of its own: the synchronous retrain below is the first.
    env = {**env, "RETRAIN_AFTER_IMPORT": "false"}
    started = time.monotonic()
    out = manage(env, "seed_demo", "--customers", str(args.customers), "--seed", "0")
    log(f"seeded in {time.monotonic() - started:.0f} s: "
        + next((line for line in out.splitlines() if line.startswith("Generated")), ""))
    started = time.monotonic()
    out = manage(env, "retrain", "--kind", "all", "--sync")
    log(f"initial retrain in {time.monotonic() - started:.0f} s: "
        + "; ".join(line for line in out.splitlines() if line.split(":")[0] in KINDS))


def manage(env, *args) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
        raise SystemExit(f"manage.py {' '.join(args)} failed")
    return result.stdout


def django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")
    import django

    django.setup()


def fixtures() -> dict:
    """A manager's token and what the load picks from (customers, products, seed high-water mark)."""
    from django.contrib.auth.models import Group, User
    from django.db.models import Max

    from crm.models import ROLE_MANAGER, Customer, Interaction, Product
    from crm.tokens import create_token

    user, _ = User.objects.get_or_create(username="soak-manager", defaults={"is_staff": True})
    user.groups.add(Group.objects.get_or_create(name=ROLE_MANAGER)[0])
    customers = list(Customer.objects.values_list("id", "external_id"))
    if len(customers) < 100:
        raise SystemExit("the database has fewer than 100 customers: run without --reuse to seed it")
    return {
        "token": create_token(user, name="soak", expires_in_days=1)[1],
        "customer_ids": [c[0] for c in customers],
        "customer_keys": [c[1] for c in customers],
        "skus": list(Product.objects.filter(active=True).values_list("sku", flat=True)),
        "seed_max_id": Interaction.objects.aggregate(m=Max("id"))["m"] or 0,
        "seed_count": Interaction.objects.count(),
    }


class Services:
    """gunicorn, beat and the current worker, each in its own process group; logs in the var dir."""

    def __init__(self, env: dict, var_dir: Path, port: int):
        self.env, self.var_dir, self.port = env, var_dir, port
        self.logs, self.workers, self.old_workers = [], [], []
        self.gunicorn = self._start("gunicorn", [sys.executable, "-m", "gunicorn", "crm.wsgi:application",
                                                 "--workers", "2", "--bind", f"127.0.0.1:{port}",
                                                 "--timeout", "60", "--log-level", "warning"])
        self.beat = self._start("beat", [sys.executable, "-m", "celery", "-A", "crm", "beat", "--loglevel", "INFO"])
        self.start_worker()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.connect()
                conn.close()
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise SystemExit("gunicorn did not start")

    def _start(self, name: str, command: list) -> subprocess.Popen:
        out = open(self.var_dir / f"soak-{name}.log", "w")  # noqa: SIM115 (closed in stop())
        self.logs.append(out)
        return subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,  # noqa: S603
                                start_new_session=True)

    @property
    def worker(self) -> subprocess.Popen:
        return self.workers[-1]

    def start_worker(self) -> subprocess.Popen:
        proc = self._start(f"worker-{len(self.workers)}", [
            sys.executable, "-m", "celery", "-A", "crm", "worker", "--pool", "prefork", "--concurrency", "1",
            "--loglevel", "INFO", "-Q", self.env["CELERY_QUEUE"], "-n", f"soak{len(self.workers)}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat"])
        self.workers.append(proc)
        return proc

    def restart_worker(self, sig: signal.Signals) -> subprocess.Popen:
        """SIGTERM: the worker's warm shutdown (it finishes its task; watched until it exits).
        SIGKILL: the worker and its pool child die at once, as on an OOM kill or a lost host."""
        old = self.worker
        if sig == signal.SIGKILL:
            os.killpg(old.pid, signal.SIGKILL)
            old.wait()
        else:
            old.send_signal(sig)
            self.old_workers.append((old, time.monotonic()))
        self.start_worker()
        return old

    def stop(self) -> None:
        for proc in [self.gunicorn, self.beat, *self.workers]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [self.gunicorn, self.beat, *self.workers]:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for out in self.logs:
            out.close()


def cleanup_broker(redis_url: str, queue: str) -> int:
    """Remove this soak's queue from Redis: its keys, and the unacknowledged messages of the killed
    workers (Redis would put them back on the queue after the visibility timeout, for nobody)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    removed = 0
    for field, value in client.hscan_iter("unacked"):
        try:
            routing_key = json.loads(value)[2]
        except (ValueError, IndexError, TypeError):
            continue
        if routing_key == queue:
            removed += client.hdel("unacked", field)
            client.zrem("unacked_index", field)
    sep = "\x06\x16"  # kombu's separator of priority queues and bindings
    client.delete(queue, *(f"{queue}{sep}{p}" for p in (3, 6, 9)), f"_kombu.binding.{queue}",
                  f"_kombu.binding_permanent.{queue}")
    return removed


# --- load -----------------------------------------------------------------------------------------------

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latencies = defaultdict(list)       # endpoint -> [seconds]
        self.statuses = defaultdict(Counter)     # endpoint -> {status: n}
        self.seen_runs = defaultdict(set)        # kind -> run ids seen in customer insights
        self.seen_computed = defaultdict(set)    # kind -> computed_at strings seen

    def record(self, endpoint: str, status, seconds: float) -> None:
        with self.lock:
            self.latencies[endpoint].append(seconds)
            self.statuses[endpoint][status] += 1

    def reclassify(self, endpoint: str, status, label: str) -> None:
        with self.lock:
            self.statuses[endpoint][status] -= 1
            self.statuses[endpoint][label] += 1

    def saw(self, insights: dict) -> None:
        with self.lock:
            for kind in ("segment", "forecast"):
                if insights.get(kind):
                    self.seen_runs[kind].add(insights[kind]["run_id"])
            for kind, at in (insights.get("computed_at") or {}).items():
                self.seen_computed[kind].add(at)


class Api:
    """One keep-alive connection per thread; every request timed and counted."""

    def __init__(self, port: int, token: str, stats: Stats):
        self.port, self.stats = port, stats
        self.headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
        self.conn = None

    def call(self, endpoint: str, method: str, path: str, body: bytes | None = None, content_type: str = ""):
        """(status or error name, parsed JSON or None)."""
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        started = time.perf_counter()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT)
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
            data = response.read()
            status = response.status
            if response.will_close:
                self.conn.close()
                self.conn = None
        except (OSError, http.client.HTTPException) as exc:
            status = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            data = None
            if self.conn is not None:
                self.conn.close()
            self.conn = None
        self.stats.record(endpoint, status, time.perf_counter() - started)
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, None


class Ledger:
    """Every interaction the soak sent: external_id -> the values last acknowledged by the server.

    ``uncertain``: items whose request never got an answer (any of the values sent may be stored,
    or none). ``final``: batches no thread touches again (the import may copy them).
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.acked, self.uncertain, self.final, self.violations = {}, {}, [], []
        self.counts = Counter()

    def ack(self, items: list) -> None:
        with self.lock:
            for item in items:
                self.acked[item["external_id"]] = item_values(item)
                self.uncertain.pop(item["external_id"], None)

    def unsure(self, items: list) -> None:
        with self.lock:
            for item in items:
                eid = item["external_id"]
                options = self.uncertain.setdefault(eid, set())
                options.add(item_values(item))
                if eid in self.acked:  # an update that may or may not have landed
                    options.add(self.acked.pop(eid))

    def violation(self, message: str) -> None:
        with self.lock:
            self.violations.append(message)

    def finalize(self, items: list) -> None:
        with self.lock:
            if all(i["external_id"] in self.acked for i in items):
                self.final.append(items)


def item_values(item: dict) -> tuple:
    """What the database must hold for an item, in comparable form."""
    return (item["customer_external_id"], item["type"], datetime.fromisoformat(item["occurred_at"]),
            item.get("product_sku") or None, int(item.get("quantity") or 1),
            Decimal(item["amount"]) if item.get("amount") else None)


def make_item(rng: random.Random, eid: str, data: dict, now: datetime) -> dict:
    kind = rng.choices(["purchase", "view", "call"], weights=[8, 1, 1])[0]
    item = {"external_id": eid, "customer_external_id": rng.choice(data["customer_keys"]), "type": kind,
            "occurred_at": (now - timedelta(seconds=rng.randint(0, 30 * 86400))).isoformat(),
            "quantity": rng.randint(1, 3)}
    if kind != "call":
        item["product_sku"] = rng.choice(data["skus"])
    if kind == "purchase":
        item["amount"] = f"{rng.randint(100, 20000) / 100:.2f}"
    return item


class LoadThread(threading.Thread):
    WEIGHTS = {"customer detail": 55, "customer list": 10, "customer list by segment": 15, "bulk upsert": 20}

    def __init__(self, tid: int, args, data: dict, stats: Stats, ledger: Ledger, segments: list, stop, tag: str):
        super().__init__(name=f"load-{tid}", daemon=True)
        self.tid, self.args, self.data, self.ledger, self.segments, self.stop = tid, args, data, ledger, segments, stop
        self.api = Api(args.port, data["token"], stats)
        self.stats = stats
        self.rng = random.Random(tid)
        self.tag, self.batch = tag, 0
        self.now = datetime.now(UTC).replace(microsecond=0)

    def run(self):
        ops, weights = list(self.WEIGHTS), list(self.WEIGHTS.values())
        pages = max(1, len(self.data["customer_ids"]) // 50)
        while not self.stop.is_set():
            op = self.rng.choices(ops, weights)[0]
            if op == "customer detail":
                status, body = self.api.call(op, "GET", f"/api/v1/customers/{self.rng.choice(self.data['customer_ids'])}/")
                if status == 200 and body:
                    self.stats.saw(body.get("insights") or {})
            elif op == "customer list":
                self.api.call(op, "GET", f"/api/v1/customers/?page_size=50&page={self.rng.randint(1, min(pages, 200))}")
            elif op == "customer list by segment" and self.segments:
                segment = self.rng.choice(self.segments)
                page = self.rng.randint(1, max(1, min(segment[1] // 50, 20)))
                path = f"/api/v1/customers/?segment={segment[0]}&page_size=50"
                status, _ = self.api.call(op, "GET", f"{path}&page={page}")
                if status == 404 and page > 1:
                    # The list of segments is refreshed every 2 s: a retrain may have replaced this one
                    # (its id now filters nothing, so page 2 is past the end). Not a server error if so.
                    status, body = self.api.call(op, "GET", path)
                    if status == 200 and body["count"] <= (page - 1) * 50:
                        self.stats.reclassify(op, 404, STALE_PAGE)
            elif op == "bulk upsert":
                self.bulk()

    def post_bulk(self, items: list):
        """The server's answer, retrying a failed request like a client would; None if it never answered."""
        body = json.dumps({"items": items}).encode()
        for attempt in range(BULK_ATTEMPTS):
            status, result = self.api.call("bulk upsert", "POST", "/api/v1/interactions/bulk/", body)
            if status == 200 and result:
                return result, attempt
            time.sleep(1)
        return None, BULK_ATTEMPTS

    def expect(self, what: str, result: dict, attempt: int, **expected) -> None:
        n = sum(result[k] for k in ("created", "updated", "unchanged"))
        if result["rejected"] or n != sum(expected.values()):
            self.ledger.violation(f"{what}: answer {result} for {sum(expected.values())} items")
        elif attempt == 0 and any(result[k] != v for k, v in expected.items()):
            self.ledger.violation(f"{what}: expected {expected}, got {result}")

    def bulk(self):
        self.batch += 1
        n = self.args.bulk_items
        items = [make_item(self.rng, f"soak-{self.tag}-{self.tid}-{self.batch}-{i}", self.data, self.now)
                 for i in range(n)]
        result, attempt = self.post_bulk(items)
        self.ledger.counts["items sent"] += n
        if result is None:
            self.ledger.unsure(items)
            return
        self.ledger.ack(items)
        self.expect("new batch", result, attempt, created=n, updated=0, unchanged=0)
        roll = self.rng.random()
        if roll < 0.2:  # the same batch again: nothing may change
            self.ledger.counts["batches re-sent unchanged"] += 1
            result, attempt = self.post_bulk(items)
            if result is None:
                self.ledger.unsure(items)
                return
            self.expect("re-sent batch", result, attempt, created=0, updated=0, unchanged=n)
        elif roll < 0.3:  # half the purchases with another amount: exactly those are updated
            changed = [dict(i, amount=f"{Decimal(i['amount']) + 1:.2f}") if i.get("amount") and k % 2 == 0 else i
                       for k, i in enumerate(items)]
            n_changed = sum(1 for a, b in zip(items, changed) if a is not b)
            self.ledger.counts["batches re-sent changed"] += 1
            result, attempt = self.post_bulk(changed)
            if result is None:
                self.ledger.unsure([c for a, c in zip(items, changed) if a is not c])
                return
            self.ledger.ack(changed)
            self.expect("changed batch", result, attempt, created=0, updated=n_changed, unchanged=n - n_changed)
            items = changed
        self.ledger.finalize(items)


# --- the timeline ----------------------------------------------------------------------------------------

def multipart(field: str, filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: text/csv\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def import_csv(ledger: Ledger, data: dict, tag: str, new_rows: int, copied_rows: int) -> tuple[bytes, dict]:
    """A CSV of new interactions plus rows the bulk door already stored (same values: unchanged)."""
    rng = random.Random(99)
    now = datetime.now(UTC).replace(microsecond=0)
    new = [make_item(rng, f"soak-{tag}-imp-{i}", data, now) for i in range(new_rows)]
    with ledger.lock:
        copied = [item for batch in ledger.final for item in batch][:copied_rows]
    columns = ["customer_external_id", "type", "occurred_at", "product_sku", "quantity", "amount", "order_ref",
               "external_id", "channel", "notes"]
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, restval="")
    writer.writeheader()
    for item in new + copied:
        writer.writerow(item)
    return out.getvalue().encode(), {"new": new, "copied": copied}


def active_runs() -> list:
    from ml.models import TrainingRun

    return list(TrainingRun.objects.filter(status__in=TrainingRun.ACTIVE).values("id", "kind", "status", "progress",
                                                                                  "stage"))


def published_segments() -> list:
    from ml.selectors import segments

    return list(segments().values_list("id", "size"))


def soak(args, data: dict, services: Services, tag: str) -> dict:
    stats, ledger = Stats(), Ledger()
    segments = published_segments()
    stop = threading.Event()
    threads = [LoadThread(t, args, data, stats, ledger, segments, stop, tag) for t in range(args.concurrency)]
    control = Api(args.port, data["token"], stats)
    duration = args.minutes * 60
    events, state = [], {"import": None, "sigterm": None, "retrain": None, "sigkill": None}
    load_before = os.getloadavg()
    started = time.monotonic()
    for thread in threads:
        thread.start()

    def event(message):
        events.append((time.monotonic() - started, message))
        log(message)

    last_segments = time.monotonic()
    while (elapsed := time.monotonic() - started) < duration:
        time.sleep(0.5)
        if time.monotonic() - last_segments > 2:  # a retrain publishes new segments: follow them
            segments[:] = published_segments() or segments
            last_segments = time.monotonic()
        if state["import"] is None and elapsed >= 0.25 * duration:
            content, rows = import_csv(ledger, data, tag, args.import_rows, args.import_rows // 4)
            body, ctype = multipart("interactions", "interactions.csv", content)
            status, result = control.call("import upload", "POST", "/api/v1/imports/", body, ctype)
            if status != 202:
                event(f"import upload answered {status}: {result}")
                state["import"] = {"id": None, **rows}
            else:
                state["import"] = {"id": result["id"], **rows}
                event(f"import #{result['id']} uploaded ({len(rows['new'])} new rows, {len(rows['copied'])} "
                      "rows already sent by the bulk door)")
        if state["import"] and state["sigterm"] is None:
            from crm.models import ImportRun

            run = ImportRun.objects.filter(pk=state["import"]["id"]).values("status", "stage").first()
            running = run and run["status"] == "running"
            if running or elapsed >= 0.4 * duration:
                sig = signal.SIGKILL if args.swap_signals else signal.SIGTERM
                old = services.restart_worker(sig)
                state["sigterm"] = elapsed
                event(f"worker {len(services.workers) - 2} (pid {old.pid}) sent {sig.name} while "
                      + (f"import #{state['import']['id']} was {run['stage'] or 'running'}" if running else
                         f"the import was {run['status'] if run else 'absent'} (not caught running)")
                      + f"; worker {len(services.workers) - 1} started")
        if state["retrain"] is None and elapsed >= 0.5 * duration:
            state["retrain"] = []
            for kind in KINDS:
                status, result = control.call("training-run request", "POST", "/api/v1/training-runs/",
                                              json.dumps({"kind": kind}).encode())
                run = (result or {}).get("run") or {}
                state["retrain"].append((kind, status, run.get("id"), (result or {}).get("created")))
            event("retrain requested: " + ", ".join(f"{k} -> {s} run #{r} ({'new' if c else 'joined'})"
                                                     for k, s, r, c in state["retrain"]))
        if state["retrain"] is not None and state["sigkill"] is None:
            # Prefer a run with no queued successor of its kind: beat's sweep must then queue it again
            # and a worker take it over (with a successor waiting, the sweep fails it instead).
            runs = active_runs()
            queued = {r["kind"] for r in runs if r["status"] == "queued"}
            training = [r for r in runs if r["status"] == "running" and r["progress"] >= 15]
            if elapsed < 0.65 * duration:
                training = [r for r in training if r["kind"] not in queued]
            if training or elapsed >= 0.8 * duration:
                sig = signal.SIGTERM if args.swap_signals else signal.SIGKILL
                old = services.restart_worker(sig)
                state["sigkill"] = {"at": elapsed, "runs": training, "signal": sig.name}
                event(f"worker {len(services.workers) - 2} (pid {old.pid}) sent {sig.name} while "
                      + (", ".join(f"{r['kind']} run #{r['id']} was at {r['progress']} % ({r['stage']})"
                                   for r in training) if training else "no run was training (none caught)")
                      + f"; worker {len(services.workers) - 1} started")
        for proc, since in list(services.old_workers):
            if proc.poll() is not None:
                event(f"SIGTERMed worker (pid {proc.pid}) exited with {proc.returncode} after "
                      f"{time.monotonic() - since:.0f} s")
                services.old_workers.remove((proc, since))
    stop.set()
    for thread in threads:
        thread.join(timeout=HTTP_TIMEOUT * BULK_ATTEMPTS + 10)
    load_seconds = time.monotonic() - started
    load_after = os.getloadavg()
    event(f"load stopped after {load_seconds:.0f} s; waiting for queued imports and runs "
          f"(at most {args.settle_minutes} min)")
    settled = settle(args.settle_minutes * 60, services, event)
    return {"stats": stats, "ledger": ledger, "state": state, "events": events, "load_seconds": load_seconds,
            "settled": settled, "load": (load_before, load_after)}


def settle(timeout: float, services: Services, event) -> bool:
    from crm.models import ImportRun

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc, since in list(services.old_workers):
            if proc.poll() is not None:
                event(f"SIGTERMed worker (pid {proc.pid}) exited with {proc.returncode} after "
                      f"{time.monotonic() - since:.0f} s")
                services.old_workers.remove((proc, since))
        busy = ImportRun.objects.filter(status__in=["queued", "running"]).exists() or active_runs()
        if not busy:
            event("nothing queued or running")
            return True
        time.sleep(2)
    event(f"still queued or running after {timeout:.0f} s: {active_runs()}")
    return False


# --- the check ---------------------------------------------------------------------------------------

def check(args, data: dict, result: dict, tag: str) -> dict:
    from django.db import connection

    from crm.models import ImportFile, ImportRun, Interaction
    from ml.models import CustomerSegment, Forecast, Prospect, Segment, SimilarProduct, Suggestion, TrainingRun

    ledger, state = result["ledger"], result["state"]
    failures = []
    rows = {}
    for eid, customer, kind, occurred, sku, quantity, amount in Interaction.objects.filter(
            external_id__startswith=f"soak-{tag}-").values_list(
            "external_id", "customer__external_id", "type", "occurred_at", "product__sku", "quantity", "amount"):
        rows[eid] = (customer, kind, occurred, sku, quantity, amount)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM (SELECT external_id FROM {Interaction._meta.db_table} "  # noqa: S608
                       "WHERE external_id LIKE %s GROUP BY external_id HAVING COUNT(*) > 1) d", [f"soak-{tag}-%"])
        duplicated = cursor.fetchone()[0]

    imported = state["import"] or {"id": None, "new": [], "copied": []}
    expected = dict(ledger.acked)
    import_run = ImportRun.objects.filter(pk=imported["id"]).first() if imported["id"] else None
    if import_run is not None and import_run.status == "succeeded":
        expected.update({i["external_id"]: item_values(i) for i in imported["new"]})
    lost = sorted(eid for eid in expected if eid not in rows)
    wrong = sorted(eid for eid, values in expected.items() if eid in rows and rows[eid] != values)
    wrong_unsure = sorted(eid for eid, options in ledger.uncertain.items() if eid in rows and rows[eid] not in options)
    known = set(expected) | set(ledger.uncertain) | {i["external_id"] for i in imported["new"]}
    beyond_seed = Interaction.objects.filter(id__gt=data["seed_max_id"]).values_list("external_id", flat=True)
    unknown = [eid for eid in beyond_seed.iterator(chunk_size=20_000) if eid not in known]
    unknown_count = len(unknown)
    seed_now = Interaction.objects.filter(id__lte=data["seed_max_id"]).count()
    if lost:
        failures.append(f"{len(lost)} acknowledged interactions lost, e.g. {lost[:5]}")
    if duplicated:
        failures.append(f"{duplicated} external_ids stored more than once")
    if wrong or wrong_unsure:
        failures.append(f"{len(wrong) + len(wrong_unsure)} interactions hold other values than acknowledged, "
                        f"e.g. {(wrong + wrong_unsure)[:3]}: {[rows[e] for e in (wrong + wrong_unsure)[:3]]}")
    if unknown_count or unknown:
        failures.append(f"{unknown_count} interactions beyond the seed that the ledger does not know, e.g. {unknown[:5]}")
    if seed_now != data["seed_count"]:
        failures.append(f"seed rows: {seed_now} now, {data['seed_count']} before")
    if ledger.violations:
        failures.append(f"{len(ledger.violations)} bulk answers not as expected, e.g. {ledger.violations[:3]}")

    import_summary = "not uploaded"
    if import_run is None:
        failures.append("the import was not uploaded")
    else:
        f = ImportFile.objects.filter(run=import_run, kind="interactions").first()
        import_summary = (f"#{import_run.pk} {import_run.status}"
                          + (f": {f.created} created, {f.updated} updated, {f.unchanged} unchanged, "
                             f"{f.rejected} rejected" if f else "") + (f" ({import_run.error})" if import_run.error else ""))
        if import_run.status != "succeeded":
            failures.append(f"import {import_summary}")
        elif f is None or (f.created, f.updated, f.rejected) != (len(imported["new"]), 0, 0) \
                or f.unchanged != len(imported["copied"]):
            failures.append(f"import {import_summary}; expected {len(imported['new'])} created and "
                            f"{len(imported['copied'])} unchanged")
    stuck_imports = list(ImportRun.objects.filter(status__in=["queued", "running"]).values_list("id", "status"))
    if stuck_imports:
        failures.append(f"imports still queued/running: {stuck_imports}")

    runs = list(TrainingRun.objects.order_by("id").values("id", "kind", "status", "is_published", "attempts",
                                                         "trigger", "error", "finished_at"))
    published = {}
    for kind in KINDS:
        live = [r for r in runs if r["kind"] == kind and r["is_published"]]
        if len(live) != 1:
            failures.append(f"{kind}: {len(live)} published runs")
        else:
            published[kind] = live[0]
    stuck = [(r["id"], r["kind"], r["status"]) for r in runs if r["status"] in ("queued", "running")]
    if stuck:
        failures.append(f"training runs still queued/running: {stuck}")
    dead = [r["id"] for r in runs if r["status"] in ("failed", "cancelled", "queued", "running")]
    leftovers = {m.__name__: m.objects.filter(run_id__in=dead).count()
                 for m in (CustomerSegment, Forecast, Suggestion, SimilarProduct, Prospect, Segment)}
    if any(leftovers.values()):
        failures.append(f"insight rows of failed/cancelled/unfinished runs: {leftovers}")
    succeeded = {kind: {r["id"] for r in runs if r["kind"] == kind and r["status"] == "succeeded"} for kind in KINDS}
    finished = {kind: {r["finished_at"] for r in runs if r["kind"] == kind and r["status"] == "succeeded"}
                for kind in KINDS}
    stats = result["stats"]
    for shown, kind in (("segment", "segmentation"), ("forecast", "forecast")):
        bad = stats.seen_runs[shown] - succeeded[kind]
        if bad:
            failures.append(f"the load was shown {shown} rows of runs that never succeeded: {sorted(bad)}")
    for kind, values in stats.seen_computed.items():
        bad = {v for v in values if v is not None and _parse_time(v) not in finished.get(kind, set())}
        if bad:
            failures.append(f"the load was shown {kind} insights computed at {sorted(bad)[:3]}, no succeeded run's")

    api_failures = api_sample(args, data, published)
    failures += api_failures

    statuses = Counter()
    for counter in stats.statuses.values():
        statuses.update(counter)
    errors = {s: n for s, n in statuses.items() if n and not (isinstance(s, int) and 200 <= s < 300) and s != STALE_PAGE}
    stale_pages = statuses[STALE_PAGE]
    server_errors = sum(n for s, n in errors.items() if not isinstance(s, int) or s >= 500)
    if errors:
        failures.append(f"{sum(errors.values())} requests failed: {errors}")
    if not result["settled"]:
        failures.append("imports or training runs did not finish within the settle time")
    kill = state["sigkill"] or {}
    killed_runs = [next((r for r in runs if r["id"] == k["id"]), None) for k in kill.get("runs", [])]
    for run in filter(None, killed_runs):
        # Taken over (queued again by the sweep, trained by another worker), or failed because a newer
        # queued run of its kind replaced it and that one finished.
        replaced = run["status"] == "failed" and "replaces" in run["error"] and any(
            r["kind"] == run["kind"] and r["id"] > run["id"] and r["status"] in ("succeeded", "rejected")
            for r in runs)
        taken_over = run["status"] in ("succeeded", "rejected") and (
            run["attempts"] >= 2 or kill.get("signal") == "SIGTERM")  # a warm shutdown lets the run finish
        if not (replaced or taken_over):
            failures.append(f"killed {run['kind']} run #{run['id']} ended {run['status']} after {run['attempts']} "
                            f"attempts: {run['error'][:200]}")
    return {"failures": failures, "lost": len(lost), "duplicated": duplicated, "wrong": len(wrong) + len(wrong_unsure),
            "unknown": unknown_count, "acked": len(ledger.acked), "uncertain": len(ledger.uncertain),
            "import": import_summary, "runs": runs, "published": {k: v["id"] for k, v in published.items()},
            "killed_runs": killed_runs, "errors": errors, "stale_pages": stale_pages, "server_errors": server_errors,
            "leftovers": leftovers}


def _parse_time(value: str):
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def api_sample(args, data: dict, published: dict) -> list:
    """For random customers, the API's insights are exactly the published runs' rows."""
    from ml.models import Suggestion

    if len(published) != len(KINDS):
        return []
    api = Api(args.port, data["token"], Stats())
    finished = {k: r["finished_at"] for k, r in published.items()}
    published = {k: r["id"] for k, r in published.items()}
    failures = []
    for customer_id in random.Random(7).sample(data["customer_ids"], API_SAMPLE):
        status, body = api.call("check", "GET", f"/api/v1/customers/{customer_id}/")
        if status != 200:
            failures.append(f"customer {customer_id}: API answered {status}")
            continue
        insights = body["insights"]
        if insights["no_profiling"]:
            continue
        if insights["segment"] and insights["segment"]["run_id"] != published["segmentation"]:
            failures.append(f"customer {customer_id}: segment of run {insights['segment']['run_id']}")
        if insights["forecast"] and insights["forecast"]["run_id"] != published["forecast"]:
            failures.append(f"customer {customer_id}: forecast of run {insights['forecast']['run_id']}")
        for kind, at in insights["computed_at"].items():
            if at and _parse_time(at) != finished[kind]:
                failures.append(f"customer {customer_id}: {kind} computed at {at}, the published run at {finished[kind]}")
        stored = defaultdict(list)
        for kind, sku in Suggestion.objects.filter(run_id=published["recommendation"], customer_id=customer_id) \
                .order_by("kind", "rank").values_list("kind", "product__sku"):
            stored["recommendations" if kind == "recommendation" else "reorder"].append(sku)
        for key in ("recommendations", "reorder"):
            if [s["sku"] for s in insights[key]] != stored[key]:
                failures.append(f"customer {customer_id}: {key} differ from the published run's")
    return failures[:10]


# --- report -----------------------------------------------------------------------------------------------

def percentile(values: list, p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def report(args, data: dict, result: dict, outcome: dict) -> str:
    stats, ledger = result["stats"], result["ledger"]
    total = sum(len(v) for v in stats.latencies.values())
    everything = [x for v in stats.latencies.values() for x in v]
    lines = [f"Soak: {result['load_seconds']:.0f} s of load, {args.concurrency} threads, "
             f"{len(data['customer_ids']):,} customers, {data['seed_count']:,} seed interactions; "
             f"{os.cpu_count()} CPUs; load average {result['load'][0][0]:.2f} before, {result['load'][1][0]:.2f} after",
             "",
             "| endpoint | requests | errors | p50 ms | p95 ms | p99 ms |",
             "|---|---:|---:|---:|---:|---:|"]
    for endpoint in sorted(stats.latencies, key=lambda e: -len(stats.latencies[e])):
        values = stats.latencies[endpoint]
        errs = sum(n for s, n in stats.statuses[endpoint].items()
                   if not (isinstance(s, int) and 200 <= s < 300) and s != STALE_PAGE)
        lines.append(f"| {endpoint} | {len(values):,} | {errs} | {1000 * percentile(values, 50):.1f} | "
                     f"{1000 * percentile(values, 95):.1f} | {1000 * percentile(values, 99):.1f} |")
    lines.append(f"| **all** | **{total:,}** ({total / result['load_seconds']:.1f}/s) | "
                 f"**{sum(outcome['errors'].values())}** | {1000 * percentile(everything, 50):.1f} | "
                 f"{1000 * percentile(everything, 95):.1f} | {1000 * percentile(everything, 99):.1f} |")
    lines += ["",
              f"- errors by status: {dict(outcome['errors']) or 'none'} (5xx and timeouts: {outcome['server_errors']}); "
              f"segment list pages gone because a retrain "
              f"replaced the segment (client race, not an error): {outcome['stale_pages']}",
              f"- interactions: {ledger.counts['items sent']:,} sent by the bulk door in "
              f"{len(stats.latencies['bulk upsert']):,} requests ({ledger.counts['batches re-sent unchanged']} "
              f"batches re-sent unchanged, {ledger.counts['batches re-sent changed']} with changed amounts), "
              f"{outcome['acked']:,} acknowledged, {outcome['uncertain']} never acknowledged; "
              f"import {outcome['import']}",
              f"- **lost rows {outcome['lost']}, duplicated rows {outcome['duplicated']}**, rows with other values "
              f"than acknowledged {outcome['wrong']}, rows the ledger does not know {outcome['unknown']}, "
              f"unexpected bulk answers {len(ledger.violations)}",
              "- published runs: " + ", ".join(f"{k} #{v}" for k, v in outcome["published"].items())
              + "; runs by status: " + ", ".join(f"{s} {n}" for s, n in
                                                   Counter(r["status"] for r in outcome["runs"]).items())
              + "; insight rows of failed runs: " + str(sum(outcome["leftovers"].values())),
              "- killed run(s): " + ("; ".join(f"{r['kind']} #{r['id']} ended {r['status']} after {r['attempts']} "
                                                f"attempts" + (f" ({r['error'][:80]})" if r["error"] else "")
                                                for r in outcome["killed_runs"] if r)
                                     or "none caught training"),
              "- events: " + "; ".join(f"{t:.0f} s {m}" for t, m in result["events"]),
              "",
              "Result: " + ("**PASS**" if not outcome["failures"] else "**FAIL**: " + "; ".join(outcome["failures"]))]
    return "\n".join(lines)


METHOD = """## Soak (mixed load, worker restarts, consistency)

**Method.** `python bench/soak.py --minutes 10 --customers 20000 --write`: a fresh PostgreSQL
database (`crm_soak`) seeded with `seed_demo --customers 20000 --seed 0` (20,000 customers, fewer
than the 100,000 of the other benchmarks so seeding stays short) and retrained; gunicorn
(2 workers), one Celery worker (prefork, concurrency 1) and Celery beat on Redis, all on
127.0.0.1; `ML_STALE_AFTER_SECONDS=20`. Four client threads in a separate process (stdlib
`http.client`, no think time) mix customer detail GETs (55 %), customer list GETs (10 %), list
GETs filtered by a published segment (15 %) and bulk interaction upserts of 50 new items (20 %;
20 % of the batches are sent again unchanged, 10 % again with changed amounts, and the answers
must say so; a failed request is retried like a client would). At a quarter of the time an
import is uploaded through the API (2,000 new rows and 500 rows the bulk door already stored);
the worker gets SIGTERM while it imports and a fresh one starts. At half time a retrain of every kind is requested through the API; the worker's process
group gets SIGKILL while a run trains and a fresh one starts (beat's sweep must queue the stale
run again). After the load the script waits for every import and run to finish and checks:
every acknowledged interaction stored once with the values acknowledged (lost, duplicated,
altered, unknown rows), the import's counts, one published run per kind, none queued or running,
no rows left by failed runs, every insight the load and a final 50-customer sample saw from a
succeeded / the published run; exit status 1 otherwise. A 404 for a page of a segment that a
retrain replaced while the client still listed it (its id then filters nothing) is counted
apart, not as an error. `--swap-signals` kills the worker during the import and stops it
gracefully during the retrain instead. Figures on this shared 2-vCPU machine depend on the
other jobs running: the load average is printed with them."""


def write_benchmarks(text: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    content = path.read_text()
    section = f"{MARK_START}\n{text}\n{MARK_END}"
    if MARK_START in content and MARK_END in content:
        content = re.sub(re.escape(MARK_START) + r".*?" + re.escape(MARK_END), lambda _: section, content,
                         flags=re.DOTALL)
    else:
        content = content.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(content)


# --- main ---------------------------------------------------------------------------------------------------

def main() -> int:
    if "--embedded" in sys.argv[1:]:  # the embedded defaults' soak has its own steps and checks
        from bench.soak_embedded import main as embedded_main  # noqa: PLC0415 (only that mode needs it)

        return embedded_main(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10, help="minutes of load (default 10)")
    parser.add_argument("--customers", type=int, default=20_000,
                        help="customers to seed (default 20,000, to keep seeding and the retrains short)")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--bulk-items", type=int, default=50, help="new interactions per bulk request (default 50)")
    parser.add_argument("--import-rows", type=int, default=2000, help="new rows in the uploaded import (default 2000)")
    parser.add_argument("--settle-minutes", type=float, default=10,
                        help="at most this long to wait for imports and runs after the load (default 10)")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/crm_soak")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/7")
    parser.add_argument("--swap-signals", action="store_true",
                        help="SIGKILL the worker during the import and SIGTERM it during the retrain instead")
    parser.add_argument("--reuse", action="store_true", help="keep the database as it is (already seeded)")
    parser.add_argument("--write", action="store_true", help="write the figures into BENCHMARKS.md")
    args = parser.parse_args()
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("--database-url must be a PostgreSQL URL")
    tag = uuid.uuid4().hex[:6]
    var_dir = Path(os.environ.get("CRM_VAR_DIR", ROOT / "var" / "soak"))
    var_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DATABASE_URL": args.database_url, "REDIS_URL": args.redis_url,
           "CELERY_QUEUE": f"soak-{tag}", "CRM_VAR_DIR": str(var_dir), "MEDIA_ROOT": str(var_dir / "media"),
           "ML_STALE_AFTER_SECONDS": str(STALE_AFTER_SECONDS), "DEBUG": "false", "LOG_LEVEL": "WARNING",
           "API_USER_RATE_PER_MINUTE": "10000000", "RETRAIN_CRON": "off", "DJANGO_SETTINGS_MODULE": "crm.settings"}
    env.pop("CELERY_BROKER_URL", None)
    os.environ.update(env)
    os.environ.pop("CELERY_BROKER_URL", None)
    log(f"soak {tag}: {args.minutes:g} min, database {args.database_url}, broker {args.redis_url}, "
        f"queue soak-{tag}, logs in {var_dir}")
    prepare_database(args, env)
    django_setup()
    data = fixtures()
    args.port = free_port()
    services = Services(env, var_dir, args.port)
    try:
        result = soak(args, data, services, tag)
        outcome = check(args, data, result, tag)
    finally:
        services.stop()
        cleanup_broker(args.redis_url, env["CELERY_QUEUE"])
    text = report(args, data, result, outcome)
    print(text)
    if args.write:
        date = datetime.now(UTC).date().isoformat()
        write_benchmarks(f"{METHOD}\n\nMeasured {date}, `python bench/soak.py --minutes {args.minutes:g} "
                         f"--customers {args.customers}`.\n\n{text}")
    return 1 if outcome["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
