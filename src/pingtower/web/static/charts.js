// Charts as inline SVG, each with its numbers reachable as text (a table behind a disclosure,
// and titles on the bars), so a screen reader gets the figures, not a picture.
import { duration, h, ms, pct, s } from "./ui.js";

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

// The phases a check reports, in the order they happen; any other phase follows these.
const PHASES = [["dns", "DNS"], ["connect", "Connect"], ["tls", "TLS"], ["first_byte", "First byte"], ["ttfb", "First byte"], ["total", "Total"]];

export function phaseNames(points) {
  const seen = new Set(points.flatMap((p) => Object.keys(p.phases_ms || {})));
  const known = PHASES.filter(([key]) => seen.has(key));
  const others = [...seen].filter((key) => !PHASES.some(([k]) => k === key)).sort().map((key) => [key, key]);
  return [...known, ...others];
}

// Mean time per phase for each step of the range, as bars, with the range's means (weighted by
// checks) in a table: where a slow check spends its time.
export function phaseChart(points, label) {
  const phases = phaseNames(points);
  const withData = points.filter((p) => p.checks && Object.keys(p.phases_ms || {}).length);
  if (!phases.length || !withData.length) {
    return h("p", { class: "muted", "data-testid": "no-phases" }, "No phase timings in this range (only HTTP and TCP checks report them).");
  }
  const checks = withData.reduce((n, p) => n + p.checks, 0);
  const mean = Object.fromEntries(phases.map(([key]) => {
    const weighted = withData.filter((p) => p.phases_ms[key] !== undefined);
    const n = weighted.reduce((sum, p) => sum + p.checks, 0);
    return [key, n ? weighted.reduce((sum, p) => sum + p.phases_ms[key] * p.checks, 0) / n : null];
  }));
  const width = 800, height = 160, pad = { left: 48, right: 8, top: 8, bottom: 8 };
  // Side by side, not stacked: an HTTP check's first byte is timed from the start, so it
  // already contains DNS and connect.
  const top = Math.max(...withData.flatMap((p) => Object.values(p.phases_ms))) * 1.1 || 1;
  const slot = (width - pad.left - pad.right) / withData.length;
  const bar = (slot * 0.8) / phases.length;
  const y = (v) => pad.top + (1 - v / top) * (height - pad.top - pad.bottom);
  const bars = withData.flatMap((p, i) => phases.map(([key, name], n) => {
    const value = p.phases_ms[key];
    if (value === undefined) return null;
    const known = PHASES.some(([k]) => k === key);
    return s("rect", { x: (pad.left + i * slot + slot * 0.1 + n * bar).toFixed(1), width: Math.max(0.5, bar).toFixed(2),
      y: y(value).toFixed(1), height: Math.max(0, y(0) - y(value)).toFixed(1),
      class: `phase phase-${known ? key : `other${n % 3}`}` },
    s("title", {}, `${new Date(p.at).toLocaleString()} ${name}: ${ms(value)}`));
  })).filter(Boolean);
  const summary = phases.map(([key, name]) => `${name} ${ms(mean[key])}`).join(", ");
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", preserveAspectRatio: "none",
    "aria-label": `${label}, mean over ${checks} checks: ${summary}` },
  s("line", { x1: pad.left, x2: width - pad.right, y1: y(0), y2: y(0), class: "axis" }),
  s("text", { x: 4, y: y(top / 1.1) + 4 }, ms(top / 1.1)), ...bars);
  const table = h("div", { class: "table-wrap" }, h("table", { "aria-label": label, "data-testid": "phase-table" },
    h("thead", {}, h("tr", {}, h("th", {}, "Phase"), h("th", { class: "num" }, "Mean"),
      h("th", { class: "num" }, "Slowest step"))),
    h("tbody", {}, phases.map(([key, name]) => {
      const values = withData.map((p) => p.phases_ms[key]).filter((v) => v !== undefined);
      return h("tr", { "data-phase": key }, h("th", { scope: "row" }, name),
        h("td", { class: "num" }, ms(mean[key])), h("td", { class: "num" }, values.length ? ms(Math.max(...values)) : "–"));
    }))));
  return h("div", {}, h("div", { class: "legend", "aria-hidden": "true" },
    phases.map(([key, name]) => h("span", { class: `phase-key phase-${PHASES.some(([k]) => k === key) ? key : "other0"}` }, name))),
  svg, table);
}

// A UTC day (YYYY-MM-DD) as the reader writes dates, e.g. "Nov 9".
export function dayLabel(isoDate) {
  const [year, month, day] = isoDate.split("-").map(Number);
  return new Date(Date.UTC(year, month - 1, day)).toLocaleDateString(undefined,
    { timeZone: "UTC", month: "short", day: "numeric", year: "numeric" });
}

// One bar per UTC day, coloured by that day's time-weighted uptime (the Statistics status-page
// figures: {date, uptime, downtime_seconds}); each bar's figure is its title and label.
export function dailyBars(days, label) {
  return h("div", { class: "bars", role: "list", "aria-label": label, "data-testid": "uptime-bars" },
    days.map((day) => {
      const figure = day.uptime === null ? "no data" : `${pct(day.uptime)} up`;
      const down = day.downtime_seconds ? `, down ${duration(day.downtime_seconds)}` : "";
      const text = `${dayLabel(day.date)}: ${figure}${down}`;
      return h("span", { role: "listitem", class: dayClass(day.uptime), title: text, "aria-label": text,
        "data-day": day.date });
    }));
}
