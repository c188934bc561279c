/* Charts from <script type="application/json"> blocks, and progress polling. No framework. */
(function () {
  "use strict";
  var palette = ["#1f5fbf", "#d9822b", "#1d6b36", "#a61b1b", "#6b46c1", "#0f7b8a", "#8a5300", "#4a5568"];

  function readJSON(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function drawCharts() {
    if (typeof Chart === "undefined") return;
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.color = "#1b2430";
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var spec = readJSON(canvas.dataset.chart);
      if (!spec) return;
      var type = spec.type || "bar";
      var datasets = spec.datasets.map(function (d, i) {
        var color = d.color || palette[i % palette.length];
        var colors = spec.colorEach ? spec.labels.map(function (_l, j) { return palette[j % palette.length]; }) : color;
        // A dataset may have its own type (a revenue line over order bars): its line width
        // follows its own type, or the line is drawn 0 px wide.
        var line = (d.type || type) === "line";
        return Object.assign({ backgroundColor: colors, borderColor: color, borderWidth: line ? 2 : 0,
                               tension: 0.25, pointRadius: line ? 2 : 0 }, d);
      });
      new Chart(canvas, {
        type: type,
        data: { labels: spec.labels, datasets: datasets },
        options: Object.assign({
          responsive: true, maintainAspectRatio: false, animation: false,
          plugins: { legend: { display: datasets.length > 1 || type === "doughnut", position: "bottom" } },
          scales: type === "doughnut" ? {} : { y: { beginAtZero: true, title: { display: !!spec.yTitle, text: spec.yTitle } },
                                               x: { title: { display: !!spec.xTitle, text: spec.xTitle } } }
        }, spec.options || {})
      });
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
