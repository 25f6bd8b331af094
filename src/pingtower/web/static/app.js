// The dashboard: hash routes, one module per concern (api.js, ui.js, charts.js, here the pages).
import { ApiError, LiveStream, del, get, patch, post, put, query, token, upload } from "./api.js";
import * as auth from "./auth.js";
import { dailyBars, latencyChart, phaseChart } from "./charts.js";
import { ago, badge, duration, h, ms, pct, showErrors, toast, when } from "./ui.js";

const main = document.getElementById("main");
const PAGE_SIZE = 100;
const STATUSES = ["up", "down", "degraded", "pending", "paused", "maintenance", "unknown"];
const ROLES = ["viewer", "editor", "admin"];
// Declared before the first route() runs (below), which may open the overview at once.
const overviewState = { status: "", tag: "", type: "", text: "", sort: "name", desc: false, page: 0 };
// The overview's figures come from the statistics overview, which pages by offset. The first
// page is asked for alone and shown at once; the rest follows in the background, a slice at a
// time (and none while a filter's question is open) so that a filter typed meanwhile, answered by
// the API, waits behind one short request at most. Once everything is in, filtering and sorting
// happen in the page.
const BACKGROUND_SLICE = 500;
// The first slice waits this long after the first page is shown, so that a filter typed at once
// is not held up by it.
const BACKGROUND_DELAY_MS = 500;
const listeners = new Set();
const cleanups = [];  // run when the page changes (timers of the page left)
// The newest status each monitor was seen to take on the live stream, whichever page was open:
// the statistics a page loads may lag the stream by a moment, and this corrects them.
const latest = new Map();
const gone = new Set();  // monitors deleted since the page opened
const recent = [];  // the last live events, newest first, shown on the overview
const names = new Map();  // monitor id -> name, from whatever the pages loaded
const live = new LiveStream(
  (event) => {
    if (event.type === "monitor.status_changed") latest.set(event.payload.monitor_id, event.payload);
    if (event.type === "monitor.deleted") gone.add(event.payload.monitor_id);
    if (event.type !== "dropped") {
      recent.unshift({ at: new Date(), ...event });
      recent.length = Math.min(recent.length, 20);
    }
    for (const listener of listeners) listener(event);
  },
  (on) => {
    const el = document.getElementById("live");
    el.className = on ? "live on" : "live";
    el.textContent = on ? "Live" : "Offline";
  },
);

window.addEventListener("pingtower:unauthorized", () => {
  token.clear();
  sessionStorage.removeItem("pingtower.cookie");
  known = null;
  knowing = null;
  live.stop();
  if (!location.hash.startsWith("#/login")) location.hash = "#/login";
});

document.getElementById("logout").addEventListener("click", async () => {
  if (auth.logout()) return;  // Keycloak: ends its session there and comes back to the login
  try { await post("/auth/logout"); } catch { /* no built-in login, or already out */ }
  token.clear();
  sessionStorage.removeItem("pingtower.cookie");
  known = null;
  knowing = null;
  live.stop();
  location.hash = "#/login";
});

// --- routing -----------------------------------------------------------------------------------

