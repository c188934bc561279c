"""The charts as a browser draws them (Debian's Chromium through Playwright): every series of a
chart is drawn, with the data points it was given, as Chart.js reports it in the page."""

from tests.web import test_browser
from tests.web.test_browser import log_in

DATASETS = """(selector) => {
  const chart = Chart.getChart(document.querySelector(selector));
  return chart.data.datasets.map((d, i) => {
    const meta = chart.getDatasetMeta(i);
    return {label: d.label, type: meta.type, visible: chart.isDatasetVisible(i), points: meta.data.length,
            borderWidth: meta.dataset ? meta.dataset.options.borderWidth : null,
            values: d.data};
  });
}"""


browser, page = test_browser.browser, test_browser.page  # the same Chromium and page fixtures


def open_chart(page, url, selector):
    page.goto(url)
    page.wait_for_function("(s) => typeof Chart !== 'undefined' && Chart.getChart(document.querySelector(s))",
                           arg=selector)
    return page.evaluate(DATASETS, selector)


def test_browser_product_chart_draws_orders_bars_and_a_revenue_line(page, live_server, world):
    log_in(page, live_server, "rep1", "pw-rep1-Secret1")

    orders, revenue = open_chart(page, live_server.url + f"/products/{world.widget.pk}/",
                                 "canvas[data-chart=chart-trend]")

    assert orders["type"] == "bar" and orders["visible"] and orders["points"] == 12
    assert revenue["type"] == "line" and revenue["visible"] and revenue["points"] == 12
    assert revenue["borderWidth"] > 0, "the revenue line is drawn 0 px wide"
    assert sum(revenue["values"]) == 200.0  # Ada's and Una's widgets; Zed is another rep's


def test_browser_pages_load_without_a_missing_file(page, live_server, world):
    missing = []
    page.on("response", lambda r: missing.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    log_in(page, live_server, "rep1", "pw-rep1-Secret1")

    for path in ("/", "/customers/", f"/customers/{world.ada.pk}/", "/segments/", "/products/",
                 f"/products/{world.widget.pk}/", "/models/"):
        page.goto(live_server.url + path)
        page.wait_for_load_state("networkidle")
    icon = page.evaluate("() => fetch('/favicon.ico').then(r => [r.status, r.headers.get('content-type')])")

    assert not missing
    assert icon == [200, "image/svg+xml"]
