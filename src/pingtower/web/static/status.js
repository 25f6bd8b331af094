// The public status page: no login, reads /status/<workspace>/summary.json every 30 seconds.
import { ago, duration, h, when } from "./ui.js";

const HEADLINES = {
  operational: "All systems operational",
  degraded: "Some systems are degraded",
  major_outage: "Some systems are down",
  maintenance: "Maintenance in progress",
  no_monitors: "No public monitors yet",
};
const LABELS = { up: "Operational", down: "Down", degraded: "Degraded", maintenance: "Maintenance",
  paused: "Paused", pending: "Checking", unknown: "Unknown" };

const workspace = decodeURIComponent(location.pathname.split("/")[2] || "");
const main = document.getElementById("main");

async function load() {
  const response = await fetch(`/status/${encodeURIComponent(workspace)}/summary.json`);
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.json();
}

function render(data) {
  document.getElementById("title").textContent = `${workspace} status`;
  document.title = `${workspace} status`;
  const groups = new Map();
  for (const monitor of data.monitors) {
    if (!groups.has(monitor.group)) groups.set(monitor.group, []);
    groups.get(monitor.group).push(monitor);
  }
  const current = data.monitors.filter((m) => m.incident);
  // h() flattens arrays and skips nulls; replaceChildren would print them.
  main.replaceChildren(h("div", {},
    h("div", { class: `headline ${data.overall}`, role: "status", "data-testid": "headline" }, HEADLINES[data.overall]),
    current.length ? h("section", { class: "panel" }, h("h2", {}, "Current incidents"),
      current.map((m) => h("p", {}, h("b", {}, m.name), ` — since ${when(m.incident.started_at)}`,
        m.incident.cause ? ` (${m.incident.cause})` : ""))) : null,
    [...groups].map(([group, monitors]) => h("section", { class: "panel" }, h("h2", {}, group),
      monitors.map((m) => h("div", { class: "status-row", "data-monitor": m.name },
        h("span", {}, m.name),
        h("span", {}, h("span", { class: `badge ${m.status}` }, LABELS[m.status] || m.status),
          m.since ? h("span", { class: "muted small" }, ` ${ago(m.since)}`) : null))))),
    h("section", { class: "panel" }, h("h2", {}, "Past incidents"),
      data.past_incidents.length ? data.past_incidents.map((i) => h("p", {}, h("b", {}, i.name), ` — ${when(i.started_at)}, `,
        duration((Date.parse(i.resolved_at) - Date.parse(i.started_at)) / 1000)))
        : h("p", { class: "muted" }, "No incidents reported.")),
  ));
}

async function refresh() {
  try {
    render(await load());
  } catch (error) {
    main.replaceChildren(h("p", { class: "error" }, `Could not load the status: ${error.message}`));
  }
}

refresh();
setInterval(refresh, 30000);