const routes = [
  [/^#\/login$/, loginPage],
  [/^#\/overview$/, overviewPage],
  [/^#\/monitors\/new$/, () => monitorForm(null)],
  [/^#\/monitors\/([0-9a-f-]{36})\/edit$/, (id) => monitorForm(id)],
  [/^#\/monitors\/([0-9a-f-]{36})$/, monitorPage],
  [/^#\/channels$/, channelsPage],
  [/^#\/rules$/, rulesPage],
  [/^#\/alerts$/, alertsPage],
  [/^#\/notifications$/, notificationsPage],
  [/^#\/settings$/, settingsPage],
];

async function route() {
  const hash = location.hash || "#/overview";
  const loggedIn = Boolean(token.get()) || sessionStorage.getItem("pingtower.cookie") === "1";
  if (!loggedIn && hash !== "#/login") { location.hash = "#/login"; return; }
  document.getElementById("nav").hidden = !loggedIn;
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", hash.startsWith(link.getAttribute("href")));
  }
  listeners.clear();
  while (cleanups.length) cleanups.pop()();
  if (loggedIn) { live.start(); whoami(); }
  for (const [pattern, page] of routes) {
    const match = hash.match(pattern);
    if (match) {
      main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
      try {
        await page(...match.slice(1));
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 401)) {
          main.replaceChildren(h("p", { class: "error", role: "alert" }, `Could not load: ${error.message}`));
        }
      }
      main.focus({ preventScroll: true });
      return;
    }
  }
  location.hash = "#/overview";
}

// Who is logged in: with Keycloak, the tokens auth.js holds say it (name from the ID token,
// roles and workspace from the access token); with the built-in login (or a pasted token),
// /auth/me does. Unknown (no answer) shows everything and leaves the refusals to the API.
let known = null;
let knowing = null;  // the question under way or answered, so pages asking at once share it
function whoami() {
  if (!knowing) knowing = findWho();
  return knowing;
}

async function findWho() {
  if (auth.enabled()) {
    known = auth.user();
  } else {
    try {
      known = await get("/auth/me");
    } catch {
      known = null;
    }
  }
  // Only tidies the menu: the API refuses what the role does not allow anyway.
  document.getElementById("who").textContent = known ? [known.subject, known.workspace].filter(Boolean).join(" · ") : "";
  document.getElementById("settings-link").hidden = !may("admin");
  document.getElementById("new-monitor-link").hidden = !may("editor");
  const link = document.getElementById("status-link");
  if (known && known.workspace) {
    link.href = `/status/${encodeURIComponent(known.workspace)}`;
    link.hidden = false;
  }
  return known;
}

const RANK = { viewer: 0, editor: 1, admin: 2 };
// Whether the caller's role reaches `role` (admin implies editor implies viewer); unknown roles
// count as maybe.
function may(role) {
  if (!known || !Array.isArray(known.roles)) return true;
  return known.roles.some((held) => (RANK[held] ?? -1) >= RANK[role]);
}

// Refresh the current page after a while, unless the user has moved on by then.
function later(ms) {
  const timer = setTimeout(route, ms);
  cleanups.push(() => clearTimeout(timer));
}

window.addEventListener("hashchange", route);
route();

function view(title, ...children) {
  document.title = `${title} · PingTower`;
  main.replaceChildren(h("h1", {}, title), ...children);
}

// --- login -------------------------------------------------------------------------------------

async function loginPage() {
  if (auth.enabled()) { view("Welcome to PingTower", auth.loginPanel()); return; }
  const error = h("p", { class: "error form-error", role: "alert" });
  const password = h("form", { class: "stack panel" },
    h("h2", {}, "Log in"),
    h("label", {}, "Username", h("input", { name: "username", autocomplete: "username", required: true })),
    h("label", {}, "Password", h("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
    h("button", { class: "primary", type: "submit" }, "Log in"),
  );
  password.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(password);
    try {
      const response = await fetch("/api/v1/auth/login", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ username: data.get("username"), password: data.get("password") }),
      });
      if (response.status === 404) throw new Error("This server has no built-in login: paste an API token below.");
      const body = await response.json();
      if (!response.ok) throw new Error(body.detail || body.title || "Login failed");
      if (body.access_token) token.set(body.access_token);
      else sessionStorage.setItem("pingtower.cookie", "1");
      location.hash = "#/overview";
    } catch (failure) {
      error.textContent = failure.message;
    }
  });
  const pasted = h("form", { class: "stack panel" },
    h("h2", {}, "Or use an API token"),
    h("label", {}, "API token", h("small", {}, "The admin token printed at start-up, or an API key."),
      h("input", { name: "token", type: "password", autocomplete: "off", required: true })),
    h("button", { class: "primary", type: "submit" }, "Use token"),
  );
  pasted.addEventListener("submit", async (event) => {
    event.preventDefault();
    token.set(String(new FormData(pasted).get("token")).trim());
    try {
      await get("/monitors?limit=1");
      location.hash = "#/overview";
    } catch (failure) {
      token.clear();
      error.textContent = failure.status === 401 ? "That token is not valid." : failure.message;
    }
  });
  view("Welcome to PingTower", error, h("div", { class: "grid2" }, password, pasted));
}

// --- overview ----------------------------------------------------------------------------------

function withLiveStatus(all) {
  const items = all.filter((item) => !gone.has(item.monitor_id));
  for (const item of items) {
    const seen = latest.get(item.monitor_id);
    if (seen && (!item.since || Date.parse(seen.changed_at) > Date.parse(item.since))) {
      item.status = seen.current;
      item.since = seen.changed_at;
    }
  }
  return items;
}

async function everyMonitor(isLeft, idle) {
  const all = [];
  for (let offset = 0; ;) {
    await idle();
    if (isLeft()) return null;
    const page = await get(`/stats/overview${query({ limit: BACKGROUND_SLICE, offset })}`);
    all.push(...page.items);
    if (page.next_offset === null) return all;
    offset = page.next_offset;
  }
}

function overviewQuery(state) {
  return query({ sort: state.sort, order: state.desc ? "desc" : "asc", status: state.status,
    tag: state.tag, q: state.text, limit: PAGE_SIZE, offset: state.page * PAGE_SIZE });
}

async function overviewPage() {
  const state = overviewState;
  // The first page for the current filters; a type filter (the API has none) waits for all.
  const first = await get(`/stats/overview${overviewQuery(state)}`);
  let items = [];  // every monitor, once `complete`
  let complete = false;
  let left = false;
  cleanups.push(() => { left = true; });
  // Until everything is loaded, the rows shown are the API's answer for the current filters.
  let remote = { items: withLiveStatus(first.items), total: first.total };
  let workspaceTotal = state.status || state.tag || state.text ? null : first.total;
  let asked = 0;
  let answered = null;  // resolves when the open filter question is answered
  for (const item of remote.items) names.set(item.monitor_id, item.name);
  const byId = new Map();
  const counts = h("div", { class: "counts", role: "group", "aria-label": "Monitors by status" });
  const body = h("tbody");
  const pager = h("div", { class: "pager" });
  const feed = h("ul", { class: "feed", "data-testid": "live-feed", "aria-live": "polite" });
  const typeSelect = h("select", { "aria-label": "Type" });
  const tagSelect = h("select", { "aria-label": "Tag" });

  function fillOptions() {
    const types = [...new Set(items.map((item) => item.type))].sort();
    const tags = [...new Set([...items.flatMap((item) => item.tags), state.tag].filter(Boolean))].sort();
    typeSelect.replaceChildren(h("option", { value: "" }, "Any type"), types.map((v) => h("option", { value: v }, v)));
    tagSelect.replaceChildren(h("option", { value: "" }, "Any tag"), tags.map((v) => h("option", { value: v }, v)));
    typeSelect.value = state.type;
    tagSelect.value = state.tag;
  }

  function changed() {
    state.page = 0;
    update();
  }
  const control = (el, key) => {
    el.value = state[key];
    el.addEventListener("input", () => { state[key] = el.value; changed(); });
    return el;
  };
  const filters = h("div", { class: "filters" },
    control(h("input", { type: "search", placeholder: "Search by name", "aria-label": "Search" }), "text"),
    control(h("select", { "aria-label": "Status" }, h("option", { value: "" }, "Any status"),
      STATUSES.map((v) => h("option", { value: v }, v))), "status"),
    control(typeSelect, "type"),
    control(tagSelect, "tag"),
  );

  const columns = [
    ["name", "Monitor"], ["status", "Status"], ["uptime_24h", "24 h", "num"], ["uptime_30d", "30 d", "num"],
    ["p95_24h_ms", "p95", "num"], ["last_check_at", "Last check", "hide-sm"],
  ];
  const head = h("tr");
  function renderHead() {
    head.replaceChildren(...columns.map(([key, label, cls]) => h("th", { class: cls, scope: "col",
      "aria-sort": state.sort === key ? (state.desc ? "descending" : "ascending") : undefined },
    h("button", { type: "button", onclick: () => {
      state.desc = state.sort === key ? !state.desc : false; state.sort = key; update();
    } }, label, state.sort === key ? (state.desc ? " ▾" : " ▴") : ""))));
  }

  function filtered() {
    const text = state.text.toLowerCase();
    return items.filter((item) => (!state.status || item.status === state.status) &&
      (!state.type || item.type === state.type) && (!state.tag || item.tags.includes(state.tag)) &&
      (!text || item.name.toLowerCase().includes(text)));
  }

  function sorted(list) {
    const key = state.sort;
    const sign = state.desc ? -1 : 1;
    return list.sort((a, b) => {
      const x = a[key], y = b[key];
      if (x === null && y === null) return a.name.localeCompare(b.name);
      if (x === null) return 1;  // missing figures go last either way
      if (y === null) return -1;
      return (x < y ? -1 : x > y ? 1 : a.name.localeCompare(b.name)) * sign;
    });
  }

  // A filter or sort changed: in the page once everything is here, else ask the API (the
  // newest question wins; an older answer arriving late is dropped).
  async function update() {
    if (complete) { render(); return; }
    const number = ++asked;
    remote = null;
    render();
    if (state.type) return;  // shown once every monitor is in
    const question = get(`/stats/overview${overviewQuery(state)}`);
    answered = question.catch(() => {});
    try {
      const page = await question;
      if (number !== asked || complete || left) return;
      remote = { items: withLiveStatus(page.items), total: page.total };
      for (const item of remote.items) names.set(item.monitor_id, item.name);
    } catch (error) {
      if (number !== asked || complete || left) return;
      remote = { items: [], total: 0, error: error.message };
    }
    render();
  }

  function renderCounts() {
    const pressed = (v) => String(state.status === v);
    const all = h("button", { class: "count", type: "button", "aria-pressed": String(!state.status),
      onclick: () => { state.status = ""; changed(); } }, h("b", {}, complete ? items.length : (workspaceTotal ?? "…")), "all");
    if (!complete) {
      counts.replaceChildren(all, ...["up", "down"].map((v) => h("button", { class: "count", type: "button",
        "data-testid": `count-${v}`, "aria-pressed": pressed(v), "aria-busy": "true",
        onclick: () => { state.status = state.status === v ? "" : v; changed(); } }, h("b", {}, "…"), v)));
      return;
    }
    const tally = Object.fromEntries(STATUSES.map((v) => [v, 0]));
    for (const item of items) tally[item.status] = (tally[item.status] || 0) + 1;
    counts.replaceChildren(all,
      ...STATUSES.filter((v) => tally[v] || v === "up" || v === "down").map((v) =>
        h("button", { class: "count", type: "button", "data-testid": `count-${v}`, "aria-pressed": pressed(v),
          onclick: () => { state.status = state.status === v ? "" : v; changed(); } },
        h("b", {}, tally[v]), v)),
    );
  }

  function render() {
    renderHead();
    renderCounts();
    filters.querySelector("[aria-label=Status]").value = state.status;
    let slice, matching, message;
    if (complete) {
      const list = sorted(filtered());
      matching = list.length;
      const pages = Math.max(1, Math.ceil(matching / PAGE_SIZE));
      state.page = Math.min(state.page, pages - 1);
      slice = list.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE);
      message = items.length ? "No monitor matches the filters." : "No monitors yet: create one.";
    } else if (remote) {
      slice = remote.items.filter((item) => !gone.has(item.monitor_id));
      matching = remote.total;
      message = remote.error ? `Could not load: ${remote.error}` : workspaceTotal === 0
        ? "No monitors yet: create one." : "No monitor matches the filters.";
    } else {
      slice = [];
      matching = null;
      message = "Loading…";
    }
    // Only one page of rows is ever in the DOM, so thousands of monitors stay fast.
    body.replaceChildren(...slice.map((item) => h("tr", { "data-monitor": item.monitor_id },
      h("td", {}, h("a", { href: `#/monitors/${item.monitor_id}` }, item.name), " ",
        item.tags.map((tag) => h("span", { class: "tag" }, tag))),
      h("td", { "data-testid": "status" }, badge(item.status)),
      h("td", { class: "num" }, pct(item.uptime_24h)),
      h("td", { class: "num" }, pct(item.uptime_30d)),
      h("td", { class: "num" }, ms(item.p95_24h_ms)),
      h("td", { class: "hide-sm", title: when(item.last_check_at) }, ago(item.last_check_at)),
    )));
    if (!slice.length) {
      body.replaceChildren(h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, message)));
    }
    const pages = Math.max(1, Math.ceil((matching ?? 0) / PAGE_SIZE));
    const move = (by) => { state.page += by; update(); };
    pager.replaceChildren(
      h("span", { class: "muted small" }, matching === null ? "Loading…"
        : `${matching} monitors · page ${state.page + 1} of ${pages}`, complete ? "" : " · loading the rest…"),
      h("button", { type: "button", disabled: state.page === 0, onclick: () => move(-1) }, "Previous"),
      h("button", { type: "button", disabled: state.page >= pages - 1, onclick: () => move(1) }, "Next"),
    );
  }

  function adopt(all) {
    items = withLiveStatus(all);
    byId.clear();
    for (const item of items) { byId.set(item.monitor_id, item); names.set(item.monitor_id, item.name); }
    complete = true;
    workspaceTotal = items.length;
    fillOptions();
    renderFeed();
    render();
  }

  let reloading = null;
  async function loadEverything() {
    try {
      const all = await everyMonitor(() => left, async () => {
        while (answered) {
          const waiting = answered;
          await waiting;
          if (answered === waiting) answered = null;
        }
      });
      if (all && !left) adopt(all);
    } finally {
      reloading = null;
    }
  }
  function reloadSoon() {
    // A monitor the page does not know yet: fetch the list again, at most once a second.
    if (reloading) return;
    reloading = setTimeout(() => { loadEverything().catch(() => { /* the next event tries again */ }); }, 1000);
  }

  // Figures such as uptime and p95 move without events; refresh them now and then.
  const timer = setInterval(reloadSoon, 30000);
  cleanups.push(() => clearInterval(timer));

  function renderFeed() {
    feed.replaceChildren(...recent.map(({ at, type, payload }) => {
      const name = names.get(payload.monitor_id) || "a monitor";
      const time = at.toLocaleTimeString();
      if (type === "monitor.status_changed") {
        return h("li", {}, `${time} · ${name} is now `, badge(payload.current),
          payload.error_message ? ` — ${payload.error_message}` : "");
      }
      if (type === "incident.opened") {
        return h("li", { "data-testid": "incident-opened" }, `${time} · Incident opened on ${name}`,
          payload.cause ? `: ${payload.cause}` : "");
      }
      if (type === "incident.resolved") {
        return h("li", { "data-testid": "incident-resolved" }, `${time} · Incident on ${name} resolved`);
      }
      if (type === "monitor.deleted") return h("li", {}, `${time} · ${name} was deleted`);
      return null;
    }).filter(Boolean));
  }

  listeners.add(({ type, payload }) => {
    const shown = [byId.get(payload.monitor_id), ...(remote && !complete ? remote.items : [])
      .filter((other) => other.monitor_id === payload.monitor_id)].filter(Boolean);
    if (type === "monitor.status_changed") {
      // Still loading: the slices asked for after this event carry it (and `latest` corrects
      // the ones already in).
      if (!shown.length && complete) { reloadSoon(); return; }
      for (const item of shown) {
        item.status = payload.current;
        item.since = payload.changed_at;
        item.last_check_at = payload.changed_at;
      }
      render();
    } else if (type === "monitor.deleted") {
      items = items.filter((other) => other.monitor_id !== payload.monitor_id);
      byId.delete(payload.monitor_id);
      render();
    } else if (type === "dropped") {
      reloadSoon();
    }
    renderFeed();
  });

  fillOptions();
  view("Overview", counts, filters,
    h("div", { class: "table-wrap" }, h("table", { "aria-label": "Monitors" }, h("thead", {}, head), body)),
    pager, h("h2", {}, "Live events"), h("div", { class: "panel" }, feed));
  if (state.type) remote = null;
  render();
  renderFeed();
  reloading = true;  // the first full load counts as the pending reload
  // A failure leaves the first page shown; the periodic refresh tries again.
  const start = setTimeout(() => { loadEverything().catch(() => {}); }, BACKGROUND_DELAY_MS);
  cleanups.push(() => clearTimeout(start));
}

// --- monitor detail ----------------------------------------------------------------------------

const RANGES = { "1h": [3600, "1m"], "24h": [86400, "15m"], "7d": [604800, "2h"], "30d": [2592000, "6h"], "1y": [31536000, "7d"] };
let chosenRange = "24h";

async function monitorPage(id) {
  const [, monitor, incidents, results] = await Promise.all([
    whoami(),
    get(`/monitors/${id}`),
    get(`/stats/monitors/${id}/incidents?limit=20`).catch(() => ({ items: [] })),
    get(`/monitors/${id}/results?limit=20`),
  ]);
  names.set(id, monitor.name);
  const chart = h("div", { class: "chart" });
  const phases = h("div", { class: "chart" });
  const bars = h("div");
  const since = (seconds) => new Date(Date.now() - seconds * 1000).toISOString();

  async function loadChart() {
    const [seconds, step] = RANGES[chosenRange];
    try {
      const series = await get(`/stats/monitors/${id}/timeseries${query({ from: since(seconds), step })}`);
      chart.replaceChildren(latencyChart(series.points, `Response time over ${chosenRange}`));
      phases.replaceChildren(phaseChart(series.points, `Time per phase over ${chosenRange}`));
    } catch (error) {
      chart.replaceChildren(h("p", { class: "muted" }, `No statistics yet (${error.message}).`));
      phases.replaceChildren();
    }
  }
  async function loadBars() {
    try {
      // Time-weighted uptime per UTC day (the status page's figures), not the share of checks.
      const daily = await get(`/stats/monitors/${id}/daily${query({ days: 90 })}`);
      bars.replaceChildren(
        dailyBars(daily.days, `Daily uptime, last ${daily.days.length} days`),
        h("p", { class: "muted small" }, `${pct(daily.uptime, 3)} uptime over ${daily.days.length} days`));
    } catch (error) {
      bars.replaceChildren(h("p", { class: "muted" }, `No statistics yet (${error.message}).`));
    }
  }

  const act = (label, action, cls) => h("button", { type: "button", class: cls, onclick: async () => {
    try { await action(); } catch (error) { toast(error.message); }
  } }, label);
  // Viewers see no changing actions (the API refuses them anyway).
  const actions = !may("editor") ? null : h("div", { class: "actions" },
    monitor.paused
      ? act("Resume", async () => { await post(`/monitors/${id}/resume`); toast("Resumed"); route(); })
      : act("Pause", async () => { await post(`/monitors/${id}/pause`); toast("Paused"); route(); }),
    act("Check now", async () => { await post(`/monitors/${id}/check-now`); toast("Check queued"); later(1500); }),
    h("a", { href: `#/monitors/${id}/edit` }, h("button", { type: "button", tabindex: -1 }, "Edit")),
    act("Delete", async () => {
      if (!confirm(`Delete ${monitor.name}?`)) return;
      await del(`/monitors/${id}`); gone.add(id); toast("Deleted"); location.hash = "#/overview";
    }, "danger"),
  );
  const rangePicker = h("div", { class: "filters", role: "group", "aria-label": "Range" },
    Object.keys(RANGES).map((key) => h("button", { type: "button", "aria-pressed": String(key === chosenRange),
      onclick: (event) => {
        chosenRange = key;
        for (const b of rangePicker.children) b.setAttribute("aria-pressed", String(b === event.currentTarget));
        loadChart();
      } }, key)));
  const last = monitor.last_result;
  view(monitor.name,
    h("div", { class: "panel" },
      h("p", {}, badge(monitor.status), " since ", when(monitor.status_since), " · ",
        h("span", { class: "muted" }, `${monitor.type} ${monitor.target} every ${monitor.interval_seconds} s`)),
      monitor.incident_id ? h("p", { class: "error", "data-testid": "current-incident" }, "Incident open",
        last && last.error_message ? `: ${last.error_message}` : "") : null,
      last ? h("p", { class: "muted small" }, `Last check ${ago(last.finished_at)}: ${last.outcome}, ${ms(last.latency_ms)}`) : null,
      actions),
    h("h2", {}, "Response time"), rangePicker, h("div", { class: "panel" }, chart),
    h("h2", {}, "Where the time goes"), h("div", { class: "panel" }, phases),
    h("h2", {}, "Last 90 days"), h("div", { class: "panel" }, bars),
    h("h2", {}, "Incidents"),
    h("div", { class: "table-wrap" }, h("table", { "aria-label": "Incidents" },
      h("thead", {}, h("tr", {}, ["Started", "Duration", "Cause", "State"].map((c) => h("th", {}, c)))),
      h("tbody", {}, incidents.items.length ? incidents.items.map((i) => h("tr", {},
        h("td", {}, when(i.started_at)), h("td", {}, duration(i.duration_seconds)),
        h("td", {}, i.first_error || i.cause || "–"), h("td", {}, i.ongoing ? "ongoing" : "resolved")))
        : h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No incidents."))))),
    h("h2", {}, "Recent results"),
    h("div", { class: "table-wrap" }, h("table", { "aria-label": "Recent results" },
      h("thead", {}, h("tr", {}, ["When", "Outcome", "Latency", "Code", "Error"].map((c) => h("th", {}, c)))),
      h("tbody", {}, results.items.map((r) => h("tr", {},
        h("td", {}, when(r.finished_at)), h("td", {}, r.outcome), h("td", { class: "num" }, ms(r.latency_ms)),
        h("td", {}, r.status_code ?? "–"), h("td", {}, r.error_message || "")))))),
  );
  listeners.add(({ payload }) => { if (payload.monitor_id === id) later(300); });
  // Incidents and results are written by other services a moment after the event: look again.
  const timer = setInterval(() => { if (!document.hidden) route(); }, 10000);
  cleanups.push(() => clearInterval(timer));
  loadChart();
  loadBars();
}

// --- create / edit monitor ---------------------------------------------------------------------

async function monitorForm(id) {
  const [monitor] = await Promise.all([id ? get(`/monitors/${id}`) : null, whoami()]);
  if (!may("editor")) {
    view(id ? `Edit ${monitor.name}` : "New monitor", h("p", { class: "muted" }, "Only an editor or admin of the workspace creates and changes monitors."));
    return;
  }
  // Only an admin publishes a monitor (the API refuses the others): the others neither see the
  // box nor send the flag, so saving leaves it as it was.
  const admin = mayAdminister();
  const value = (key, fallback = "") => (monitor && monitor[key] !== null ? monitor[key] : fallback);
  const slo = monitor ? monitor.slo : null;
  const field = (label, input, hint) => h("label", {}, label, hint ? h("small", {}, hint) : null, input);
  const type = h("select", { name: "type" }, ["http", "tcp", "dns", "tls", "icmp", "heartbeat"].map((t) =>
    h("option", { value: t, selected: value("type", "http") === t }, t.toUpperCase())));
  const form = h("form", { class: "stack panel", novalidate: true },
    h("p", { class: "error form-error", role: "alert" }),
    field("Name", h("input", { name: "name", value: value("name") })),
    field("Type", type),
    field("Target", h("input", { name: "target", value: value("target"), placeholder: "https://example.com/health or host:port" }),
      "A URL for HTTP, host:port for TCP."),
    field("Expected status codes", h("input", { name: "expected_status",
      value: ((monitor && monitor.settings.expected_status) || ["200-299"]).join(", ") }), "HTTP only, e.g. 200-299, 301"),
    field("Interval (seconds)", h("input", { name: "interval_seconds", type: "number", value: value("interval_seconds", 60) })),
    field("Timeout (seconds)", h("input", { name: "timeout_seconds", type: "number", step: "0.1", value: value("timeout_seconds") })),
    field("Failures before down", h("input", { name: "failures_before_down", type: "number", value: value("failures_before_down") })),
    field("Tags", h("input", { name: "tags", value: value("tags", []).join(", ") }), "Comma-separated; the first one groups it on the status page."),
    admin ? field("Public status page", h("input", { name: "public", type: "checkbox", checked: Boolean(value("public", false)) }),
      "Show it on the workspace's public status page.") : null,
    // The API takes the objective as a fraction (0.999); people write a percentage. Rounded to
    // 12 digits both ways, so 99.9 stays 99.9 and not 0.9990000000000001.
    field("SLO objective (%)", h("input", { name: "slo.objective", type: "number", step: "any",
      value: slo ? Number((slo.objective * 100).toPrecision(12)) : "" }), "Optional, e.g. 99.9: the share of time it should be up. Empty: no SLO."),
    field("SLO window (days)", h("input", { name: "slo.window_days", type: "number", value: slo ? slo.window_days : 30 })),
    h("div", { class: "actions" }, h("button", { class: "primary", type: "submit" }, id ? "Save" : "Create monitor"),
      h("a", { href: id ? `#/monitors/${id}` : "#/overview" }, "Cancel")),
  );
  const syncType = () => {
    form.querySelector("[name=expected_status]").closest("label").hidden = type.value !== "http";
  };
  type.addEventListener("change", syncType);
  syncType();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const number = (key) => (data.get(key) === "" ? null : Number(data.get(key)));
    const body = {
      name: data.get("name"), type: data.get("type"), target: data.get("target"),
      interval_seconds: number("interval_seconds"),
      tags: String(data.get("tags")).split(",").map((t) => t.trim()).filter(Boolean),
    };
    if (admin) body.public = data.get("public") === "on";
    if (number("timeout_seconds") !== null) body.timeout_seconds = number("timeout_seconds");
    if (number("failures_before_down") !== null) body.failures_before_down = number("failures_before_down");
    const objective = number("slo.objective");
    if (objective !== null) {
      if (!(objective > 0 && objective < 100)) {
        showErrors(form, new ApiError(422, { detail: "slo.objective: between 0 and 100 %",
          errors: [{ field: "slo.objective", message: "must be a percentage between 0 and 100, e.g. 99.9" }] }));
        return;
      }
      body.slo = { objective: Number((objective / 100).toPrecision(12)) };
      if (number("slo.window_days") !== null) body.slo.window_days = number("slo.window_days");
    } else if (slo) {
      body.slo = null; // emptied: the monitor no longer carries an objective
    }
    if (body.type === "http") {
      body.settings = { ...(monitor ? monitor.settings : {}),
        expected_status: String(data.get("expected_status")).split(",").map((c) => c.trim()).filter(Boolean) };
    } else if (!monitor || monitor.type !== body.type) {
      body.settings = {};
    }
    try {
      const saved = id ? await patch(`/monitors/${id}`, body) : await post("/monitors", body);
      toast(id ? "Saved" : "Monitor created");
      location.hash = `#/monitors/${saved.id}`;
    } catch (error) {
      if (error instanceof ApiError) showErrors(form, error); else throw error;
    }
  });
  view(id ? `Edit ${monitor.name}` : "New monitor", form);
}

// --- notifications: channels, rules, alerts, log -----------------------------------------------

function simpleTable(label, columns, rows, empty) {
  return h("div", { class: "table-wrap" }, h("table", { "aria-label": label },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, empty)))));
}

