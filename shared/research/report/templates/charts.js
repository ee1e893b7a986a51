/* LiangHua report charts. Every chart is a <div class="chart"> followed by a <script type="application/json"> holding
   its spec (data only, no code): this file turns specs into Apache ECharts options. Text from the run (parameter
   values, names) reaches the page only as JSON data and is HTML-escaped before it goes into a tooltip. */
(function () {
  "use strict";
  var ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" };
  function esc(text) {
    return String(text).replace(/[&<>"']/g, function (c) { return ESC[c]; });
  }
  function fmt(kind, v, digits) {
    if (v === null || v === undefined || v === "-" || (typeof v === "number" && !isFinite(v))) { return "n/a"; }
    var d = digits === undefined ? 2 : digits;
    if (kind === "percent") { return (v * 100).toFixed(d) + "%"; }
    if (kind === "ratio") { return Number(v).toFixed(d); }
    if (kind === "growth") { return Number(v).toFixed(digits === undefined ? 4 : digits); }
    return String(v);
  }
  var UP = "#c0392b", DOWN = "#1e8449";  /* A-share screens: red is a gain, green a loss */

  function lineOption(spec) {
    return {
      animation: false,
      grid: { left: 64, right: 28, top: 40, bottom: 70 },
      legend: { top: 6 },
      tooltip: { trigger: "axis", valueFormatter: function (v) { return esc(fmt(spec.format, v)); } },
      xAxis: { type: "category", data: spec.x, boundaryGap: false },
      yAxis: {
        type: "value", scale: !spec.zero,
        axisLabel: { formatter: function (v) { return fmt(spec.format, v, spec.format === "percent" ? 0 : 2); } }
      },
      dataZoom: [{ type: "inside" }, { type: "slider", height: 20, bottom: 14 }],
      series: spec.series.map(function (s) {
        var out = {
          name: s.name, type: "line", data: s.data, showSymbol: false, connectNulls: false,
          lineStyle: { width: 1.4 }, color: s.color, emphasis: { disabled: true }
        };
        if (s.area) { out.areaStyle = { opacity: 0.35 }; }
        if (s.step) { out.step = "end"; }
        return out;
      })
    };
  }

  function heatmapOption(spec) {
    var colors = spec.diverging ? [DOWN, "#f7f7f7", UP] : ["#f0f4fa", "#7aa6d6", "#1f4e8c"];
    return {
      animation: false,
      tooltip: {
        position: "top",
        formatter: function (p) {
          return esc(spec.y_name || "") + " " + esc(spec.y[p.value[1]]) + ", " + esc(spec.x_name || "") + " " +
            esc(spec.x[p.value[0]]) + ": <b>" + esc(fmt(spec.format, p.value[2])) + "</b>";
        }
      },
      grid: { left: 90, right: 40, top: 30, bottom: 90 },
      xAxis: { type: "category", data: spec.x, name: spec.x_name || "", nameLocation: "middle", nameGap: 28,
        splitArea: { show: true } },
      yAxis: { type: "category", data: spec.y, name: spec.y_name || "", inverse: true, splitArea: { show: true } },
      visualMap: {
        min: spec.vmin, max: spec.vmax, calculable: true, orient: "horizontal", left: "center", bottom: 6,
        itemHeight: 220, inRange: { color: colors },
        formatter: function (v) { return fmt(spec.format, v, 1); }
      },
      series: [{
        type: "heatmap", data: spec.cells,
        label: { show: !!spec.labels, fontSize: 11, formatter: function (p) { return fmt(spec.format, p.value[2], 1); } },
        emphasis: { itemStyle: { borderColor: "#333", borderWidth: 1 } }
      }]
    };
  }

  var BUILDERS = { line: lineOption, heatmap: heatmapOption };
  var charts = [];
  var nodes = document.querySelectorAll("div.chart");
  for (var i = 0; i < nodes.length; i++) {
    var el = nodes[i];
    var holder = el.nextElementSibling;
    if (!holder || holder.getAttribute("type") !== "application/json") { continue; }
    var spec = JSON.parse(holder.textContent);
    var build = BUILDERS[spec.type];
    if (!build) { continue; }
    if (spec.height) { el.style.height = spec.height + "px"; }
    var chart = echarts.init(el, null, { renderer: "canvas" });
    chart.setOption(build(spec));
    if (spec.group) { chart.group = spec.group; }
    charts.push(chart);
  }
  echarts.connect("timeline");
  window.addEventListener("resize", function () { charts.forEach(function (c) { c.resize(); }); });
})();
