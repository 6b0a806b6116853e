// llmdock dashboard: draws the monitoring charts (uPlot) from the JSON the page carries, and the drift chart
// from its data endpoint (same origin); nothing else runs.
(function () {
  "use strict";
  function draw() {
    var holder = document.getElementById("chart-data");
    if (!holder || typeof uPlot === "undefined") return;
    var d = JSON.parse(holder.textContent);
    var sets = {
      requests: [[d.t, d.requests, d.errors], [{ label: "requests", stroke: "#3b6fd1" }, { label: "errors", stroke: "#b3261e" }]],
      guard: [[d.t, d.blocked], [{ label: "guard blocks", stroke: "#7a5200" }]],
      latency: [[d.t, d.mean_ms, d.max_ms], [{ label: "mean ms", stroke: "#146c2e" }, { label: "max ms", stroke: "#7a5200" }]],
      cost: [[d.t, d.cost], [{ label: "cost", stroke: "#6b3fa0" }]]
    };
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var set = sets[el.getAttribute("data-chart")];
      var width = Math.max(280, Math.min(el.clientWidth || 800, 1300));
      new uPlot({ width: width, height: 220, series: [{}].concat(set[1]), axes: [{}, {}] }, set[0], el);
    });
  }
  var PALETTE = ["#3b6fd1", "#b3261e", "#146c2e", "#7a5200", "#6b3fa0", "#00696f", "#8c1d5b", "#4a4a4a"];
  function drawDrift(el, d) {
    var floor = 1e-12; // p-values of 0 (underflow) drawn at the floor of the log scale
    var data = [d.t], series = [{}];
    d.series.forEach(function (s, i) {
      data.push(s.adjusted_p.map(function (p) { return p === null ? null : Math.max(p, floor); }));
      series.push({ label: s.statistic, stroke: PALETTE[i % PALETTE.length], spanGaps: false });
    });
    data.push(d.t.map(function () { return d.alpha; }));
    series.push({ label: "drift below", stroke: "#000", dash: [6, 4], width: 1 });
    var width = Math.max(280, Math.min(el.clientWidth || 800, 1300));
    new uPlot({ width: width, height: 260, series: series, scales: { y: { distr: 3 } }, axes: [{}, {}] }, data, el);
  }
  function drift() {
    document.querySelectorAll("[data-drift-src]").forEach(function (el) {
      if (typeof uPlot === "undefined") return;
      fetch(el.getAttribute("data-drift-src"), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (d) { if (d && d.t.length) drawDrift(el, d); });
    });
  }
  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("DOMContentLoaded", drift);
})();