async function channelsPage() {
  const [channels] = await Promise.all([get("/channels?limit=200").then((page) => page.items), whoami()]);
  const editor = may("editor");
  const form = h("form", { class: "stack panel", novalidate: true },
    h("h2", {}, "New webhook channel"),
    h("p", { class: "error form-error", role: "alert" }),
    h("label", {}, "Name", h("input", { name: "name" })),
    h("label", {}, "URL", h("input", { name: "settings.url", type: "url", placeholder: "https://hooks.example.com/pingtower" })),
    h("label", {}, "Signing secret", h("small", {}, "Optional, at least 16 characters."), h("input", { name: "settings.secret", type: "password", autocomplete: "off" })),
    h("div", {}, h("button", { class: "primary", type: "submit" }, "Create channel")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const settings = { url: data.get("settings.url") };
    if (data.get("settings.secret")) settings.secret = data.get("settings.secret");
    try {
      await post("/channels", { name: data.get("name"), type: "webhook", settings });
      toast("Channel created");
      route();
    } catch (error) {
      if (error instanceof ApiError) showErrors(form, error); else throw error;
    }
  });
  const rows = channels.map((c) => h("tr", { "data-channel": c.id },
    h("td", {}, c.name), h("td", {}, c.type), h("td", {}, c.enabled ? "enabled" : "disabled"),
    h("td", {}, !editor ? "" : h("button", { type: "button", onclick: async (event) => {
      const cell = event.currentTarget.parentElement.nextElementSibling;
      try {
        const result = await post(`/channels/${c.id}/test`);
        cell.textContent = result.ok ? `Test sent (${result.status_code ?? "ok"})` : `Test failed: ${result.error}`;
      } catch (error) { cell.textContent = `Test failed: ${error.message}`; }
    } }, "Send test")),
    h("td", { "data-testid": "test-result", "aria-live": "polite" })));
  view("Channels", simpleTable("Channels", ["Name", "Type", "State", "", "Result"], rows, "No channels yet."), editor ? form : null);
}

