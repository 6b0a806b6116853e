// llmdock dashboard: draws the monitoring charts (uPlot) from the JSON the page carries; nothing else runs.
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
  document.addEventListener("DOMContentLoaded", draw);
})();
