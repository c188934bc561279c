/* Charts from <script type="application/json"> blocks, and progress polling. No framework. */
(function () {
  "use strict";
  var palette = ["#1f5fbf", "#d9822b", "#1d6b36", "#a61b1b", "#6b46c1", "#0f7b8a", "#8a5300", "#4a5568"];

  function readJSON(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  /* Money as the pages write it (crm.money.format_money): the symbol from <body data-currency-symbol>,
     thousands separators, a typographic minus: "−$1,234.50". */
  function money(value, decimals) {
    var symbol = document.body.dataset.currencySymbol || "";
    var n = Number(value);
    if (value === null || value === undefined || !isFinite(n)) return "";
    var text = symbol + Math.abs(n).toLocaleString("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
    return (n < 0 && Math.abs(n) >= Math.pow(10, -decimals) / 2 ? "\u2212" : "") + text;
  }

  /* "#1f5fbf" -> "rgba(31, 95, 191, 0.35)": the lighter bar of a period not over yet. */
  function lighter(hex) {
    var m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex || "");
    return m ? "rgba(" + parseInt(m[1], 16) + ", " + parseInt(m[2], 16) + ", " + parseInt(m[3], 16) + ", 0.35)" : hex;
  }

  /* A chart spec (web.views.common.chart) may say:
     money: the ids of the axes whose values are amounts ("y", "y1"): ticks and tooltips in money;
     partial: the index of the last label's period that is not over (this month, to date): its bar
     is lighter and the line leading to it dashed. Labels may be arrays: one line each. */
  function drawCharts() {
    if (typeof Chart === "undefined") return;
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.color = "#1b2430";
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var spec = readJSON(canvas.dataset.chart);
      if (!spec) return;
      var type = spec.type || "bar";
      var horizontal = (spec.options || {}).indexAxis === "y";
      var moneyAxes = spec.money || [];
      var partial = typeof spec.partial === "number" ? spec.partial : -1;
      var datasets = spec.datasets.map(function (d, i) {
        var color = d.color || palette[i % palette.length];
        var colors = spec.colorEach ? spec.labels.map(function (_l, j) { return palette[j % palette.length]; }) : color;
        // A dataset may have its own type (a revenue line over order bars): its line width
        // follows its own type, or the line is drawn 0 px wide.
        var line = (d.type || type) === "line";
        var out = Object.assign({ backgroundColor: colors, borderColor: color, borderWidth: line ? 2 : 0,
                                  tension: 0.25, pointRadius: line ? 2 : 0 }, d);
        if (partial >= 0 && line) {
          out.segment = { borderDash: function (ctx) { return ctx.p1DataIndex === partial ? [5, 4] : undefined; } };
          out.pointBackgroundColor = spec.labels.map(function (_l, j) { return j === partial ? "#ffffff" : color; });
        } else if (partial >= 0) {
          var base = out.backgroundColor;
          out.backgroundColor = spec.labels.map(function (_l, j) {
            var c = Array.isArray(base) ? base[j] : base;
            return j === partial ? lighter(c) : c;
          });
        }
        return out;
      });
      var options = Object.assign({
        responsive: true, maintainAspectRatio: false, animation: false,
        plugins: { legend: { display: datasets.length > 1 || type === "doughnut", position: "bottom" } },
        scales: type === "doughnut" ? {} : { y: { beginAtZero: true, title: { display: !!spec.yTitle, text: spec.yTitle } },
                                             x: { title: { display: !!spec.xTitle, text: spec.xTitle } } }
      }, spec.options || {});
      if (horizontal) {
        // Every category keeps its label: Chart.js would skip some (a bar with no name) when the
        // wrapped labels need more height than a bar has.
        options.scales = options.scales || {};
        var cats = options.scales.y = options.scales.y || {};
        cats.ticks = Object.assign({ autoSkip: false }, cats.ticks || {});
      }
      if (moneyAxes.length) {
        options.scales = options.scales || {};
        moneyAxes.forEach(function (id) {
          var axis = options.scales[id] = options.scales[id] || {};
          axis.ticks = Object.assign({ callback: function (v) { return money(v, 0); } }, axis.ticks || {});
        });
        options.plugins = Object.assign({}, options.plugins, { tooltip: { callbacks: { label: function (ctx) {
          var axis = horizontal ? (ctx.dataset.xAxisID || "x") : (ctx.dataset.yAxisID || "y");
          var value = horizontal ? ctx.parsed.x : ctx.parsed.y;
          var text = moneyAxes.indexOf(axis) >= 0 ? money(value, 2) : Number(value).toLocaleString("en-US");
          return (ctx.dataset.label ? ctx.dataset.label + ": " : "") + text;
        } } } });
      }
      new Chart(canvas, { type: type, data: { labels: spec.labels, datasets: datasets }, options: options });
    });
  }

  /* Elements with data-poll="url" poll it every 2 s while the job runs; the JSON gives
     status, stage, progress and finished. When it finishes the page reloads to show results. */
  function poll(el) {
    var url = el.dataset.poll;
    var bar = el.querySelector(".progress > span");
    var text = el.querySelector("[data-poll-text]");
    function tick() {
      fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (s) {
          if (bar) { bar.style.width = (s.progress || 0) + "%"; }
          if (text) { text.textContent = s.status + (s.stage ? " · " + s.stage : "") + " · " + (s.progress || 0) + " %"; }
          if (s.finished) { window.location.reload(); } else { setTimeout(tick, 2000); }
        })
        .catch(function () { setTimeout(tick, 4000); });
    }
    setTimeout(tick, 2000);
  }

  /* Progress bars carry their percentage in data-progress: the Content-Security-Policy refuses
     inline style attributes, while a width set from this file is allowed. */
  function sizeBars() {
    document.querySelectorAll(".progress > span[data-progress]").forEach(function (bar) {
      bar.style.width = (Number(bar.dataset.progress) || 0) + "%";
    });
  }

  /* A checkbox with data-select-all="NAME" (hidden until this file runs) checks or clears every
     checkbox named NAME on the page: "select all on this page" of the customer list. */
  function selectAll(box) {
    var boxes = function () { return document.querySelectorAll("input[type=checkbox][name='" + box.dataset.selectAll + "']"); };
    box.hidden = false;
    box.addEventListener("change", function () {
      boxes().forEach(function (b) { b.checked = box.checked; });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    sizeBars();
    document.querySelectorAll("[data-select-all]").forEach(selectAll);
    drawCharts();
    document.querySelectorAll("[data-poll]").forEach(poll);
  });
})();