async function rulesPage() {
  const [rules, channels] = await Promise.all([get("/rules?limit=200"), get("/channels?limit=200"), whoami()]);
  const names = new Map(channels.items.map((c) => [c.id, c.name]));
  const form = h("form", { class: "stack panel", novalidate: true },
    h("h2", {}, "New rule"),
    h("p", { class: "error form-error", role: "alert" }),
    h("label", {}, "Name", h("input", { name: "name" })),
    h("label", {}, "Tags", h("small", {}, "Monitors with any of these tags; empty for every monitor."), h("input", { name: "tags" })),
    h("fieldset", {}, h("legend", {}, "Tell me when a monitor is"),
      ["down", "recovered", "degraded"].map((e) => h("label", {}, h("input", { type: "checkbox", name: "events", value: e, checked: e !== "degraded" }), ` ${e}`))),
    h("label", {}, "Channels", h("select", { name: "channel_ids", multiple: true, size: Math.min(5, Math.max(2, channels.items.length)) },
      channels.items.map((c) => h("option", { value: c.id }, c.name)))),
    h("label", {}, "Delay (seconds)", h("small", {}, "Only if still down after this long."), h("input", { name: "delay_seconds", type: "number", value: 0 })),
    h("div", {}, h("button", { class: "primary", type: "submit" }, "Create rule")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    try {
      await post("/rules", {
        name: data.get("name"), events: data.getAll("events"), channel_ids: data.getAll("channel_ids"),
        tags: String(data.get("tags")).split(",").map((t) => t.trim()).filter(Boolean),
        delay_seconds: Number(data.get("delay_seconds") || 0),
      });
      toast("Rule created");
      route();
    } catch (error) {
      if (error instanceof ApiError) showErrors(form, error); else throw error;
    }
  });
  const rows = rules.items.map((r) => h("tr", {}, h("td", {}, r.name), h("td", {}, r.events.join(", ")),
    h("td", {}, r.channel_ids.map((c) => names.get(c) || c).join(", ")), h("td", {}, r.tags.join(", ") || "all monitors")));
  view("Rules", simpleTable("Rules", ["Name", "Events", "Channels", "Monitors"], rows, "No rules yet."), may("editor") ? form : null);
}

