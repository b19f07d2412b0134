"""The HTML report's page and chart script, kept in Python so they ship with the package."""

TEMPLATE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}}</title>
<style>
  :root { --ink: #1d2330; --muted: #5c6475; --line: #e3e6ec; --card: #fff; --bg: #f4f6f9; --accent: #3558d6; }
  * { box-sizing: border-box; }
  body { margin: 0; padding: 28px 32px 40px; background: var(--bg); color: var(--ink);
         font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
  h1 { margin: 0; font-size: 24px; }
  .sub { margin: 4px 0 20px; color: var(--muted); }
  .kpis { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; margin-bottom: 16px; }
  .kpi { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; }
  .kpi .figure { font-size: 24px; font-weight: 650; }
  .kpi .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
  .kpi .detail { color: var(--muted); font-size: 12px; }
  .grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 16px; }
  figure { margin: 0; background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px; }
  figure.wide { grid-column: 1 / -1; }
  figcaption { font-weight: 650; margin-bottom: 8px; }
  figcaption small { font-weight: 400; color: var(--muted); margin-left: 6px; }
  svg { display: block; max-width: 100%; height: auto; }
  svg text { font-size: 12px; fill: var(--ink); }
  svg text.muted, svg text.empty { fill: var(--muted); }
  svg text.in-cell { font-size: 11px; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid var(--line); }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  ul.signals { margin: 0; padding-left: 18px; }
  ul.signals li { margin: 4px 0; }
  .none { color: var(--muted); }
  .legend { display: flex; gap: 14px; flex-wrap: wrap; margin-top: 8px; color: var(--muted); font-size: 12px; }
  .swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 5px;
            vertical-align: -1px; }
</style>
</head>
<body>
<header>
  <h1>Returns report</h1>
  <p class="sub" id="subtitle"></p>
</header>
<section class="kpis" id="kpis"></section>
<section class="grid">
  <figure><figcaption>Return reasons</figcaption><div id="chart-reasons" data-chart="reasons"></div></figure>
  <figure><figcaption>Grade mix</figcaption><div id="chart-grades" data-chart="grades"></div></figure>
  <figure class="wide"><figcaption>Returned units by size and colour</figcaption>
    <div id="chart-heatmap" data-chart="heatmap"></div></figure>
  <figure class="wide"><figcaption>Recovery over time<small>units returned each week: their original
    value and what the resold ones earned</small></figcaption>
    <div id="chart-recovery" data-chart="recovery"></div></figure>
  <figure><figcaption>Dock to stock<small>parcel scanned → first offered on a storefront</small></figcaption>
    <div id="chart-dock" data-chart="dock"></div></figure>
  <figure><figcaption>Most returned SKUs</figcaption><table id="skus"></table></figure>
  <figure class="wide"><figcaption>Size signals<small>a size returned for fit far more often than its
    product's sizes on average</small></figcaption><ul class="signals" id="signals"></ul></figure>
