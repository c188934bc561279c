"""Deep pages of a long customer list, before (offset, ``?page=N``) and after (keyset, cursor).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crm_bench_api13 CRM_VAR_DIR=/tmp/bench-var \\
        python bench/list_bench.py [--repeats 7] [--write]

Times page 1, 50, 200 and the last page of the largest published segment (50 customers a page),
sorted by name and by churn risk, through the API (``/api/v1/customers/?segment=…``) and the web
list (``/customers/?segment=…``), in-process with Django's test client as a manager: each page
read by offset (``page=N``: what clients did before) and by keyset (the ``next`` link's cursor
from the page before it, ``page=last``, which reads the end backwards), median of ``--repeats``
after one warm-up. Also the API's page 1 with and without suggestions (``include=``) and its
size. ``--write`` puts the table in BENCHMARKS.md ("Deep list pages"). The only write to the
database: a ``bench-manager`` user when it has no manager.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from html import unescape
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

from bench.completejourney import code_commit, replace_section  # noqa: E402
from crm.models import ROLE_MANAGER, Customer  # noqa: E402
from ml import selectors as ml_selectors  # noqa: E402

PER_PAGE = 50
PAGES = ("1", "50", "200", "last")
START, END = "<!-- list-bench:start -->", "<!-- list-bench:end -->"


def timed(client, url, repeats):
    """(median ms, response) of GET url, after one warm-up."""
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return statistics.median(times), response


def api_urls(client, base, page, last):
    """(offset url, keyset url) of API page ``page`` ("last" or a number)."""
    if page == "last":
        return f"{base}&page={last}", f"{base}&page=last"
    if page == "1":
        return f"{base}&page=1", base
    return f"{base}&page={page}", client.get(f"{base}&page={int(page) - 1}").json()["next"]


def web_urls(client, base, page, last):
    if page == "last":
        return f"{base}&page={last}", f"{base}&page=last"
    if page == "1":
        return f"{base}&page=1", base
    body = client.get(f"{base}&page={int(page) - 1}").content.decode()
    return f"{base}&page={page}", "/customers/?" + unescape(re.search(r'<a href="\?([^"]*)" rel="next"', body).group(1))


def manager_user():
    User = get_user_model()
    manager = User.objects.filter(groups__name=ROLE_MANAGER).first()
    if manager is None:
        manager, _ = User.objects.get_or_create(username="bench-manager")
        manager.groups.add(Group.objects.get_or_create(name=ROLE_MANAGER)[0])
    return manager


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--write", action="store_true", help="write the figures into BENCHMARKS.md")
    args = parser.parse_args()
    setup_test_environment()
    client = Client()
    client.force_login(manager_user())
    segment = ml_selectors.segments().order_by("-size").first()
    load_start = os.getloadavg()
    print(f"{Customer.objects.count():,} customers; segment {segment.name!r} ({segment.size:,}), {PER_PAGE} a page, "
          f"{connection.vendor}; load {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}")
    rows = []
    for ordering, label in (("name", "by name"), ("-churn", "by churn risk")):
        for door, base, urls in (("API", f"/api/v1/customers/?segment={segment.pk}&ordering={ordering}&page_size={PER_PAGE}",
                                  api_urls),
                                 ("web", f"/customers/?segment={segment.pk}&sort={ordering}&per_page={PER_PAGE}",
                                  web_urls)):
            count = client.get(f"/api/v1/customers/?segment={segment.pk}&page_size=1").json()["count"]
            last = (count - 1) // PER_PAGE + 1
            for page in PAGES:
                offset_url, keyset_url = urls(client, base, page, last)
                before, _ = timed(client, offset_url, args.repeats)
                after, _ = timed(client, keyset_url, args.repeats)
                name = f"page {last} (last)" if page == "last" else f"page {page}"
                rows.append((f"{door}, {label}", name, before, after))
                print(f"  {door:<3} {label:<14} {name:<16} offset {before:7.1f} ms   keyset {after:7.1f} ms")
    base = f"/api/v1/customers/?segment={segment.pk}&page_size={PER_PAGE}"
    full, full_response = timed(client, base, args.repeats)
    lean, lean_response = timed(client, base + "&include=", args.repeats)
    sizes = (len(full_response.content) / 1024, len(lean_response.content) / 1024)
    print(f"  API page 1 with suggestions {full:.1f} ms ({sizes[0]:.0f} KB), include= {lean:.1f} ms ({sizes[1]:.0f} KB)")
    load_end = os.getloadavg()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(uptime)
    if args.write:
        write(rows, segment, count, (full, lean), sizes, load_start, load_end, args.repeats)


def write(rows, segment, count, times, sizes, load_start, load_end, repeats):
    table = "\n".join(f"| {where} | {page} | {before:.1f} | **{after:.1f}** |" for where, page, before, after in rows)
    section = f"""{START}
## Deep list pages

**Method.** `python bench/list_bench.py --write` (DATABASE_URL of `crm_bench_api13`: `seed_demo
--customers 100000`, `retrain --kind all --sync`, `ANALYZE`; 100,000 customers). The largest
published segment, {segment.name!r} ({count:,} customers), 50 a page, as a manager, in-process
with Django's test client (server time, no network): each page read by offset (`?page=N`, what
the API and the web list did before) and by keyset (the `next` link's cursor of the page before
it; `page=last`, which reads the list's end backwards), median of {repeats} after one warm-up.
PostgreSQL 15 on the same 2-core machine, other helpers working; 1-minute load
{load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end. Code as of commit {code_commit()}.

| list | page | offset ms | keyset ms |
|---|---|---:|---:|
{table}

API page 1 of that segment with suggestions: {times[0]:.1f} ms, {sizes[0]:.0f} KB of JSON; with `include=`
(no suggestions, not read): {times[1]:.1f} ms, {sizes[1]:.0f} KB.

**Reading.** "Offset" is this code's `?page=N` path (the SQL main had, but for one row more
than the page, read to know whether another follows); "keyset" the `next` links clients are
now given. A keyset page is the same index range read at any depth; every page, either way,
also counts the list (the `count` and the "Page n of N" line): that count and page 1 are the
floor. Sorted by churn risk within a segment, page 1 is slow by the data: the read walks the
forecast index from the highest churn and probes each row's segment until 50 are members, and
few high-churn customers are loyal ones; deeper pages start where members are denser. The last
page by a forecast value also counts the customers holding one, to know whether any without
it end the list (reading those is an anti-join over the segment).
{END}"""
    replace_section(START, END, section)


if __name__ == "__main__":
    main()