async function alertsPage() {
  const [page] = await Promise.all([get("/alerts?limit=200"), whoami()]);
  const alerts = page.items.filter((a) => !a.resolved_at);
  const editor = may("editor");
  const rows = alerts.map((a) => h("tr", {}, h("td", {}, a.monitor_name || a.monitor_id), h("td", {}, a.problem),
    h("td", {}, a.severity), h("td", {}, when(a.opened_at)),
    h("td", {}, a.acknowledged_at ? `acknowledged by ${a.acknowledged_by}` : !editor ? "open" : h("button", { type: "button", onclick: async () => {
      try { await post(`/alerts/${a.id}/acknowledge`); toast("Acknowledged"); route(); } catch (error) { toast(error.message); }
    } }, "Acknowledge"))));
  view("Open alerts", simpleTable("Open alerts", ["Monitor", "Problem", "Severity", "Opened", ""], rows, "No open alerts."));
}

async function notificationsPage() {
  const items = (await get("/notifications?limit=100")).items;
  const rows = items.map((n) => h("tr", {}, h("td", {}, when(n.created_at)), h("td", {}, n.kind), h("td", {}, n.status),
    h("td", { class: "num" }, n.attempts), h("td", {}, n.last_error || (n.last_status_code ?? ""))));
  view("Notification log", simpleTable("Notifications", ["Created", "Kind", "Status", "Attempts", "Last response"], rows, "Nothing sent yet."));
}

