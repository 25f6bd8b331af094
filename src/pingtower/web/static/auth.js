// Keycloak (OpenID Connect) login for the distributed mode: the authorization code flow with
// PKCE (S256) against the realm's public web client, refresh before expiry, and logout that ends
// the Keycloak session. Which login to use comes from GET /api/v1/web/config.
//
// Written by hand rather than with keycloak-js: that library comes from npm and would need a
// bundling step, and the dashboard ships as plain files with no build and no CDN (issue 7). The
// protocol part is small: WebCrypto for the S256 challenge, fetch for the token endpoint.
//
// Tokens live only in this module's memory (a reload logs in again, silently while the Keycloak
// session lasts); sessionStorage holds just the verifier, state and nonce of a login under way.

const FLOW_KEY = "pingtower.oidc.flow";
const EARLIEST_REFRESH_MS = 5000;

let config = { login: "builtin", oidc: null };
let endpoints = null;  // from the issuer's discovery document
let tokens = null;  // { access, refresh, id, expiresAt }
let refreshing = null;  // the refresh under way, so concurrent callers share it
let timer = null;
let loginError = "";  // why the last return from Keycloak did not log in, for the login page

export const enabled = () => config.login === "oidc";
export const accessToken = () => (tokens ? tokens.access : null);

function random(bytes = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

function base64url(bytes) {
  let text = "";
  for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function challenge(verifier) {
  return base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
}

// The ID token's claims, read without checking its signature: it came straight from the token
// endpoint over the connection the page opened, which is what OIDC Core 3.1.3.7 allows; the
// API verifies every access token itself.
function claims(jwt) {
  const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  const text = atob(part + "=".repeat((4 - (part.length % 4)) % 4));
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(text, (c) => c.charCodeAt(0))));
}

function claimsOrNothing(jwt) {
  try {
    return jwt ? claims(jwt) : {};
  } catch {
    return {};  // not a JWT (an opaque token): nothing to read
  }
}

const ROLES = ["viewer", "editor", "admin"];

// Who is logged in, from the tokens in memory (no /auth/me: that is the built-in login's):
// the name from the ID token, the workspace and PingTower roles from the access token, read
// where the API reads them (common/oidc.py). Only to tidy the page: the API decides.
export function user() {
  if (!tokens) return null;
  const id = claimsOrNothing(tokens.id);
  const access = claimsOrNothing(tokens.access);
  const found = new Set();
  const realm = access.realm_access && access.realm_access.roles;
  const client = access.resource_access && access.resource_access[config.oidc.api_client];
  for (const role of [...(Array.isArray(realm) ? realm : []), ...(client && Array.isArray(client.roles) ? client.roles : [])]) {
    if (ROLES.includes(role)) found.add(role);
  }
  let workspace = access[config.oidc.workspace_claim] ?? id[config.oidc.workspace_claim];
  if (Array.isArray(workspace)) workspace = workspace.length === 1 ? workspace[0] : null;
  return {
    subject: id.preferred_username || id.name || id.email || id.sub || access.sub || "",
    workspace: typeof workspace === "string" ? workspace.split("/").pop() : null,
    // Unknown when the access token cannot be read: then the page shows everything.
    roles: Object.keys(access).length ? [...found] : null,
  };
}

const redirectUri = () => `${location.origin}/`;

