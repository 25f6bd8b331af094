// Charts as inline SVG, each with its numbers reachable as text (a table behind a disclosure,
// and titles on the bars), so a screen reader gets the figures, not a picture.
import { h, ms, pct, s } from "./ui.js";

export function latencyChart(points, label) {
  const width = 800, height = 220, pad = { left: 48, right: 8, top: 10, bottom: 22 };
  const withData = points.filter((p) => p.p95_ms !== null || p.p50_ms !== null);
  if (!withData.length) return h("p", { class: "muted" }, "No checks in this range yet.");
  const top = Math.max(...withData.map((p) => p.p95_ms ?? p.p50_ms)) * 1.1 || 1;
  const t0 = Date.parse(points[0].at), t1 = Date.parse(points[points.length - 1].at) || t0 + 1;
  const x = (at) => pad.left + ((Date.parse(at) - t0) / Math.max(1, t1 - t0)) * (width - pad.left - pad.right);
  const y = (v) => pad.top + (1 - v / top) * (height - pad.top - pad.bottom);
  const line = (key) => {
    // Gaps (no checks) break the line instead of drawing a misleading slope across them.
    let d = "", pen = false;
    for (const p of points) {
      if (p[key] === null) { pen = false; continue; }
      d += `${pen ? "L" : "M"}${x(p.at).toFixed(1)},${y(p[key]).toFixed(1)}`;
      pen = true;
    }
    return s("path", { d, class: key.replace("_ms", ""), fill: "none", "stroke-width": 2 });
  };
  // A point with no neighbour draws no line segment, so mark each point with a dot as well.
  const dots = (key) => points.filter((p) => p[key] !== null).map((p) =>
    s("circle", { cx: x(p.at).toFixed(1), cy: y(p[key]).toFixed(1), r: 2.5, class: `dot ${key.replace("_ms", "")}` }));
  const ticks = [0, 0.5, 1].map((f) => top * f / 1.1);
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", preserveAspectRatio: "none",
    "aria-label": `${label}: p95 up to ${ms(Math.max(...withData.map((p) => p.p95_ms ?? 0)))}` },
  ...ticks.map((v) => s("line", { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v), class: "axis" })),
  ...ticks.map((v) => s("text", { x: 4, y: y(v) + 4 }, ms(v))),
  s("text", { x: pad.left, y: height - 4 }, new Date(t0).toLocaleString()),
  s("text", { x: width - pad.right, y: height - 4, "text-anchor": "end" }, new Date(t1).toLocaleString()),
  line("p50_ms"), line("p95_ms"), ...dots("p50_ms"), ...dots("p95_ms"));
  const table = h("details", {}, h("summary", {}, "Show the numbers"),
    h("div", { class: "table-wrap" }, h("table", { "aria-label": label },
      h("thead", {}, h("tr", {}, ["Time", "Checks", "p50", "p95", "Success"].map((c) => h("th", {}, c)))),
      h("tbody", {}, withData.map((p) => h("tr", {}, h("td", {}, new Date(p.at).toLocaleString()),
        h("td", { class: "num" }, p.checks), h("td", { class: "num" }, ms(p.p50_ms)),
        h("td", { class: "num" }, ms(p.p95_ms)), h("td", { class: "num" }, pct(p.success_ratio))))))));
  return h("div", {}, h("div", { class: "legend", "aria-hidden": "true" },
    h("span", { class: "p50" }, "p50"), h("span", { class: "p95" }, "p95")), svg, table);
}

export function dayClass(ratio) {
  if (ratio === null || ratio === undefined) return "";
  if (ratio >= 0.999) return "good";
  if (ratio >= 0.95) return "warn";
  return "bad";
}

// One bar per day, coloured by the share of successful checks that day.
export function uptimeBars(points) {
  const known = points.filter((p) => p.success_ratio !== null);
  const checks = known.reduce((n, p) => n + p.checks, 0);
  const ok = known.reduce((n, p) => n + p.success_ratio * p.checks, 0);
  const overall = checks ? ok / checks : null;
  return h("div", {},
    h("div", { class: "bars", role: "list", "aria-label": `Daily check success, last ${points.length} days` },
      points.map((p) => {
        const text = `${new Date(p.at).toLocaleDateString()}: ${p.success_ratio === null ? "no data" : pct(p.success_ratio)}`;
        return h("span", { role: "listitem", class: dayClass(p.success_ratio), title: text, "aria-label": text });
      })),
    h("p", { class: "muted small" }, `${pct(overall, 3)} of checks successful over ${points.length} days`));
}
