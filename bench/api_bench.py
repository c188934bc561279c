"""REST API throughput and latency under load from a separate process (wrk), bounded in time.

Serves the API with gunicorn (2 workers) on 127.0.0.1 against the PostgreSQL database in
DATABASE_URL (seeded with ``seed_demo --customers 100000`` and retrained), then runs wrk with
4 connections for each scenario and prints requests/s and p50/p95/p99:

- customer detail with insights:   GET /api/v1/customers/{id}/ (random ids)
- customer list by segment:        GET /api/v1/customers/?segment={id}&page_size=50
- bulk interaction create:         POST /api/v1/interactions/bulk/ with ITEMS new items each

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crm_bench_api CRM_VAR_DIR=/tmp/api-bench-var \\
        python bench/api_bench.py [--seconds 15] [--connections 4] [--items 100]

Needs ``wrk`` on PATH. Interactions the run creates (external_id ``apibench-*``) are deleted at the end.
"""
import argparse
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LUA_COMMON = r"""
local counter = 0
local tid = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function done(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  io.write(string.format("RESULT %d %d %.3f %.3f %.3f %.3f %d\n", summary.requests, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.mean / 1000, errors))
end
"""

LUA_GET = LUA_COMMON + r"""
local paths = {__PATHS__}
request = function()
  counter = counter + 1
  return wrk.format("GET", paths[(counter * 7919 + tid * 104729) % #paths + 1], {["Authorization"] = "Token __TOKEN__"})
end
"""

LUA_BULK = LUA_COMMON + r"""
local customers = {__CUSTOMERS__}
request = function()
  counter = counter + 1
  local items = {}
  for i = 1, __ITEMS__ do
    local c = customers[(counter * __ITEMS__ + i + tid * 7) % #customers + 1]
    items[i] = string.format('{"external_id":"apibench-%d-%d-%d","customer_external_id":"%s","type":"purchase",'
      .. '"occurred_at":"2025-06-%02d","product_sku":"__SKU__","quantity":1,"amount":"9.90"}', tid, counter, i, c,
      1 + i % 28)
  end
  local body = '{"items":[' .. table.concat(items, ",") .. ']}'
  return wrk.format("POST", "/api/v1/interactions/bulk/",
    {["Authorization"] = "Token __TOKEN__", ["Content-Type"] = "application/json"}, body)
end
"""


def script(template: str, **values) -> str:
    for name, value in values.items():
        template = template.replace(f"__{name.upper()}__", str(value))
    return template


