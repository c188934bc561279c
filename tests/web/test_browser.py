"""End-to-end: a real browser (Debian's Chromium through Playwright, see tests/web/chromium.py)
against the live server. Screenshots of each main page go to test-output/screenshots/.
"""
import pytest
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from crm.models import ImportRun, Interaction
from ml.models import SuggestionFeedback, TrainingRun
from tests.conftest import ROOT, wait_for
from tests.web import chromium

SHOTS = ROOT / "test-output" / "screenshots"


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


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def pass_second_factor(page, username):
    """The OTP step after the password: the current code of the user's authenticator, from its key."""
    page.wait_for_url("**/account/otp/verify/**")
    device = TOTPDevice.objects.get(user__username=username, confirmed=True)
    page.get_by_label("Code").fill(f"{totp(device.bin_key, step=device.step, digits=device.digits):06d}")
    page.get_by_role("button", name="Verify").click()


def log_in(page, live_server, username, password):
    page.goto(live_server.url + "/login/")
    shot(page, "login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    if TOTPDevice.objects.filter(user__username=username, confirmed=True).exists():  # managers and admins
        pass_second_factor(page, username)
    page.wait_for_url(live_server.url + "/")


def test_browser_rep_works_a_customer_from_the_worklist(page, live_server, world):
    log_in(page, live_server, "rep1", "pw-rep1-Secret1")
    assert page.locator("#chart-revenue").count() == 1
    page.wait_for_function("() => typeof Chart !== 'undefined'")  # the vendored chart library loaded
    shot(page, "rep-home")

    page.locator("section[aria-labelledby=wl-risk]").get_by_role("link", name="Ada Lovelace").click()
    page.wait_for_url(f"**/customers/{world.ada.pk}/")
    body = page.locator("main")
    assert "Champions: buy every 4 weeks" in body.inner_text()
    assert "last purchase 10 days ago, usually buys every 35 days" in body.inner_text()
    assert "Customers who buy Widget often buy Gadget" in body.inner_text()
    assert "Buys Widget every 30 days; last bought 31 days ago" in body.inner_text()
    shot(page, "rep-customer")

    page.get_by_label("Type").select_option("call")
    page.get_by_label("Notes").fill("Called about the spring order")
    page.get_by_role("button", name="Save").click()
    page.wait_for_selector("text=Call logged.")
    assert "Called about the spring order" in page.locator("ul.timeline").inner_text()
    assert Interaction.objects.filter(customer=world.ada, type="call", created_by=world.rep).count() == 1

    page.locator("form[aria-label='Feedback on Gadget']").get_by_role("button", name="Accepted").click()
    page.wait_for_selector("text=Gadget: marked accepted.")
    assert SuggestionFeedback.objects.get(customer=world.ada, product=world.gadget).status == "accepted"
    shot(page, "rep-customer-after-feedback")

    for path, name in (("/customers/", "rep-customers"), ("/segments/", "rep-segments"),
                       ("/products/", "rep-products"), (f"/products/{world.gadget.pk}/", "rep-product"),
                       ("/models/", "rep-models")):
        page.goto(live_server.url + path)
        shot(page, name)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(live_server.url + "/")
    shot(page, "rep-home-mobile")


def test_browser_rep_cannot_open_other_reps_customer(page, live_server, world):
    log_in(page, live_server, "rep1", "pw-rep1-Secret1")
    response = page.goto(live_server.url + f"/customers/{world.zed.pk}/")
    assert response.status == 404


def test_browser_rep_edits_a_customer_and_makes_an_api_token(page, live_server, world):
    from crm.models import ApiToken
    from crm.tokens import hash_key

    log_in(page, live_server, "rep1", "pw-rep1-Secret1")
    page.goto(live_server.url + f"/customers/{world.ada.pk}/")
    page.get_by_role("link", name="Edit profile").click()
    page.wait_for_url(f"**/customers/{world.ada.pk}/edit/")
    page.get_by_label("Email").fill("not-an-email")
    page.get_by_label("City").fill("London")
    page.get_by_label("City").press("Enter")  # the keyboard submits the form
    page.wait_for_selector("#id_email_error")
    assert page.get_by_label("Email").get_attribute("aria-invalid") == "true"
    assert page.get_by_label("City").input_value() == "London"  # the input survives the error
    shot(page, "rep-customer-edit-error")
    page.get_by_label("Email").fill("ada@engines.example")
    page.get_by_label("No profiling").focus()
    page.keyboard.press("Space")
    page.get_by_role("button", name="Save").click()
    page.wait_for_selector("text=Customer Ada Lovelace saved.")
    world.ada.refresh_from_db()
    assert (world.ada.email, world.ada.city, world.ada.no_profiling) == ("ada@engines.example", "London", True)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Account").click()
    page.wait_for_url("**/account/")
    page.get_by_role("button", name="Create a token").click()
    key = page.get_by_label("Key").input_value()
    assert hash_key(key) == ApiToken.objects.get(user=world.rep).key_hash
    shot(page, "rep-account-new-token")
    page.goto(live_server.url + "/account/")
    assert key not in page.content()


@pytest.mark.integration
@pytest.mark.slow
def test_browser_manager_imports_a_bad_row_and_retrains(page, live_server, manager, start_worker, tmp_path):
    from django.core.management import call_command

    call_command("seed_demo", customers=300, seed=3)
    start_worker()
    log_in(page, live_server, "boss", "pw-boss-Secret1")

    bad = tmp_path / "customers.csv"
    bad.write_text("external_id,name,email,phone,company,country,city,signup_date,owner_username\n"
                   "WEB-1,Good Row,good@example.com,,,,,,\n"
                   "WEB-2,Bad Row,not-an-email,,,,,,\n", encoding="utf-8")
    page.goto(live_server.url + "/imports/")
    page.get_by_label("customers.csv").set_input_files(str(bad))
    page.get_by_role("button", name="Import").click()
    page.wait_for_url("**/imports/*/")
    page.wait_for_selector("text=Rejected rows", timeout=60_000)  # the page polls, then reloads
    assert "not-an-email" in page.locator("main").inner_text()
    assert ImportRun.objects.latest("pk").status == "partial"  # the bad e-mail is skipped with a warning
    shot(page, "manager-import-result")
    page.goto(live_server.url + "/imports/")
    shot(page, "manager-imports")

    page.goto(live_server.url + "/models/")
    page.get_by_role("button", name="Retrain segmentation now").click()
    page.wait_for_selector("#kind-segmentation [data-poll]")
    shot(page, "manager-models-running")
    run = TrainingRun.objects.filter(kind="segmentation").latest("pk")
    wait_for(lambda: TrainingRun.objects.get(pk=run.pk).status not in TrainingRun.ACTIVE, timeout=120,
             what="the worker to finish the retrain")
    # the page notices by polling and reloads itself: the live badge moves to the new run
    page.wait_for_function("() => !document.querySelector('#kind-segmentation [data-poll]')", timeout=10_000)
    assert TrainingRun.objects.get(pk=run.pk).status == "succeeded"
    assert f"run #{run.pk}" in page.locator("#kind-segmentation").inner_text()
    shot(page, "manager-models")
    page.goto(live_server.url + "/segments/")
    shot(page, "manager-segments")


def test_browser_pages_say_what_each_run_published_and_why(page, live_server, world):
    """Runs in issue 12's metrics layout: a forecast without amounts (spend and CLV not forecast,
    orders by a model, churn by the baseline), a recommendation run whose reorder list is empty
    with a reason, and a skipped segmentation run with no live one."""
    from ml.models import Forecast

    from .run_metrics import NO_AMOUNTS, forecast_metrics, recommendation_metrics

    TrainingRun.objects.filter(pk=world.fc_run.pk).update(metrics=forecast_metrics(spend=False))
    Forecast.objects.filter(run=world.fc_run).update(expected_spend=None, spend_p10=None, spend_p90=None, clv=None,
                                                     basis="model: ensemble")
    TrainingRun.objects.filter(pk=world.rec_run.pk).update(metrics=recommendation_metrics(
        reorder_reason="no re-buying: no customer bought a product twice, so no reorder list"))
    TrainingRun.objects.filter(kind="segmentation").update(is_published=False)
    TrainingRun.objects.create(kind="segmentation", status="skipped",
                               error="20 customers: too few to tell segments apart (at least 50 are needed)")
    log_in(page, live_server, "rep1", "pw-rep1-Secret1")
    shot(page, "rep-home-not-forecast")

    page.goto(live_server.url + "/models/")
    body = page.locator("main").inner_text()
    assert "Backtest: validated on 2 windows of 90 days" in body
    assert "No segmentation model: 20 customers: too few to tell segments apart" in body
    assert page.locator("#backtest-forecast-orders tr.chosen").inner_text().startswith("ensemble")
    shot(page, "rep-models-backtest")

    page.goto(live_server.url + f"/customers/{world.una.pk}/")
    body = page.locator("main").inner_text()
    assert NO_AMOUNTS in body and "No re-buying: no customer bought a product twice" in body
    shot(page, "rep-customer-not-forecast")
