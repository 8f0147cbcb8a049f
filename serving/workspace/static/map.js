// The priority map: fetch the points as compact columns, draw one WebGL trace per tier and a ring per surge.
"use strict";
(function () {
  var COLOURS = { tier_1: "#16a34a", tier_2: "#2563eb", tier_3: "#ca8a04", untiered: "#9ca3af" };
  var LABELS = { tier_1: "Tier 1", tier_2: "Tier 2", tier_3: "Tier 3", untiered: "Untiered" };
  var box = document.getElementById("map");
  var status = document.getElementById("map-status");
  if (!box || typeof Plotly === "undefined") {
    if (status) status.textContent = "The map could not start: plotly.js did not load.";
    return;
  }
  fetch(box.dataset.points, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then(function (answer) {
      if (!answer.ok) throw new Error("the server answered " + answer.status);
      return answer.json();
    })
    .then(function (points) { draw(points); })
    .catch(function (error) { status.textContent = "The accounts could not be loaded: " + error.message; });

  // WebGL draws 100,000 points at once; where plotly finds none it can use (some remote desktops, old drivers,
  // headless browsers), the map is drawn again as SVG, slower but complete.
  function draw(points, kind) {
    kind = kind || "scattergl";
    var n = points.account_id.length;
    var byTier = {};
    var surge = { x: [], y: [], i: [] };
    for (var i = 0; i < n; i++) {
      var tier = points.tier[i];
      var group = byTier[tier] || (byTier[tier] = { x: [], y: [], i: [] });
      group.x.push(points.fit[i]); group.y.push(points.engagement[i]); group.i.push(i);
      if (points.surge[i]) { surge.x.push(points.fit[i]); surge.y.push(points.engagement[i]); surge.i.push(i); }
    }
    // Plotly reads <b>, <a href> and <span style> in hover text: account names and ids are escaped first.
    var escape = function (value) {
      return String(value).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
    };
    var text = function (rows) {
      return rows.map(function (i) {
        return escape(points.account_name[i] || points.account_id[i]) + " (" + escape(points.account_id[i]) + ")<br>" +
          (LABELS[points.tier[i]] || points.tier[i]) + (points.surge[i] ? " · surging" : "");
      });
    };
    // Untiered first, Tier 1 last: the accounts that matter most are drawn on top.
    var traces = Object.keys(COLOURS).reverse().filter(function (tier) { return byTier[tier]; }).map(function (tier) {
      var group = byTier[tier];
      return {
        type: kind, mode: "markers", name: LABELS[tier] + " (" + group.i.length.toLocaleString() + ")",
        x: group.x, y: group.y, customdata: group.i, text: text(group.i), hoverinfo: "text",
        marker: { color: COLOURS[tier], size: n > 20000 ? 4 : 7, opacity: 0.75 }
      };
    });
    if (surge.i.length) {
      traces.push({
        type: kind, mode: "markers", name: "intent surge (" + surge.i.length.toLocaleString() + ")",
        x: surge.x, y: surge.y, customdata: surge.i, text: text(surge.i), hoverinfo: "text",
        marker: { symbol: "circle-open", color: "#c2410c", size: n > 20000 ? 9 : 13, line: { width: 2 } }
      });
    }
    var layout = {
      margin: { l: 60, r: 20, t: 10, b: 50 }, hovermode: "closest", dragmode: "zoom",
      xaxis: { title: { text: "business fit score" }, range: [-2, 102], zeroline: false },
      yaxis: { title: { text: "engagement score" }, range: [-2, 102], zeroline: false },
      legend: { orientation: "h", y: -0.12, traceorder: "reversed" }
    };
    Plotly.newPlot(box, traces, layout, { displaylogo: false, displayModeBar: false, responsive: true, doubleClick: "reset" }).then(function () {
      if (kind === "scattergl" && box.querySelector(".no-webgl")) {
        Plotly.purge(box);
        return draw(points, "scatter");
      }
      status.textContent = n.toLocaleString() + " accounts." +
        (kind === "scatter" ? " (This browser has no WebGL: the map is drawn more slowly.)" : "");
      box.dataset.ready = String(n);
    });
    box.on("plotly_click", function (event) {
      var point = event.points && event.points[0];
      if (point) window.location.href = box.dataset.accounts + encodeURIComponent(points.account_id[point.customdata]);
    });
  }
})();
