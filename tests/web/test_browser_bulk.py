"""End-to-end in a real browser (Debian's Chromium, tests/web/chromium.py): a manager ticks
customers on /customers/ (single rows, then the whole page), picks an owner and assigns them; the
list and the customer's page show the new owner. A sales rep sees no bulk controls."""
from crm.models import Customer
from tests.web import test_browser

browser, page = test_browser.browser, test_browser.page  # the same Chromium and page fixtures


def _owner_cell(page, name):
    return page.locator("table.data tbody tr").filter(has_text=name).locator("td").nth(3).inner_text()


def test_browser_manager_bulk_assigns_ticked_customers_then_the_whole_page(page, live_server, world, manager):
    test_browser.log_in(page, live_server, "boss", "pw-boss-Secret1")
    page.goto(live_server.url + "/customers/")
    bar = page.get_by_role("form", name="Change the selected customers")

    page.get_by_label("Select Ada Lovelace").check()
    page.get_by_label("Select Una Assigned").check()
    bar.get_by_label("Owner").select_option(label="rep2")
    test_browser.shot(page, "manager-customers-bulk-ticked")
    bar.get_by_role("button", name="Assign").click()
    page.get_by_text("Assigned 2 customers to rep2.").wait_for()

    assert (_owner_cell(page, "Ada Lovelace"), _owner_cell(page, "Una Assigned")) == ("rep2", "rep2")
    assert _owner_cell(page, "Bob Builder") == "rep1"  # not ticked: unchanged
    assert set(Customer.objects.filter(owner=world.other_rep).values_list("name", flat=True)) == {
        "Ada Lovelace", "Una Assigned", "Zed Secret"}
    test_browser.shot(page, "manager-customers-bulk-assigned")

    select_all = page.get_by_label("Select all customers on this page")
    select_all.check()  # shown and wired by site.js
    assert page.locator("input[name=bulk-ids]:checked").count() == 4
    bar.get_by_label("Owner").select_option(label="rep1")
    bar.get_by_role("button", name="Assign").click()
    page.get_by_text("Assigned 3 customers to rep1 (1 of the 4 selected already had that owner).").wait_for()
    assert {_owner_cell(page, name) for name in ("Ada Lovelace", "Bob Builder", "Una Assigned", "Zed Secret")} == {
        "rep1"}

    page.get_by_role("link", name="Zed Secret").click()
    page.wait_for_url(f"**/customers/{world.zed.pk}/")
    assert page.locator("dt:text-is('Owner') + dd").inner_text() == "rep1"


def test_browser_rep_sees_no_bulk_controls(page, live_server, world):
    test_browser.log_in(page, live_server, "rep1", "pw-rep1-Secret1")
    page.goto(live_server.url + "/customers/")

    assert page.locator("table.data tbody tr").count() == 3  # Ada, Bob and the unassigned Una
    assert page.locator("form#bulk").count() == 0
    assert page.locator("input[type=checkbox][name=bulk-ids], [data-select-all]").count() == 0
