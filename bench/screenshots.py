"""The README's screenshots, retaken on the demo data of ``make run``.

    CRM_VAR_DIR=/tmp/shots-var python manage.py migrate
    CRM_VAR_DIR=/tmp/shots-var python manage.py bootstrap_demo --train
    CRM_VAR_DIR=/tmp/shots-var python bench/screenshots.py [--out static/crm/screenshots]

Before the pictures it plays a few days of the demo sales rep's work through the services (never
the database directly), as a new user would after a week, so that the pages show what they show
in use: follow-ups planned from suggestions (one overdue, two today, two this week; one of them
completed, which logs the call), and suggestions marked offered or declined. Run it once on a
fresh demo database (a second run adds the same work again). Then it serves the site on a free
local port (``runserver``, static files from the collected folder) and has Debian's Chromium log
in as the demo rep and save home.png, customer.png (the customer of the first follow-up, one
with a reorder due) and models.png, and models-funnel.png (its funnel and measured uplift).
"""
import argparse
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs a loop here

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.utils import timezone  # noqa: E402

from crm import followups  # noqa: E402
from crm.access import visible_customers  # noqa: E402
from crm.management.commands.bootstrap_demo import DEMO_USERS  # noqa: E402
from crm.models import ROLE_SALES_REP, FollowUp  # noqa: E402
from ml import insights as ml_insights  # noqa: E402
from ml import services as ml_services  # noqa: E402
from ml.insights import published_run_ids  # noqa: E402
from ml.models import Suggestion, SuggestionFeedback, TrainingRun  # noqa: E402

REP = next((name, password) for name, password, role, superuser in DEMO_USERS if role == ROLE_SALES_REP)


def a_week_of_work(rep) -> int:
    """Follow-ups and marks of the demo rep on their customers' shown suggestions; the id of the
    first follow-up's customer (one with a reorder due, where there is one)."""
    run_id = published_run_ids().get(TrainingRun.Kind.RECOMMENDATION)
    if run_id is None:
        sys.exit("no published recommendation run: run bootstrap_demo --train first")
    shown = (Suggestion.objects.filter(run_id=run_id, control=False, rank=1,
                                       customer__in=visible_customers(rep).filter(owner=rep))
             .select_related("customer", "product").order_by("-score")[:400])
    picked, products = [], set()  # different products, as a week's work would have
    for suggestion in shown:
        if suggestion.product_id not in products or len(products) >= 12:
            picked.append(suggestion)
            products.add(suggestion.product_id)
    # Customers with a reorder due first: the customer page then shows both kinds of suggestion.
    picked.sort(key=lambda sg: not ml_insights.customer_insights(sg.customer)["reorder"])
    shown = picked[:40]
    if len(shown) < 20:
        sys.exit(f"the demo rep has {len(shown)} customers with suggestions; 20 are needed")
    now = timezone.now()
    dues = [now - timedelta(days=1, hours=2), now + timedelta(hours=1), now + timedelta(hours=3),
            now + timedelta(days=2), now + timedelta(days=4), now + timedelta(hours=-1)]
    types = [FollowUp.Type.CALL, FollowUp.Type.CALL, FollowUp.Type.EMAIL, FollowUp.Type.MEETING,
             FollowUp.Type.CALL, FollowUp.Type.CALL]
    planned = []
    for suggestion, due, kind in zip(shown, dues, types):
        planned.append(ml_services.plan_followup(
            user=rep, customer=suggestion.customer, product=suggestion.product, suggestion_kind=suggestion.kind,
            due_at=due, type=kind, note=f"Offer {suggestion.product.name}", reason=suggestion.reason))
    followups.complete_followup(user=rep, followup=planned[-1], outcome="Interested; sends the order this week")
    for n, suggestion in enumerate(shown[len(dues):]):
        status = SuggestionFeedback.Status.DECLINED if n % 4 == 3 else SuggestionFeedback.Status.OFFERED
        ml_services.record_feedback(user=rep, customer=suggestion.customer, product=suggestion.product,
                                    kind=suggestion.kind, status=status)
    return planned[0].customer_id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "static" / "crm" / "screenshots"))
    args = parser.parse_args()
    rep = get_user_model().objects.get(username=REP[0])
    customer_id = a_week_of_work(rep)
    port = free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "runserver", "--noreload", "--insecure",
                               f"127.0.0.1:{port}"])
    try:
        from tests.web import chromium
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with chromium.launched() as browser:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.set_default_timeout(30_000)
            page.goto(base + "/login/")
            page.get_by_label("Username").fill(REP[0])
            page.get_by_label("Password").fill(REP[1])
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(base + "/")
            for name, path in (("home", "/"), ("customer", f"/customers/{customer_id}/"), ("models", "/models/")):
                page.goto(base + path)
                page.wait_for_load_state("networkidle")
                page.wait_for_timeout(800)  # the charts' animation
                page.screenshot(path=str(out / f"{name}.png"), full_page=True)
                print(f"{name}.png: {base}{path}")
            top = page.locator("#funnel").bounding_box()
            bottom = page.locator("#uplift-table").bounding_box()
            page.screenshot(path=str(out / "models-funnel.png"), full_page=True, clip={
                "x": 0, "y": top["y"] - 16, "width": 1280, "height": bottom["y"] + bottom["height"] + 90 - top["y"]})
            print("models-funnel.png: the funnel and the uplift of models.png")
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
