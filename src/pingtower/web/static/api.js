// Talking to PingTower's API: the token from the login (Keycloak's, kept in memory by auth.js,
// or the built-in login's or a pasted one in sessionStorage), problem+json errors, and the live
// stream (server-sent events read through fetch, so the token goes in a header).
import * as auth from "./auth.js";

const TOKEN_KEY = "pingtower.token";

export const token = {
  get: () => auth.accessToken() || sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => {
    auth.forget();
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.errors = problem.errors || [];
  }
}

function headers(extra = {}) {
  const out = { Accept: "application/json", ...extra };
  const value = token.get();
  if (value) out.Authorization = `Bearer ${value}`;
  return out;
}

// `type`: send `body` as it is (a File, say) with that Content-Type instead of as JSON.
export async function api(method, path, body, type) {
  await auth.fresh();
  const init = { method, headers: headers(), credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = type || "application/json";
    init.body = type ? body : JSON.stringify(body);
  }
  const response = await fetch(`/api/v1${path}`, init);
  if (response.status === 204) return null;
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    if (response.status === 401) window.dispatchEvent(new CustomEvent("pingtower:unauthorized"));
    throw new ApiError(response.status, data || {});
  }
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body);
export const patch = (path, body) => api("PATCH", path, body);
export const del = (path) => api("DELETE", path);
export const put = (path, body) => api("PUT", path, body);
export const upload = (path, file) => api("PUT", path, file, file.type || "application/octet-stream");

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// One live connection for the whole page; listeners get {type, payload}. Reconnects with a
// growing pause; `onState` says whether it is connected.
export class LiveStream {
  constructor(onEvent, onState) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.controller = null;
    this.retry = 1000;
    this.stopped = true;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.loop();
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
    this.onState(false);
  }

  async loop() {
    while (!this.stopped) {
      this.controller = new AbortController();
      try {
        await auth.fresh();
        const response = await fetch("/api/v1/events/stream", {
          headers: headers({ Accept: "text/event-stream" }),
          signal: this.controller.signal,
          credentials: "same-origin",
        });
        if (response.status === 401) {
          window.dispatchEvent(new CustomEvent("pingtower:unauthorized"));
          return;
        }
        if (!response.ok) throw new Error(`stream: HTTP ${response.status}`);
        this.onState(true);
        this.retry = 1000;
        await this.read(response.body.getReader());
      } catch (error) {
        if (this.stopped) return;
      }
      this.onState(false);
      await new Promise((resolve) => setTimeout(resolve, this.retry));
      this.retry = Math.min(this.retry * 2, 15000);
    }
  }

  async read(reader) {
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        this.dispatch(block);
      }
    }
  }

  dispatch(block) {
    let type = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) type = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
    }
    if (!data.length) return;
    if (type === "dropped") {
      this.onEvent({ type, payload: { count: Number(data.join("")) } });
      return;
    }
    try {
      const parsed = JSON.parse(data.join("\n"));
      this.onEvent({ type: parsed.type || type, payload: parsed.payload || {} });
    } catch {
      // A malformed event is skipped; the next full reload corrects the page.
    }
  }
}