</section>
<script type="application/json" id="report-data">{{data}}</script>
<script>
{{script}}
</script>
</body>
</html>
"""

SCRIPT = r"""(function () {
  "use strict";
  var report = JSON.parse(document.getElementById("report-data").textContent);
  var NS = "http://www.w3.org/2000/svg";
  var GRADE_COLOURS = { A: "#2e7d32", B: "#1e6fd9", C: "#f2a900", SCRAP: "#c62828", ungraded: "#9aa1ad" };
  var drawn = 0;

  function node(ns, tag, attrs, parent, text) {
    var el = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    if (text !== undefined) { el.textContent = text; }
    if (parent) { parent.appendChild(el); }
    return el;
  }
  function svg(tag, attrs, parent, text) { return node(NS, tag, attrs, parent, text); }
  function el(tag, attrs, parent, text) { return node(null, tag, attrs, parent, text); }
  function tip(target, text) { svg("title", {}, target, text); }
  function pct(x) { return x === null || x === undefined ? "—" : (100 * x).toFixed(1) + " %"; }
  function num(x) { return Number(x).toLocaleString("en-US"); }
  function money(amount, currency) {
    try {
      return Number(amount).toLocaleString("en-US",
        { style: "currency", currency: currency, maximumFractionDigits: 0 });
    } catch (e) {
      return num(Math.round(Number(amount))) + " " + currency;
    }
  }
  function hours(h) { return h === null ? "—" : h < 48 ? h.toFixed(1) + " h" : (h / 24).toFixed(1) + " d"; }
  function canvas(id, width, height) {
    return svg("svg", { viewBox: "0 0 " + width + " " + height, width: width, height: height, role: "img",
                        "aria-label": id },
               document.getElementById(id));
  }
  function empty(s, text) { svg("text", { x: 8, y: 22, "class": "empty" }, s, text || "no returns in this period"); }

  function hbars(id, items, colour) {
    var rowH = 26, left = 170, width = 560, right = 110;
    var s = canvas(id, width, Math.max(rowH * items.length, rowH) + 8);
    if (!items.length) { empty(s); return; }
    var max = Math.max.apply(null, items.map(function (i) { return i.value; }).concat([1]));
    items.forEach(function (item, i) {
      var y = 4 + i * rowH, w = (width - left - right) * item.value / max;
      svg("text", { x: left - 8, y: y + 17, "text-anchor": "end" }, s, item.label);
      var bar = svg("rect", { x: left, y: y + 4, width: w.toFixed(1), height: rowH - 8, rx: 3, fill: colour,
                              "class": "bar", "data-value": item.value }, s);
      tip(bar, item.label + ": " + item.text);
      svg("text", { x: (left + w + 6).toFixed(1), y: y + 17, "class": "muted" }, s, item.text);
    });
  }

  function reasons() {
    hbars("chart-reasons", report.by_reason.map(function (t) {
      return { label: t.key, value: t.units, text: num(t.units) + " · " + pct(t.share) };
    }), "#3558d6");
  }

  function grades() {
    var width = 560, s = canvas("chart-grades", width, 96), total = 0, x = 0;
    report.grade_mix.forEach(function (t) { total += t.units; });
    if (!total) { empty(s); return; }
    report.grade_mix.forEach(function (t) {
      var w = (width * t.units) / total;
      var seg = svg("rect", { x: x.toFixed(1), y: 8, width: w.toFixed(1), height: 40,
                              fill: GRADE_COLOURS[t.key] || "#777", "class": "segment", "data-grade": t.key,
                              "data-value": t.units }, s);
      tip(seg, t.key + ": " + num(t.units) + " (" + pct(t.share) + ")");
      if (w > 44) {
        svg("text", { x: (x + 6).toFixed(1), y: 33, fill: "#fff", style: "fill:#fff;font-weight:600" }, s, t.key);
      }
      x += w;
    });
    var lx = 0;
    report.grade_mix.forEach(function (t) {
      svg("rect", { x: lx, y: 66, width: 10, height: 10, rx: 2, fill: GRADE_COLOURS[t.key] || "#777" }, s);
      var label = t.key + " " + num(t.units) + " (" + pct(t.share) + ")";
      svg("text", { x: lx + 15, y: 76 }, s, label);
      lx += 30 + label.length * 6.4;
    });
  }

  function heatmap() {
    var sizes = report.sizes, colours = report.colours;
    var left = 90, top = 24, cw = Math.max(44, Math.min(90, 900 / Math.max(sizes.length, 1))), ch = 28;
    var s = canvas("chart-heatmap", left + cw * sizes.length + 10, top + ch * colours.length + 6);
    if (!report.size_colour.length) { empty(s); return; }
    var max = Math.max.apply(null, report.size_colour.map(function (c) { return c.units; }).concat([1]));
    sizes.forEach(function (size, i) {
      svg("text", { x: left + cw * i + cw / 2, y: 16, "text-anchor": "middle", "class": "muted" }, s, size);
    });
    colours.forEach(function (colour, j) {
      svg("text", { x: left - 8, y: top + ch * j + 18, "text-anchor": "end" }, s, colour);
    });
    report.size_colour.forEach(function (c) {
      var i = sizes.indexOf(c.size), j = colours.indexOf(c.colour), t = c.units / max;
      var cell = svg("rect", { x: left + cw * i + 1, y: top + ch * j + 1, width: cw - 2, height: ch - 2, rx: 3,
                               fill: "rgb(" + Math.round(240 - 190 * t) + "," + Math.round(244 - 150 * t) + "," +
                                     Math.round(252 - 40 * t) + ")",
                               "class": "cell", "data-size": c.size, "data-colour": c.colour,
                               "data-value": c.units }, s);
      tip(cell, c.colour + ", size " + c.size + ": " + num(c.units) + " units");
      svg("text", { x: left + cw * i + cw / 2, y: top + ch * j + 18, "text-anchor": "middle", "class": "in-cell",
                    style: t > 0.55 ? "fill:#fff" : "" }, s, num(c.units));
    });
  }

  function recovery() {
    var weeks = report.recovery_by_week, left = 70, bottom = 40, top = 12, height = 240;
    var step = Math.max(24, Math.min(80, 1000 / Math.max(weeks.length, 1)));
    var s = canvas("chart-recovery", left + step * weeks.length + 16, height);
    if (!weeks.length) { empty(s); return; }
    var max = Math.max.apply(null, weeks.map(function (w) { return Number(w.returned_value); }).concat([1]));
    var plot = height - top - bottom, currency = weeks[0].currency;
    [0, 0.5, 1].forEach(function (f) {
      var y = top + plot * (1 - f);
      svg("line", { x1: left, x2: left + step * weeks.length, y1: y, y2: y, stroke: "#e3e6ec" }, s);
      svg("text", { x: left - 6, y: y + 4, "text-anchor": "end", "class": "muted" }, s, money(max * f, currency));
    });
    var every = Math.ceil(weeks.length / 14);
    weeks.forEach(function (w, i) {
      var x = left + step * i, bw = step * 0.36;
      var hv = plot * Number(w.returned_value) / max, hr = plot * Number(w.recovered_value) / max;
      var a = svg("rect", { x: (x + step * 0.1).toFixed(1), y: (top + plot - hv).toFixed(1), width: bw.toFixed(1),
                            height: hv.toFixed(1), fill: "#c9cfdb", "class": "bar returned",
                            "data-value": w.returned_value }, s);
      tip(a, "week of " + w.week + ": " + num(w.returned) + " units returned, worth " +
        money(w.returned_value, currency));
      var b = svg("rect", { x: (x + step * 0.1 + bw).toFixed(1), y: (top + plot - hr).toFixed(1), width: bw.toFixed(1),
                            height: hr.toFixed(1), fill: "#2e7d32", "class": "bar recovered",
                            "data-value": w.recovered_value }, s);
      tip(b, "week of " + w.week + ": " + num(w.resold) + " resold for " + money(w.recovered_value, currency));
      if (i % every === 0) {
        svg("text", { x: x + step / 2, y: height - bottom + 16, "text-anchor": "middle", "class": "muted" }, s,
            w.week.slice(5));
      }
    });
    var legend = el("div", { "class": "legend" }, document.getElementById("chart-recovery"));
    [["#c9cfdb", "original value of the units returned"],
     ["#2e7d32", "earned by the resold ones"]].forEach(function (l) {
      var item = el("span", {}, legend);
      el("span", { "class": "swatch", style: "background:" + l[0] }, item);
      item.appendChild(document.createTextNode(l[1] + " (" + currency + ", week starting Monday)"));
    });
  }

  function dock() {
    var d = report.dock_to_stock;
    hbars("chart-dock", d.buckets.map(function (t) {
      return { label: t.key, value: t.units, text: num(t.units) + " · " + pct(t.share) };
    }), "#7b4fd6");
  }

  function kpis() {
    var host = document.getElementById("kpis"), m = report.money[0], d = report.dock_to_stock;
    var cards = [
      ["Units returned", num(report.units_returned), num(report.returns) + " returns"],
      ["Resale rate", pct(report.resale_rate), num(report.units_resold) + " units resold"],
      ["Recovery", m ? pct(m.recovery_rate) : "—",
       m ? money(m.recovered_value, m.currency) + " of " + money(m.resold_original_value, m.currency) : ""],
      ["Loss rate", pct(report.loss_rate), num(report.units_lost) + " units C or SCRAP" +
       (m ? ", " + money(m.lost_value, m.currency) : "")],
      ["Dock to stock", hours(d.median_hours), "median; p90 " + hours(d.p90_hours)]
    ];
    cards.forEach(function (c) {
      var card = el("div", { "class": "kpi" }, host);
      el("div", { "class": "label" }, card, c[0]);
      el("div", { "class": "figure" }, card, c[1]);
      el("div", { "class": "detail" }, card, c[2]);
    });
  }

  function skus() {
    var table = document.getElementById("skus"), head = el("tr", {}, el("thead", {}, table));
    [["SKU", ""], ["Units", "num"], ["Size/fit", "num"], ["Top reason", ""], ["Resold", "num"]].forEach(function (h) {
      el("th", { "class": h[1] }, head, h[0]);
    });
    var body = el("tbody", {}, table);
    report.by_sku.slice(0, 12).forEach(function (r) {
      var tr = el("tr", {}, body);
      el("td", {}, tr, r.sku);
      el("td", { "class": "num" }, tr, num(r.units));
      el("td", { "class": "num" }, tr, num(r.size_fit));
      el("td", {}, tr, r.top_reason);
      el("td", { "class": "num" }, tr, num(r.resold));
    });
  }

  function signals() {
    var list = document.getElementById("signals");
    if (!report.size_signals.length) { el("li", { "class": "none" }, list, "none in this period"); return; }
    report.size_signals.forEach(function (sig) { el("li", {}, list, sig.summary); });
  }

  document.getElementById("subtitle").textContent = "Seller " + report.seller_id + " · units scanned at the dock " +
    report.period_from + " – " + report.period_to + " (UTC) · generated " +
    report.generated_at.slice(0, 16).replace("T", " ");
  kpis();
  [reasons, grades, heatmap, recovery, dock].forEach(function (draw) { draw(); drawn += 1; });
  skus();
  signals();
  document.body.setAttribute("data-charts-drawn", String(drawn));
}());
"""