def _django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def prepare(n_paths: int):
    """A manager's token, random customer ids, the largest segment, customers and a product for bulk."""
    from django.contrib.auth.models import Group, User
    from django.db import connection

    from crm.models import ROLE_MANAGER, Customer, Product
    from crm.tokens import create_token
    from ml.selectors import segments

    if connection.vendor != "postgresql":
        raise SystemExit("point DATABASE_URL at the seeded PostgreSQL database (e.g. crm_bench_api)")
    user, _ = User.objects.get_or_create(username="api-bench", defaults={"is_staff": True})
    user.groups.add(Group.objects.get_or_create(name=ROLE_MANAGER)[0])
    ids = list(Customer.objects.values_list("id", flat=True))
    if len(ids) < 1000:
        raise SystemExit("seed the database first: manage.py seed_demo --customers 100000, then retrain")
    rng = random.Random(0)
    segment = segments().first()
    if segment is None:
        raise SystemExit("no published segmentation: run manage.py retrain --kind segmentation --sync")
    return {
        "token": create_token(user, name="api-bench", expires_in_days=1)[1],
        "customers": len(ids),
        "detail_paths": [f"/api/v1/customers/{i}/" for i in rng.sample(ids, n_paths)],
        "segment": (segment.pk, segment.name, segment.size),
        "bulk_customers": list(Customer.objects.order_by("?").values_list("external_id", flat=True)[:2000]),
        "sku": Product.objects.filter(active=True).values_list("sku", flat=True).first(),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(port: int, threads: int) -> subprocess.Popen:
    # The deployed settings (gunicorn.conf.py: 2 sync workers); --threads N > 1 runs threaded workers.
    env = {**os.environ, "DEBUG": "false", "API_USER_RATE_PER_MINUTE": "10000000", "LOG_LEVEL": "WARNING"}
    workers = ["--worker-class", "sync", "--threads", "1"] if threads == 1 else ["--threads", str(threads)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "crm.wsgi:application", "--workers", "2", *workers,
         "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "--access-logfile", "/dev/null"],
        cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("gunicorn did not start")


def run_wrk(url: str, script: str, seconds: int, connections: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(["wrk", "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{seconds}s",
                              "--timeout", "10s", "-s", f.name, url], capture_output=True, text=True,
                             timeout=seconds + 60, check=True).stdout
    finally:
        os.unlink(f.name)
    match = re.search(r"RESULT (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+) (\d+)", out)
    requests, duration_us, p50, p95, p99, mean, errors = match.groups()
    seconds_run = int(duration_us) / 1e6
    return {"requests": int(requests), "rps": int(requests) / seconds_run, "p50_ms": float(p50),
            "p95_ms": float(p95), "p99_ms": float(p99), "mean_ms": float(mean), "errors": int(errors)}


def warm(url: str, path: str, token: str, n: int = 20):
    import urllib.request

    for _ in range(n):
        request = urllib.request.Request(url + path, headers={"Authorization": f"Token {token}"})  # noqa: S310 (http://127.0.0.1)
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            response.read()


def _ticks(pids) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


def _app_and_db_pids(master: int) -> tuple[list, list]:
    """gunicorn's processes, and the PostgreSQL backends connected to this database (not ours)."""
    from django.db import connection

    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                       "AND pid <> pg_backend_pid()")
        backends = [row[0] for row in cursor.fetchall()]
    return [master, *map(int, children)], backends


def measured(master: int, run):
    """run() -> wrk result, plus the CPU time gunicorn and PostgreSQL spent per request (a figure
    that other load on the machine changes far less than requests/s)."""
    app, db = _app_and_db_pids(master)
    before = _ticks(app), _ticks(db)
    result = run()
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    result["app_cpu_ms"] = (_ticks(app) - before[0]) * tick_ms / max(result["requests"], 1)
    result["db_cpu_ms"] = (_ticks(db) - before[1]) * tick_ms / max(result["requests"], 1)
    return result


def cleanup():
    from crm.interactions import refresh_last_purchase
    from crm.models import Interaction

    ids = set(Interaction.objects.filter(external_id__startswith="apibench-").values_list("customer_id", flat=True))
    deleted = Interaction.objects.filter(external_id__startswith="apibench-").delete()[0]
    refresh_last_purchase(ids)
    return deleted


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15, help="duration of each scenario (default 15)")
    parser.add_argument("--connections", type=int, default=4, help="concurrent connections (default 4)")
    parser.add_argument("--items", type=int, default=100, help="items per bulk request (default 100)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads per gunicorn worker (default 1: sync workers, as gunicorn.conf.py)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    _django()
    data = prepare(2000)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    load_before = os.getloadavg()
    gunicorn = start_gunicorn(port, args.threads)
    results = {}
    try:
        seg_id, seg_name, seg_size = data["segment"]
        list_path = f"/api/v1/customers/?segment={seg_id}&page_size=50"
        warm(url, data["detail_paths"][0], data["token"])
        warm(url, list_path, data["token"], 5)
        quoted = ", ".join(f'"{p}"' for p in data["detail_paths"])
        results["customer detail with insights"] = measured(gunicorn.pid, lambda: run_wrk(
            url, script(LUA_GET, paths=quoted, token=data["token"]), args.seconds, args.connections))
        pages = ", ".join(f'"{list_path}&page={n}"' for n in range(1, max(2, min(seg_size // 50, 200)) + 1))
        results[f"customer list, segment {seg_name!r} ({seg_size:,}), 50/page"] = measured(gunicorn.pid, lambda: run_wrk(
            url, script(LUA_GET, paths=pages, token=data["token"]), args.seconds, args.connections))
        customers = ", ".join(json.dumps(c) for c in data["bulk_customers"])
        bulk = measured(gunicorn.pid, lambda: run_wrk(
            url, script(LUA_BULK, customers=customers, token=data["token"], items=args.items, sku=data["sku"]),
            args.seconds, args.connections))
        bulk["items_per_s"] = bulk["rps"] * args.items
        results[f"bulk interaction create, {args.items} items/request"] = bulk
    finally:
        gunicorn.terminate()
        try:
            gunicorn.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(gunicorn.pid, 9)
        load_after = os.getloadavg()
        removed = cleanup()
    print(f"API benchmark: gunicorn 2 workers x {args.threads} thread(s), wrk {args.connections} connections, {args.seconds} s per scenario, "
          f"PostgreSQL, {data['customers']:,} customers; {os.cpu_count()} CPUs")
    print(f"load average before {load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} / {load_after[1]:.2f} / {load_after[2]:.2f}")
    print(f"{'scenario':58} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7} "
          f"{'app CPU':>8} {'DB CPU':>7}  (ms per request)")
    for name, r in results.items():
        extra = f"  ({r['items_per_s']:,.0f} items/s)" if "items_per_s" in r else ""
        print(f"{name:58} {r['rps']:8.1f} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} {r['p99_ms']:8.1f} "
              f"{r['errors']:7d} {r['app_cpu_ms']:8.2f} {r['db_cpu_ms']:7.2f}{extra}")
    print(f"(removed {removed:,} interactions the bulk scenario created)")


if __name__ == "__main__":
    main()