async function tokenRequest(form) {
  const response = await fetch(endpoints.token_endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
    body: new URLSearchParams({ client_id: config.oidc.client_id, ...form }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.error_description || body.error || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

function keep(answer, nonce) {
  const idToken = answer.id_token || (tokens && tokens.id);
  if (nonce !== undefined && (!idToken || claims(idToken).nonce !== nonce)) {
    throw new Error("the ID token's nonce does not match");
  }
  const lifetime = Number(answer.expires_in) * 1000;
  tokens = {
    access: answer.access_token,
    refresh: answer.refresh_token || (tokens && tokens.refresh),
    id: idToken,
    expiresAt: Date.now() + lifetime,
  };
  // Refresh a quarter of the lifetime (at most a minute) before expiry: early enough for a
  // slow network, late enough not to hammer Keycloak with a short-lived token.
  clearTimeout(timer);
  const lead = Math.min(60_000, lifetime / 4);
  timer = setTimeout(() => refresh().catch(() => {}), Math.max(EARLIEST_REFRESH_MS, lifetime - lead));
}

export function forget() {
  clearTimeout(timer);
  tokens = null;
  refreshing = null;
}

// Uses the refresh token; a refused refresh (session ended or expired) logs the page out.
export function refresh() {
  if (!tokens || !tokens.refresh) return Promise.resolve();
  if (!refreshing) {
    refreshing = tokenRequest({ grant_type: "refresh_token", refresh_token: tokens.refresh })
      .then((answer) => keep(answer))
      .catch((error) => {
        if (error.status === 400 || error.status === 401) {
          forget();
          window.dispatchEvent(new CustomEvent("pingtower:unauthorized"));
        } else {
          // Keycloak unreachable for now: try again shortly, while the token still works.
          clearTimeout(timer);
          timer = setTimeout(() => refresh().catch(() => {}), 10_000);
        }
        throw error;
      })
      .finally(() => { refreshing = null; });
  }
  return refreshing;
}

// Before a request: a token about to expire is refreshed first, so no call goes out with it.
export async function fresh() {
  if (tokens && Date.now() > tokens.expiresAt - 10_000) await refresh().catch(() => {});
}

export async function login() {
  const verifier = random(48);
  const flow = { state: random(), nonce: random(), verifier, back: location.hash || "#/overview" };
  if (flow.back === "#/login") flow.back = "#/overview";
  sessionStorage.setItem(FLOW_KEY, JSON.stringify(flow));
  const url = new URL(endpoints.authorization_endpoint);
  url.search = new URLSearchParams({
    client_id: config.oidc.client_id,
    response_type: "code",
    redirect_uri: redirectUri(),
    scope: config.oidc.scopes,
    state: flow.state,
    nonce: flow.nonce,
    code_challenge: await challenge(verifier),
    code_challenge_method: "S256",
  }).toString();
  location.assign(url.toString());
}

// Ends the Keycloak session too (else the next login would pass silently). Returns false when
// this is not an OIDC login, so the caller logs out its own way.
export function logout() {
  if (!enabled() || !endpoints) return false;
  const url = new URL(endpoints.end_session_endpoint);
  const params = { client_id: config.oidc.client_id, post_logout_redirect_uri: redirectUri() };
  if (tokens && tokens.id) params.id_token_hint = tokens.id;
  url.search = new URLSearchParams(params).toString();
  forget();
  location.assign(url.toString());
  return true;
}

// Back from Keycloak: ?code=...&state=... (or ?error=...). The state must be the one this tab
// sent, which ties the answer to this browser's login and defeats login CSRF.
async function complete(params) {
  const flow = JSON.parse(sessionStorage.getItem(FLOW_KEY) || "null");
  sessionStorage.removeItem(FLOW_KEY);
  history.replaceState(null, "", `${location.pathname}${flow ? flow.back : "#/overview"}`);
  if (!flow || params.get("state") !== flow.state) throw new Error("the login answer does not belong to this login (state)");
  if (params.get("error")) throw new Error(params.get("error_description") || params.get("error"));
  if (params.has("iss") && params.get("iss") !== endpoints.issuer) throw new Error("the login answer names another issuer");
  const answer = await tokenRequest({
    grant_type: "authorization_code",
    code: params.get("code"),
    redirect_uri: redirectUri(),
    code_verifier: flow.verifier,
  });
  keep(answer, flow.nonce);
}

async function start() {
  try {
    const response = await fetch("/api/v1/web/config", { headers: { Accept: "application/json" } });
    if (response.ok) config = await response.json();
  } catch {
    // No config endpoint reachable: the built-in login is the one that needs nothing else.
  }
  if (!enabled()) return;
  try {
    const discovery = await fetch(`${config.oidc.issuer}/.well-known/openid-configuration`);
    if (!discovery.ok) throw new Error(`the identity provider answered HTTP ${discovery.status}`);
    endpoints = await discovery.json();
    // OIDC Discovery 4.3: a document naming another issuer is not this issuer's.
    if (endpoints.issuer !== config.oidc.issuer) {
      endpoints = null;
      throw new Error("the identity provider's discovery document names another issuer");
    }
    const params = new URLSearchParams(location.search);
    if (params.has("state")) await complete(params);
  } catch (error) {
    loginError = `Login failed: ${error.message}`;
  }
}

// The login page's panel in this mode: one button to Keycloak's own login page.
export function loginPanel() {
  const panel = document.createElement("div");
  panel.className = "stack panel";
  const heading = document.createElement("h2");
  heading.textContent = "Log in";
  const error = document.createElement("p");
  error.className = "error form-error";
  error.setAttribute("role", "alert");
  error.textContent = loginError;
  error.hidden = !loginError;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "primary";
  button.textContent = "Log in with Keycloak";
  button.disabled = !endpoints;
  button.addEventListener("click", () => { loginError = ""; login(); });
  panel.append(heading, error, button);
  return panel;
}

await start();