// --- settings: API keys, users, public status page (admins) -------------------------------------

function mayAdminister() {
  return may("admin");
}

// An admin listing: its items, or null when this server has no such endpoint (404: no built-in
// login in the distributed mode) or the caller may not see it (403).
async function adminList(path) {
  try {
    return (await get(path)).items;
  } catch (error) {
    if (error instanceof ApiError && (error.status === 404 || error.status === 403)) return null;
    throw error;
  }
}

function roleSelect(name, value, attrs = {}) {
  return h("select", { name, ...attrs }, ROLES.map((role) => h("option", { value: role, selected: role === value }, role)));
}

async function settingsPage() {
  await whoami();
  if (!mayAdminister()) {
    view("Settings", h("p", { class: "muted" }, "Only a workspace admin manages API keys, users and the public status page."));
    return;
  }
  const [keys, users] = await Promise.all([adminList("/api-keys?limit=200"), adminList("/users?limit=200")]);
  const sections = [];
  if (keys) sections.push(h("section", { "aria-labelledby": "keys-title" }, h("h2", { id: "keys-title" }, "API keys"), apiKeysSection(keys)));
  // Users exist only with the built-in login; with single sign-on the identity provider has them.
  if (users) sections.push(h("section", { "aria-labelledby": "users-title" }, h("h2", { id: "users-title" }, "Users"), usersSection(users)));
  if (!keys && !users) {
    sections.push(h("p", { class: "muted" }, "Users and API keys are managed by the identity provider of this deployment."));
  }
  sections.push(h("section", { "aria-labelledby": "public-title" }, h("h2", { id: "public-title" }, "Public status page"), publicSection()));
  view("Settings", ...sections);
}

