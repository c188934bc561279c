"""End-to-end in a real browser (Debian's Chromium, tests/web/chromium.py): a manager finds a
duplicate customer and a future-dated meeting on the data-quality page, merges the duplicate
into the customer they keep, and deletes the meeting."""
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from crm.models import AuditEvent, Customer, Interaction
from tests.web import test_browser

SHOTS = test_browser.SHOTS
browser, page = test_browser.browser, test_browser.page  # the same Chromium and page fixtures


def test_browser_manager_merges_a_duplicate_and_deletes_a_future_meeting(page, live_server, manager, rep):
    old = Customer.objects.create(external_id="CRM-7", name="Ann Smith", email="ann@example.com", company="Acme")
    new = Customer.objects.create(external_id="SHOP-99", name="Ann Smith", email="Ann@Example.com ", owner=rep,
                                  phone="+44 20 7946 0958")
    for i, customer in enumerate((old, new, new)):
        Interaction.objects.create(external_id=f"buy-{i}", customer=customer, type="purchase", amount=Decimal("20"),
                                   occurred_at=timezone.now() - timedelta(days=10 + i))
    planned = Interaction.objects.create(external_id="planned", customer=old, type="meeting",
                                         occurred_at=datetime(2030, 1, 1, 9, tzinfo=UTC), notes="next year")

    page.goto(live_server.url + "/login/")
    page.get_by_label("Username").fill("boss")
    page.get_by_label("Password").fill("pw-boss-Secret1")
    page.get_by_role("button", name="Log in").click()
    test_browser.pass_second_factor(page, "boss")
    page.wait_for_url(live_server.url + "/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Data quality").click()
    page.wait_for_url("**/data-quality/")
    group = page.get_by_role("form", name="Duplicate group 1")
    assert "same e-mail" in group.inner_text() and "SHOP-99" in group.inner_text()
    assert "next year" not in page.locator("#dates").inner_text()  # named by type and date, with an edit link
    assert "Meeting of 2030-01-01" in page.locator("#dates").inner_text()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "manager-data-quality.png"), full_page=True)

    group.get_by_label("Keep Ann Smith").nth(1).check()  # keep the shop's record, which has the owner
    group.get_by_role("button", name="Review the merge").click()
    page.wait_for_url("**/data-quality/merge/**")
    assert "Merge 1 duplicate into Ann Smith" in page.locator("h1").inner_text()
    page.screenshot(path=str(SHOTS / "manager-data-quality-merge.png"), full_page=True)
    page.get_by_role("button", name="Merge into Ann Smith").click()
    page.wait_for_url(f"**/customers/{new.pk}/")
    assert "Merged 1 duplicate into Ann Smith: 2 interactions" in page.locator(".messages").inner_text()
    assert not Customer.objects.filter(pk=old.pk).exists()
    assert Interaction.objects.filter(customer=new).count() == 4
    assert Customer.objects.get(pk=new.pk).company == "Acme"
    assert AuditEvent.objects.filter(action="merge", customer_id=new.pk).exists()

    page.get_by_role("link", name="Edit or delete the meeting of 2030-01-01 09:00").click()
    page.wait_for_url(f"**/interactions/{planned.pk}/edit/")
    page.screenshot(path=str(SHOTS / "manager-interaction-edit.png"), full_page=True)
    page.get_by_role("button", name="Delete this meeting").click()
    page.wait_for_url(f"**/customers/{new.pk}/#timeline")
    assert "Meeting of 2030-01-01 deleted." in page.locator(".messages").inner_text()
    assert not Interaction.objects.filter(pk=planned.pk).exists()
    page.goto(live_server.url + "/data-quality/")
    assert "No likely duplicates." in page.locator("#duplicates").inner_text()
