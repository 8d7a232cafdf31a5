/* trainforge console: small SVG line charts (no library). Labels are set with textContent only. */
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
  const W = 640, H = 230, M = { l: 60, r: 16, t: 12, b: 30 };
  const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

  function node(tag, attrs, parent) {
    const e = document.createElementNS(NS, tag);
    for (const k of Object.keys(attrs || {})) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  function niceStep(span, n) {
    const raw = span / n;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / p;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * p;
  }

  function ticks(lo, hi, step) {
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9 && out.length < 50; v += step) {
      out.push(+v.toPrecision(12));
    }
    return out;
  }

  function fmtNum(v) {
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(2);
    return String(+v.toPrecision(4));
  }

  function fmtSec(s) {
    const sign = s < 0 ? "-" : "";
    s = Math.abs(Math.round(s));
    if (s < 60) return sign + s + "s";
    if (s < 3600) return sign + Math.floor(s / 60) + "m" + (s % 60 ? String(s % 60).padStart(2, "0") + "s" : "");
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return sign + h + "h" + (m ? String(m).padStart(2, "0") + "m" : "");
  }

  function nearest(points, x) {
    let lo = 0, hi = points.length - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (points[mid][0] < x) lo = mid; else hi = mid;
    }
    return Math.abs(points[lo][0] - x) <= Math.abs(points[hi][0] - x) ? points[lo] : points[hi];
  }

  /**
   * Draw a line chart into `container` (its content is replaced).
   * opts: {title, series: [{label, points: [[seconds, value], ...]}]}; x is time in seconds.
   */
  function lineChart(container, opts) {
    container.textContent = "";
    const fig = document.createElement("figure");
    fig.className = "chart";
    const cap = document.createElement("figcaption");
    cap.textContent = opts.title;
    fig.append(cap);
    container.append(fig);
    const series = (opts.series || []).filter((s) => s.points && s.points.length);
    if (!series.length) {
      const p = document.createElement("p");
      p.className = "muted";
      p.textContent = "No points yet.";
      fig.append(p);
      return;
    }
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const s of series) {
      for (const [x, y] of s.points) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) {
      const d = Math.abs(y0) * 0.1 || 1;
      y0 -= d;
      y1 += d;
    } else {
      const pad = (y1 - y0) * 0.05;
      y0 -= pad;
      y1 += pad;
    }
    const sx = (x) => M.l + ((x - x0) / (x1 - x0)) * (W - M.l - M.r);
    const sy = (y) => H - M.b - ((y - y0) / (y1 - y0)) * (H - M.t - M.b);

    const root = node("svg", { viewBox: `0 0 ${W} ${H}`, class: "tf-chart", role: "img" });
    root.setAttribute("aria-label", opts.title);
    const axis = node("g", { class: "axis" }, root);
    for (const v of ticks(y0, y1, niceStep(y1 - y0, 4))) {
      node("line", { class: "grid", x1: M.l, x2: W - M.r, y1: sy(v), y2: sy(v) }, axis);
      node("text", { x: M.l - 6, y: sy(v) + 4, "text-anchor": "end" }, axis).textContent = fmtNum(v);
    }
    const span = x1 - x0;
    const tstep = TIME_STEPS.find((s) => span / s <= 6) || niceStep(span, 6);
    for (const v of ticks(x0, x1, tstep)) {
      node("line", { class: "tick", x1: sx(v), x2: sx(v), y1: H - M.b, y2: H - M.b + 4 }, axis);
      node("text", { x: sx(v), y: H - M.b + 17, "text-anchor": "middle" }, axis).textContent = fmtSec(v);
    }
    node("line", { class: "baseline", x1: M.l, x2: W - M.r, y1: H - M.b, y2: H - M.b }, axis);

    series.forEach((s, i) => {
      const color = COLORS[i % COLORS.length];
      s.color = color;
      const d = s.points.map((p, j) => (j ? "L" : "M") + sx(p[0]).toFixed(1) + " " + sy(p[1]).toFixed(1)).join("");
      node("path", { class: "series", d: d, stroke: color, fill: "none" }, root);
      if (s.points.length === 1) {
        node("circle", { cx: sx(s.points[0][0]), cy: sy(s.points[0][1]), r: 3, fill: color }, root);
      }
    });

    const cursor = node("line", { class: "cursor", y1: M.t, y2: H - M.b, visibility: "hidden" }, root);
    const overlay = node("rect", { x: M.l, y: M.t, width: W - M.l - M.r, height: H - M.t - M.b, fill: "transparent" }, root);
    const wrap = document.createElement("div");
    wrap.className = "chart-wrap";
    const tip = document.createElement("div");
    tip.className = "chart-tip";
    tip.hidden = true;
    wrap.append(root, tip);
    fig.append(wrap);

    overlay.addEventListener("mousemove", function (ev) {
      const box = root.getBoundingClientRect();
      const px = ((ev.clientX - box.left) / box.width) * W;
      const x = x0 + ((px - M.l) / (W - M.l - M.r)) * (x1 - x0);
      cursor.setAttribute("x1", px);
      cursor.setAttribute("x2", px);
      cursor.setAttribute("visibility", "visible");
      tip.textContent = "";
      const head = document.createElement("div");
      head.className = "tip-head";
      head.textContent = fmtSec(x);
      tip.append(head);
      for (const s of series) {
        const p = nearest(s.points, x);
        const row = document.createElement("div");
        const sw = document.createElement("span");
        sw.className = "swatch";
        sw.style.background = s.color;
        row.append(sw, document.createTextNode(s.label + ": " + fmtNum(p[1])));
        tip.append(row);
      }
      tip.hidden = false;
      const left = ev.clientX - box.left;
      tip.style.left = (left > box.width / 2 ? left - tip.offsetWidth - 12 : left + 12) + "px";
    });
    overlay.addEventListener("mouseleave", function () {
      cursor.setAttribute("visibility", "hidden");
      tip.hidden = true;
    });

    if (series.length > 1 || opts.legend) {
      const legend = document.createElement("div");
      legend.className = "legend";
      for (const s of series) {
        const item = document.createElement("span");
        const sw = document.createElement("span");
        sw.className = "swatch";
        sw.style.background = s.color;
        item.append(sw, document.createTextNode(s.label));
        legend.append(item);
      }
      fig.append(legend);
    }
  }

  window.TF.lineChart = lineChart;
  window.TF.fmtSec = fmtSec;
})();
