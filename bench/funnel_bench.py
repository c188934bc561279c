"""The Models page's suggestion funnel and measured uplift on a large base.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crm_bench_funnel CRM_VAR_DIR=/tmp/bench-var \\
        python bench/funnel_bench.py [--customers 50000] [--repeats 5]

Builds its own data in an empty database (migrated here; it refuses a database that holds
customers): ``--customers`` customers, 2,000 products, one published recommendation run with
8 cross-sell and 2 reorder suggestions per customer (10 % of customers in the control group),
purchases of suggested and other products within the run's horizon, and the salespeople's marks
on 5 % of the suggestions. Then times ``ml.funnel.suggestion_funnel`` (the default period) and
``ml.funnel.measured_uplift`` (the live run), median of ``--repeats`` after one warm-up, with
PostgreSQL's defaults (JIT on, work_mem 4 MB), JIT off, and JIT off with the larger work_mem the
Models page reads them with (``crm.sql.report_read`` in ``ml.funnel.page_figures``), then
``page_figures`` itself. Prints the
figures and the load average; the data stays for a re-run (``--reuse``).
"""
import argparse
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from crm import sql  # noqa: E402
from crm.models import Customer, Interaction, Product  # noqa: E402
from ml import funnel  # noqa: E402
from ml.models import Suggestion, SuggestionEvent, TrainingRun  # noqa: E402

PRODUCTS = 2000
CROSS_SELL, REORDER = 8, 2
MARKED_SHARE = 0.05
BATCH = 20000


def build(n_customers: int, rng: random.Random) -> None:
    now = timezone.now()
    published = now - timedelta(days=30)
    Product.objects.bulk_create([Product(sku=f"P{i:05d}", name=f"Product {i}", category=f"C{i % 40}")
                                 for i in range(PRODUCTS)], batch_size=BATCH)
    products = list(Product.objects.values_list("id", flat=True))
    Customer.objects.bulk_create([Customer(external_id=f"B{i:07d}", name=f"Customer {i}")
                                  for i in range(n_customers)], batch_size=BATCH)
    customers = list(Customer.objects.values_list("id", flat=True))
    run = TrainingRun.objects.create(kind=TrainingRun.Kind.RECOMMENDATION, status=TrainingRun.Status.SUCCEEDED,
                                     horizon_days=90, as_of=published.date(), published_at=published)
    suggestions, events, purchases = [], [], []
    for cid in customers:
        control = rng.random() < 0.10
        picks = rng.sample(products, CROSS_SELL + REORDER)
        for rank, pid in enumerate(picks):
            kind = Suggestion.Kind.RECOMMENDATION if rank < CROSS_SELL else Suggestion.Kind.REORDER
            suggestions.append(Suggestion(run=run, customer_id=cid, kind=kind, rank=rank, product_id=pid,
                                          score=1.0 / (rank + 1), reason="bench", control=control))
            if not control and rng.random() < MARKED_SHARE:
                events.append(SuggestionEvent(customer_id=cid, product_id=pid, kind=kind, run=run,
                                              event=rng.choice(["offered", "accepted", "declined"]),
                                              at=published + timedelta(days=rng.uniform(0, 29))))
            if rng.random() < 0.08:
                purchases.append((cid, pid))
        purchases.extend((cid, rng.choice(products)) for _ in range(8))
        if len(suggestions) >= BATCH:
            Suggestion.objects.bulk_create(suggestions, batch_size=BATCH)
            suggestions = []
    Suggestion.objects.bulk_create(suggestions, batch_size=BATCH)
    SuggestionEvent.objects.bulk_create(events, batch_size=BATCH)
    rows = [Interaction(external_id=f"BI{n}", customer_id=cid, product_id=pid, type=Interaction.Type.PURCHASE,
                        amount=10,
                        quantity=1, occurred_at=published + timedelta(days=rng.uniform(0, 29)))
            for n, (cid, pid) in enumerate(purchases)]
    Interaction.objects.bulk_create(rows, batch_size=BATCH)


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=50000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reuse", action="store_true", help="time the data an earlier run built")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    if not args.reuse:
        if Customer.objects.exists():
            sys.exit("the database holds customers: give an empty one (or --reuse a bench database)")
        start = time.perf_counter()
        build(args.customers, random.Random(7))
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # what autovacuum would do after such a load
        print(f"built {args.customers:,} customers in {time.perf_counter() - start:.0f} s")
    run = TrainingRun.objects.filter(kind=TrainingRun.Kind.RECOMMENDATION).latest("published_at")
    print(f"suggestions {Suggestion.objects.filter(run=run).count():,}, marks {SuggestionEvent.objects.count():,}, "
          f"purchases {Interaction.objects.count():,}; {connection.vendor}; load {os.getloadavg()[0]:.2f}")
    first, last = funnel.default_period()
    rows = []
    variants = [("server default", None)]
    if connection.vendor == "postgresql":
        variants = [("server defaults (JIT on, work_mem 4MB)", ("on", "4MB")),
                    ("JIT off, work_mem 4MB", ("off", "4MB")),
                    (f"JIT off, work_mem {sql.REPORT_WORK_MEM} (the Models page's crm.sql.report_read)",
                     ("off", sql.REPORT_WORK_MEM))]
    for label, setting in variants:
        if setting:
            with connection.cursor() as cursor:
                cursor.execute(f"SET jit = {setting[0]}")
                cursor.execute(f"SET work_mem = '{setting[1]}'")
        f = timed(lambda: funnel.suggestion_funnel(first, last), args.repeats)
        u = timed(lambda: funnel.measured_uplift(run), args.repeats)
        rows.append((label, f, u))
    page = timed(lambda: funnel.page_figures(first, last, run), args.repeats)
    print(f"page_figures (both, read as the page reads them): {page:.3f} s")
    print("| queries | funnel (s) | uplift (s) |\n|---|---:|---:|")
    for label, f, u in rows:
        print(f"| {label} | {f:.3f} | {u:.3f} |")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
