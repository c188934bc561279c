"""End-to-end in a real browser (Debian's Chromium, tests/web/chromium.py): a rep turns a
cross-sell suggestion into a follow-up on the customer page (no JavaScript needed: a <details>
form), sees it on the home page under Today, completes it there, finds the logged call in the
customer's history, and sees the Models page's funnel count the suggestion offered and accepted
(planning a follow-up from a suggestion accepts it: ml.services.plan_followup)."""
from crm.models import FollowUp, Interaction
from ml.models import SuggestionEvent
from tests.web import test_browser

browser, page = test_browser.browser, test_browser.page  # the same Chromium and page fixtures


def funnel_counts(page, live_server, kind="recommendation") -> tuple[int, int]:
    """(offered, accepted) of the Models page's funnel row for ``kind``, as the page shows them."""
    page.goto(live_server.url + "/models/")
    cells = page.locator(f"#funnel-{kind} td")
    return tuple(int(cells.nth(i).inner_text().split()[0]) for i in (0, 1))


def test_browser_rep_turns_a_suggestion_into_a_follow_up_and_completes_it(page, live_server, world):
    test_browser.log_in(page, live_server, "rep1", "pw-rep1-Secret1")
    assert funnel_counts(page, live_server) == (0, 0)
    page.goto(f"{live_server.url}/customers/{world.ada.pk}/")
    suggestion = page.locator(".suggestion").filter(has_text="Gadget").first
    suggestion.get_by_text("Follow up", exact=True).click()  # opens the <details>
    assert suggestion.get_by_label("What to do").input_value() == \
        "Offer Gadget: Customers who buy Widget often buy Gadget"
    suggestion.get_by_label("Follow-up kind").select_option("call")
    suggestion.get_by_label("When").select_option("today")
    suggestion.get_by_role("button", name="Plan it").click()
    page.get_by_text("Follow-up planned").wait_for()
    followup = FollowUp.objects.get()
    assert (followup.product, followup.suggestion_kind, followup.owner) == (world.gadget, "recommendation", world.rep)
    test_browser.shot(page, "rep-customer-followup")

    page.goto(live_server.url + "/")
    today = page.locator("#followups .followup-group.today")
    item = today.locator("li.followup").filter(has_text="Offer Gadget")
    assert item.count() == 1
    test_browser.shot(page, "rep-home-followups")
    item.get_by_label("Outcome").fill("wants a quote")
    item.get_by_role("button", name="Complete").click()
    page.get_by_text("Follow-up done").wait_for()
    assert today.locator("li.followup").count() == 0

    page.goto(f"{live_server.url}/customers/{world.ada.pk}/#timeline")
    call = page.locator("ul.timeline li.call").filter(has_text="Offer Gadget")
    assert call.count() == 1 and "Outcome: wants a quote" in call.inner_text()
    followup.refresh_from_db()
    assert followup.status == "done"
    assert Interaction.objects.filter(customer=world.ada, type="call").count() == 1

    assert funnel_counts(page, live_server) == (1, 1)
    assert list(SuggestionEvent.objects.values_list("event", "product")) == [("accepted", world.gadget.pk)]
    test_browser.shot(page, "rep-models-funnel-after-followup")
