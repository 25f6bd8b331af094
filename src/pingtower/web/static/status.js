// The public status page: no login. Every 30 seconds it reads two things at once:
// - the Statistics service's page (/api/v1/stats/public/<workspace>/status-page): the title and
//   logo an admin set, the public monitors with 90 daily uptimes and their incidents, from its
//   database (404: the workspace publishes nothing);
// - the web role's live summary (/status/<workspace>/summary.json): current statuses and open
//   incidents as the events arrive, which may be a moment ahead of the Statistics figures.
import { dailyBars, dayLabel } from "./charts.js";
import { ago, duration, h, pct, when } from "./ui.js";

const HEADLINES = {
  operational: "All systems operational",
  degraded: "Some systems are degraded",
  major_outage: "Some systems are down",
  maintenance: "Maintenance in progress",
  no_monitors: "No public monitors yet",
};
const LABELS = { up: "Operational", down: "Down", degraded: "Degraded", maintenance: "Maintenance",
  paused: "Paused", pending: "Checking", unknown: "Unknown" };
const DAYS = 90;
const PAST_SHOWN = 50;

const workspace = decodeURIComponent(location.pathname.split("/")[2] || "");
const main = document.getElementById("main");
const encoded = encodeURIComponent(workspace);

async function json(url, { missing } = {}) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  if (response.status === 404 && missing !== undefined) return missing;
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.json();
}

async function load() {
  const [history, live] = await Promise.allSettled([
    json(`/api/v1/stats/public/${encoded}/status-page`, { missing: null }),
    json(`/status/${encoded}/summary.json`),
  ]);
  if (history.status === "rejected" && live.status === "rejected") throw history.reason;
  return {
    stats: history.status === "fulfilled" ? history.value : null,
    statsError: history.status === "rejected" ? history.reason.message : null,
    live: live.status === "fulfilled" ? live.value : { monitors: [] },
  };
}

// Statistics' monitors with the live status laid over them where the live one is newer, plus
// the ones the live view has and Statistics not yet (published a moment ago).
function merge(stats, live) {
  const byId = new Map(live.monitors.map((m) => [m.monitor_id, m]));
  const monitors = (stats ? stats.monitors : []).map((m) => {
    const seen = byId.get(m.monitor_id);
    byId.delete(m.monitor_id);
    const current = { ...m, incident: null };
    const open = m.incidents.find((i) => i.ongoing);
    if (open) current.incident = { started_at: open.started_at, cause: open.cause };
    if (seen && seen.since && (!m.since || Date.parse(seen.since) >= Date.parse(m.since))) {
      current.status = seen.status;
      current.since = seen.since;
      current.incident = seen.incident;
    }
    return current;
  });
  for (const seen of byId.values()) monitors.push({ ...seen, days: null, incidents: [], uptime: null });
  return monitors.sort((a, b) => a.group.localeCompare(b.group) || a.name.localeCompare(b.name));
}

// The worst state among the monitors (as web/domain/statuspage.py `overall`).
function overall(monitors) {
  const statuses = new Set(monitors.map((m) => m.status));
  if (statuses.has("down")) return "major_outage";
  if (statuses.has("degraded")) return "degraded";
  if (statuses.has("maintenance")) return "maintenance";
  return monitors.length ? "operational" : "no_monitors";
}

function brand(stats) {
  const title = (stats && stats.title) || `${workspace} status`;
  document.getElementById("title").textContent = title;
  document.title = title;
  const logo = document.getElementById("logo");
  const source = stats && stats.logo_url ? stats.logo_url : "/static/favicon.svg";
  if (logo.getAttribute("src") !== source) logo.setAttribute("src", source);
  logo.alt = stats && stats.logo_url ? `${title} logo` : "";
  logo.classList.toggle("custom", Boolean(stats && stats.logo_url));
}

function monitorRow(m) {
  return h("div", { class: "status-monitor", "data-monitor": m.name },
    h("div", { class: "status-row" },
      h("span", {}, m.name),
      h("span", {}, h("span", { class: `badge ${m.status}` }, LABELS[m.status] || m.status),
        m.since ? h("span", { class: "muted small" }, ` ${ago(m.since)}`) : null)),
    m.days ? [
      dailyBars(m.days, `${m.name}: uptime per day, last ${m.days.length} days`),
      h("div", { class: "bar-scale muted small" },
        h("span", {}, `${m.days.length} days ago`),
        h("span", { "data-testid": "uptime-90d" }, m.uptime === null ? "no data yet" : `${pct(m.uptime, 3)} uptime`),
        h("span", {}, "Today")),
    ] : h("p", { class: "muted small" }, "History not available yet."));
}

// Resolved incidents of the public monitors, newest first, under the (UTC) day they began.
function pastIncidents(monitors) {
  const all = monitors.flatMap((m) => m.incidents.filter((i) => !i.ongoing).map((i) => ({ ...i, name: m.name })))
    .sort((a, b) => Date.parse(b.started_at) - Date.parse(a.started_at));
  const shown = all.slice(0, PAST_SHOWN);
  const days = new Map();
  for (const incident of shown) {
    const day = incident.started_at.slice(0, 10);
    if (!days.has(day)) days.set(day, []);
    days.get(day).push(incident);
  }
  return h("section", { class: "panel", "aria-labelledby": "history-title" },
    h("h2", { id: "history-title" }, `Past incidents (last ${DAYS} days)`),
    shown.length ? h("ol", { class: "history" }, [...days].map(([day, incidents]) => h("li", { "data-day": day },
      h("h3", {}, dayLabel(day)),
      incidents.map((i) => h("p", { class: "past-incident", "data-monitor": i.name }, h("b", {}, i.name),
        ` — down ${duration(i.duration_seconds)} from ${when(i.started_at)}`, i.cause ? ` (${i.cause})` : "")))))
      : h("p", { class: "muted small" }, `No incidents in the last ${DAYS} days.`),
    all.length > shown.length ? h("p", { class: "muted small" }, `The ${PAST_SHOWN} most recent of ${all.length} are shown.`) : null);
}

function render({ stats, statsError, live }) {
  brand(stats);
  const monitors = merge(stats, live);
  const groups = new Map();
  for (const monitor of monitors) {
    if (!groups.has(monitor.group)) groups.set(monitor.group, []);
    groups.get(monitor.group).push(monitor);
  }
  const current = monitors.filter((m) => m.incident);
  const state = overall(monitors);
  // h() flattens arrays and skips nulls; replaceChildren would print them.
  main.replaceChildren(h("div", {},
    h("div", { class: `headline ${state}`, role: "status", "data-testid": "headline" }, HEADLINES[state]),
    statsError ? h("p", { class: "muted small" }, `Uptime history is unavailable right now (${statsError}).`) : null,
    current.length ? h("section", { class: "panel" }, h("h2", {}, "Current incidents"),
      current.map((m) => h("p", {}, h("b", {}, m.name), ` — since ${when(m.incident.started_at)}`,
        m.incident.cause ? ` (${m.incident.cause})` : ""))) : null,
    [...groups].map(([group, members]) => h("section", { class: "panel" }, h("h2", {}, group),
      members.map(monitorRow))),
    monitors.length ? pastIncidents(monitors) : null,
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
