"""The charts as a browser draws them (Debian's Chromium through Playwright): every series of a
chart is drawn, with the data points it was given, as Chart.js reports it in the page."""

from ml.models import Segment
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


LABELS_FIT = """(selector) => {
  const chart = Chart.getChart(document.querySelector(selector));
  const axis = chart.options.indexAxis === "y" ? chart.scales.y : chart.scales.x;
  axis._labelSizes = null;  // measure again, as drawn now
  const widest = axis._getLabelSizes().widest;
  return {axis: axis.id, labels: chart.data.labels, widest: widest.width, room: axis.width, left: axis.left,
          rotation: axis.labelRotation, canvas: chart.width};
}"""


def test_browser_segment_names_fit_beside_the_bars(page, live_server, world):
    # given: segment names as long as the naming rules make them
    Segment.objects.filter(pk=world.sleepers.pk).update(name="Prospects / no purchases yet")
    Segment.objects.filter(pk=world.champions.pk).update(name="Refund-prone high spenders (mostly Electronics)")
    log_in(page, live_server, "rep1", "pw-rep1-Secret1")

    for path, selector in (("/", "canvas[data-chart=chart-segments]"), ("/segments/", "canvas[data-chart=chart-size]"),
                           ("/segments/", "canvas[data-chart=chart-figures]")):
        open_chart(page, live_server.url + path, selector)
        fit = page.evaluate(LABELS_FIT, selector)
        # then: names on the left of horizontal bars, in lines, the widest line inside its axis
        assert fit["axis"] == "y" and ["Prospects / no", "purchases yet"] in fit["labels"]
        assert fit["left"] >= 0 and fit["widest"] <= fit["room"], (path, selector, fit)


MONEY = """(selector) => {
  const chart = Chart.getChart(document.querySelector(selector));
  const tooltip = chart.options.plugins.tooltip.callbacks.label;
  return {ticks: Object.fromEntries(Object.entries(chart.scales).map(([id, s]) => [id, s.ticks.map(t => t.label)])),
          tooltips: chart.data.datasets.map((d, i) => tooltip.call(chart.tooltip, {
            dataset: d, datasetIndex: i, parsed: {x: -1234.5, y: -1234.5}}))};
}"""


def test_browser_revenue_axis_and_tooltips_are_money(page, live_server, world):
    log_in(page, live_server, "rep1", "pw-rep1-Secret1")

    open_chart(page, live_server.url + f"/products/{world.widget.pk}/", "canvas[data-chart=chart-trend]")
    money = page.evaluate(MONEY, "canvas[data-chart=chart-trend]")

    assert money["ticks"]["y1"] and all(t.startswith("$") for t in money["ticks"]["y1"])  # revenue
    assert not any("$" in t for t in money["ticks"]["y"])  # orders
    assert money["tooltips"] == ["Units bought (orders): -1,234.5", "Revenue: \u2212$1,234.50"]


PARTIAL = """(selector) => {
  const chart = Chart.getChart(document.querySelector(selector));
  return chart.data.datasets.map((d, i) => {
    const meta = chart.getDatasetMeta(i);
    return meta.type === "line"
      ? {dashed: meta.dataset.segments.filter(s => s.style && s.style.borderDash && s.style.borderDash.length)
                                       .map(s => [s.start, s.end])}
      : {colors: meta.data.map(bar => bar.options.backgroundColor)};
  });
}"""


def test_browser_the_month_not_over_is_drawn_apart(page, live_server, world):
    log_in(page, live_server, "rep1", "pw-rep1-Secret1")

    open_chart(page, live_server.url + f"/products/{world.widget.pk}/", "canvas[data-chart=chart-trend]")
    bars, line = page.evaluate(PARTIAL, "canvas[data-chart=chart-trend]")

    assert line["dashed"] == [[10, 11]]  # only the stretch into this month
    assert len(set(bars["colors"][:11])) == 1 and bars["colors"][11] != bars["colors"][0]
    assert bars["colors"][11].endswith("0.35)")
    open_chart(page, live_server.url + "/", "canvas[data-chart=chart-revenue]")
    (home_line,) = page.evaluate(PARTIAL, "canvas[data-chart=chart-revenue]")
    assert home_line["dashed"] == [[10, 11]]