function apiKeysSection(initial) {
  const wrap = h("div");
  const created = h("div", { "aria-live": "polite" });
  let keys = initial;
  const revoke = async (key) => {
    if (!confirm(`Revoke the API key ${key.name}? Programs using it stop working at once.`)) return;
    try {
      await del(`/api-keys/${key.id}`);
      toast("API key revoked");
      await refresh();
    } catch (error) { toast(error.message); }
  };
  const refresh = async () => {
    keys = (await get("/api-keys?limit=200")).items;
    render();
  };
  const render = () => {
    wrap.replaceChildren(simpleTable("API keys", ["Name", "Role", "Created", "By", "State", ""],
      keys.map((key) => h("tr", { "data-key": key.id },
        h("td", {}, key.name), h("td", {}, key.role), h("td", {}, when(key.created_at)), h("td", {}, key.created_by),
        h("td", { "data-testid": "key-state" }, key.revoked_at ? `revoked ${when(key.revoked_at)}` : "active"),
        h("td", {}, key.revoked_at ? "" : h("button", { type: "button", class: "danger", onclick: () => revoke(key) }, "Revoke")))),
      "No API keys yet."));
  };
  const form = h("form", { class: "stack panel", novalidate: true },
    h("h3", {}, "New API key"),
    h("p", { class: "error form-error", role: "alert" }),
    h("label", {}, "Key name", h("small", {}, "What the key is for, e.g. the deploy pipeline."), h("input", { name: "name" })),
    h("label", {}, "Key role", roleSelect("role", "viewer")),
    h("div", {}, h("button", { class: "primary", type: "submit" }, "Create API key")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    try {
      const key = await post("/api-keys", { name: data.get("name"), role: data.get("role") });
      form.reset();
      // The key itself is in this answer only: the server keeps a digest.
      created.replaceChildren(h("div", { class: "panel notice", "data-testid": "new-key" },
        h("p", {}, h("b", {}, `API key ${key.name} created.`), " Copy it now: it is not shown again."),
        h("label", {}, "New API key", h("input", { readonly: true, value: key.key, class: "secret", "data-testid": "new-key-value",
          onfocus: (e) => e.currentTarget.select() }))));
      await refresh();
    } catch (error) {
      if (error instanceof ApiError) showErrors(form, error); else throw error;
    }
  });
  render();
  return h("div", {}, created, wrap, form);
}

function usersSection(initial) {
  const wrap = h("div");
  let users = initial;
  const refresh = async () => {
    users = (await get("/users?limit=200")).items;
    render();
  };
  const render = () => {
    wrap.replaceChildren(simpleTable("Users", ["Username", "Role", "Created", ""],
      users.map((user) => h("tr", { "data-user": user.username },
        h("td", {}, user.username, known && known.subject === user.username ? h("span", { class: "muted small" }, " (you)") : null),
        h("td", {}, roleSelect("role", user.role, { "aria-label": `Role of ${user.username}`, onchange: async (event) => {
          const select = event.currentTarget;
          try {
            await patch(`/users/${user.id}`, { role: select.value });
            toast(`${user.username} is now ${select.value}`);
            await refresh();
          } catch (error) {
            select.value = user.role;
            toast(error.message);
          }
        } })),
        h("td", {}, when(user.created_at)),
        h("td", {}, h("button", { type: "button", class: "danger", onclick: async () => {
          if (!confirm(`Delete the user ${user.username}?`)) return;
          try { await del(`/users/${user.id}`); toast("User deleted"); await refresh(); } catch (error) { toast(error.message); }
        } }, "Delete")))),
      "No users."));
  };
  const form = h("form", { class: "stack panel", novalidate: true },
    h("h3", {}, "New user"),
    h("p", { class: "error form-error", role: "alert" }),
    h("label", {}, "Username", h("input", { name: "username", autocomplete: "off" })),
    h("label", {}, "Password", h("small", {}, "At least 12 characters; they can change it later."),
      h("input", { name: "password", type: "password", autocomplete: "new-password" })),
    h("label", {}, "Role", roleSelect("role", "viewer")),
    h("div", {}, h("button", { class: "primary", type: "submit" }, "Create user")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    try {
      await post("/users", { username: data.get("username"), password: data.get("password"), role: data.get("role") });
      toast("User created");
      form.reset();
      await refresh();
    } catch (error) {
      if (error instanceof ApiError) showErrors(form, error); else throw error;
    }
  });
  render();
  return h("div", {}, wrap, form);
}

