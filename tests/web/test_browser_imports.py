"""End-to-end in a real browser (Debian's Chromium through Playwright): a manager checks a
spreadsheet export first (dry run), sees how it was read, corrects the column mapping and
imports the same files. The worker's part is done by calling the service the worker's task
calls (crm.services.run_queued_import); the page finds out by polling, as with a worker.
Screenshots go to test-output/screenshots/.
"""
import pytest

from crm.imports import queue as services
from crm.models import Customer, ImportRun, ImportSource
from tests.web import chromium
from tests.web.test_browser import log_in, shot


@pytest.fixture(scope="module")
def browser():
    with chromium.launched() as browser:
        yield browser


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


# Excel's "CSV" in much of Europe: Windows-1252, semicolons, day-first dates, decimal commas.
EXPORT = ("Customer ID;Full Name;E-mail;Signed up;Rep\r\n"
          "S-1;Zoë Brontë;zoe@example.com;31/12/2024;\r\n"
          "S-2;Jürgen Müßig;not-an-email;01/02/2024;\r\n"
          ";No key;;;\r\n")


def _latest():
    return ImportRun.objects.latest("pk")


def test_browser_manager_checks_an_upload_first_then_imports_it(page, live_server, manager, media, tmp_path):
    export = tmp_path / "kunden.csv"
    export.write_bytes(EXPORT.encode("cp1252"))
    log_in(page, live_server, "boss", "pw-boss-Secret1")

    page.goto(live_server.url + "/imports/")
    page.get_by_label("customers.csv").set_input_files(str(export))
    page.get_by_label("Dates").select_option("dmy")
    page.get_by_label("Source (optional)").fill("Shop export")
    page.get_by_role("button", name="Check first (dry run)").click()
    page.wait_for_url("**/imports/*/")
    checked = _latest()
    assert checked.dry_run
    services.run_queued_import(checked.pk)  # what the worker's task does
    page.wait_for_selector("[data-format]", timeout=30_000)  # the page polls, then reloads
    assert "Dry run: nothing was written." in page.locator("main").inner_text()

    main = page.locator("main").inner_text()
    assert "Read as Windows-1252, semicolon-delimited" in main
    assert "dry run: 1 of 3 rows would be rejected, 1 would load with warnings" in main
    preview = page.get_by_role("table", name="First rows of the customers file as read").inner_text()
    assert "Zoë Brontë" in preview and "2024-12-31" in preview and "external_id is empty" in preview
    mapping = page.get_by_role("table", name="Column mapping of the customers file")
    assert mapping.get_by_label("Customer ID").input_value() == "external_id"  # suggested
    assert mapping.get_by_label("Signed up").input_value() == "signup_date"
    assert not Customer.objects.exists()
    shot(page, "manager-import-dry-run")

    mapping.get_by_label("E-mail").select_option("")  # keep the e-mails as an attribute instead
    page.get_by_role("button", name="Import these files").click()
    page.wait_for_url(lambda url: url.rstrip("/").endswith(f"/imports/{checked.pk + 1}"))
    services.run_queued_import(checked.pk + 1)
    page.wait_for_selector("text=completed, 1 of 3 rows rejected", timeout=30_000)

    zoe = Customer.objects.get(external_id="S-1")
    assert (zoe.name, str(zoe.signup_date), zoe.email, zoe.attributes) == (
        "Zoë Brontë", "2024-12-31", "", {"E-mail": "zoe@example.com"})
    assert Customer.objects.count() == 2 and not _latest().dry_run
    assert ImportSource.objects.get(name="Shop export").date_format == "dmy"
    assert page.locator("h1 .badge.partial").count() == 1  # never a green "succeeded"
    shot(page, "manager-import-after-dry-run")
