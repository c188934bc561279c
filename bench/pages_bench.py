"""Server time of the customer list and the customer page, in-process with Django's test client.

    CRM_VAR_DIR=/tmp/bench-var python manage.py seed_demo --customers 100000
    CRM_VAR_DIR=/tmp/bench-var python manage.py retrain --kind segmentation --sync
    CRM_VAR_DIR=/tmp/bench-var python manage.py retrain --kind forecast --sync
    CRM_VAR_DIR=/tmp/bench-var python -m bench.pages_bench [--requests 50]

Prints median and p95 per page (target: < 100 ms each) for a manager (sees every customer)
and a sales rep (the row-level filter applies): the default list, lists sorted or filtered by
insights (churn, CLV, value at risk, expected spend, segment, churn band, CLV range), paging,
search and the customer page. Works on SQLite and on PostgreSQL (set DATABASE_URL). The only write: a ``bench-manager`` user is
created when the database has no manager (seed_demo makes sales reps only).
"""
import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

from crm.models import ROLE_MANAGER, ROLE_SALES_REP, Customer  # noqa: E402
from crm.selectors import visible_customers  # noqa: E402
from ml import selectors as ml_selectors  # noqa: E402

TARGET_MS = 100


def insight_lists(segment):
    """(label, query) of the customer lists sorted or filtered by insight values (the issue's cases)."""
    lists = [
        ("customer list, sorted by value at risk", "sort=-value_at_risk"),
        ("customer list, sorted by churn risk", "sort=-churn"),
        ("customer list, sorted by CLV (ascending)", "sort=clv"),
        ("customer list, sorted by expected spend", "sort=-spend"),
        ("customer list, churn band high (by name)", "churn_band=high"),
        ("customer list, CLV 500-2000, by value at risk", "clv_min=500&clv_max=2000&sort=-value_at_risk"),
        ("customer list, sorted by segment", "sort=segment"),
    ]
    if segment is not None:
        lists += [(f"customer list, segment {segment.name!r} (by name)", f"segment={segment.pk}"),
                  (f"customer list, segment {segment.name!r} by churn", f"segment={segment.pk}&sort=-churn")]
    return lists


def measure(client, label, make_url, n):
    client.get(make_url())
    times = []
    for _ in range(n):
        url = make_url()
        start = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    times.sort()
    median = statistics.median(times)
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
    flag = "ok" if p95 < TARGET_MS else "SLOW"
    print(f"  {label:<52} median {median:7.1f} ms   p95 {p95:7.1f} ms   {flag}")
    return median, p95


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    setup_test_environment()
    rng = random.Random(args.seed)
    User = get_user_model()
    print(f"{Customer.objects.count():,} customers")
    manager = User.objects.filter(groups__name=ROLE_MANAGER).first()
    if manager is None:
        from django.contrib.auth.models import Group

        manager, _ = User.objects.get_or_create(username="bench-manager")
        manager.groups.add(Group.objects.get_or_create(name=ROLE_MANAGER)[0])
    rep = User.objects.filter(groups__name=ROLE_SALES_REP, customers__isnull=False).distinct().first()
    users = [manager, rep]
    segment = ml_selectors.segments().first()
    results = {}
    for user in users:
        if user is None:
            continue
        client = Client()
        client.force_login(user)
        ids = list(visible_customers(user).values_list("pk", flat=True)[:100000])
        sample = [rng.choice(ids) for _ in range(args.requests + 1)]
        it = iter(sample)
        role = ROLE_MANAGER if user.groups.filter(name=ROLE_MANAGER).exists() else ROLE_SALES_REP
        print(f"{role} {user.username!r} ({len(ids):,} visible customers)")
        pages = iter(range(1, 10**9))
        results[(role, "list")] = measure(client, "customer list, page 1 (by name)", lambda: "/customers/", args.requests)
        for label, query in insight_lists(segment):
            results[(role, label)] = measure(client, label, lambda query=query: f"/customers/?{query}", args.requests)
        measure(client, "customer list, paging (pages 1..n, 100 per page)",
                lambda pages=pages: f"/customers/?per_page=100&page={next(pages)}", args.requests)
        measure(client, "customer list, search 'smith'", lambda: "/customers/?q=smith", args.requests)
        results[(role, "detail")] = measure(client, "customer page (random customers)",
                                            lambda it=it: f"/customers/{next(it)}/", args.requests)
    return results


if __name__ == "__main__":
    main()