// The public page's title and logo (kept by the Statistics service, which serves the page's
// figures): the logo is uploaded as the image itself and served from PingTower, never linked.
const LOGO_TYPES = ["image/png", "image/jpeg", "image/svg+xml"];
const LOGO_MAX_BYTES = 64 * 1024;

function brandingForm() {
  const preview = h("div", { class: "logo-preview", "aria-live": "polite" });
  const form = h("form", { class: "stack panel", novalidate: true, "data-testid": "status-page-form" },
    h("h3", {}, "Title and logo"),
    h("p", { class: "error form-error", role: "alert" }),
    h("label", {}, "Page title", h("small", {}, "Empty: the workspace's name followed by “status”."),
      h("input", { name: "title", maxlength: 100 })),
    h("label", {}, "Logo", h("small", {}, `PNG, JPEG or SVG, at most ${LOGO_MAX_BYTES / 1024} KiB.`),
      h("input", { name: "logo", type: "file", accept: LOGO_TYPES.join(",") })),
    preview,
    h("div", { class: "actions" }, h("button", { class: "primary", type: "submit" }, "Save status page"),
      h("button", { type: "button", class: "danger", "data-testid": "remove-logo", onclick: async () => {
        try { await del("/stats/status-page/logo"); toast("Logo removed"); await load(); } catch (error) { toast(error.message); }
      } }, "Remove logo")),
  );
  const show = (settings) => {
    form.querySelector("[name=title]").value = settings.title || "";
    preview.replaceChildren(settings.logo_url
      ? h("img", { src: settings.logo_url, alt: "Current logo", class: "logo", height: 40, "data-testid": "logo-preview" })
      : h("p", { class: "muted small" }, "No logo: the page shows PingTower's."));
    form.querySelector("[data-testid=remove-logo]").hidden = !settings.logo_url;
  };
  const load = async () => show(await get("/stats/status-page"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const old of form.querySelectorAll(".field-error")) old.remove();
    const file = form.querySelector("[name=logo]").files[0];
    try {
      // Checked here only to answer at once; the server checks the same and the content too.
      if (file && !LOGO_TYPES.includes(file.type)) {
        throw new ApiError(415, { detail: "The logo must be a PNG, JPEG or SVG image.", errors: [{ field: "logo", message: "The logo must be a PNG, JPEG or SVG image." }] });
      }
      if (file && file.size > LOGO_MAX_BYTES) {
        throw new ApiError(413, { detail: "The logo is too large.", errors: [{ field: "logo", message: `The logo has ${file.size} bytes; at most ${LOGO_MAX_BYTES} are allowed.` }] });
      }
      let saved = await put("/stats/status-page", { title: form.querySelector("[name=title]").value });
      if (file) saved = await upload("/stats/status-page/logo", file);
      form.querySelector("[name=logo]").value = "";
      show(saved);
      toast("Status page saved");
    } catch (error) {
      if (error instanceof ApiError) showErrors(form, error); else throw error;
    }
  });
  load().catch((error) => preview.replaceChildren(h("p", { class: "error" }, `Could not load: ${error.message}`)));
  return form;
}

// Which monitors the public page shows: the Pinger's admin-only `public` flag.
function publicSection() {
  const workspace = known && known.workspace ? known.workspace : "default";
  const list = h("div");
  const more = h("div", { class: "pager" });
  const search = h("input", { type: "search", placeholder: "Search by name", "aria-label": "Search monitors" });
  let asked = 0;
  const row = (monitor) => h("tr", { "data-public-monitor": monitor.name },
    h("td", {}, h("a", { href: `#/monitors/${monitor.id}` }, monitor.name)), h("td", {}, badge(monitor.status)),
    h("td", {}, h("label", { class: "inline" }, h("input", { type: "checkbox", checked: monitor.public,
      "aria-label": `Show ${monitor.name} on the status page`, onchange: async (event) => {
        const box = event.currentTarget;
        try {
          const saved = await patch(`/monitors/${monitor.id}`, { public: box.checked });
          monitor.public = saved.public;
          toast(saved.public ? `${monitor.name} is on the status page` : `${monitor.name} is off the status page`);
        } catch (error) {
          box.checked = monitor.public;
          toast(error.message);
        }
      } }), " public")));
  const load = async (cursor, rows) => {
    const number = ++asked;
    const page = await get(`/monitors${query({ limit: 100, q: search.value.trim(), cursor })}`);
    if (number !== asked) return;
    const all = [...rows, ...page.items.map(row)];
    list.replaceChildren(simpleTable("Monitors on the status page", ["Monitor", "Status", "Status page"], all,
      search.value ? "No monitor matches." : "No monitors yet."));
    more.replaceChildren(page.next_cursor
      ? h("button", { type: "button", onclick: () => load(page.next_cursor, all) }, "More monitors") : "");
  };
  search.addEventListener("input", () => { load(undefined, []).catch((error) => toast(error.message)); });
  load(undefined, []).catch((error) => list.replaceChildren(h("p", { class: "error" }, `Could not load: ${error.message}`)));
  return h("div", {},
    h("p", {}, "Monitors marked public appear, with their status, 90 days of uptime and their incidents, on ",
      h("a", { href: `/status/${encodeURIComponent(workspace)}`, target: "_blank", rel: "noopener" }, `/status/${workspace}`),
      " for anyone, without logging in."),
    brandingForm(),
    h("h3", {}, "Monitors on the page"),
    h("div", { class: "filters" }, search), list, more);
}
