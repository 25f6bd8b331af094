"""The access rules of every operation the embedded app publishes in its OpenAPI: which role an
operation needs, or why it is public. The sweep compares this table with the live OpenAPI both
ways, so a route added without a rule here (or a rule left for a removed route) fails the suite.

Issue 6: `viewer` reads; `editor` also changes monitors, channels, rules, silences, maintenance
(and acknowledges alerts, and keeps SLOs, the statistics' counterpart of rules); `admin` also
manages workspace settings, API keys and users."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["viewer", "editor", "admin"]
# Logged-in users of the owner workspace, and API keys of that workspace with a role.
PERSONAS: tuple[str, ...] = ("anonymous", "viewer", "editor", "admin", "viewer-key", "editor-key")
ROLE_OF = {"viewer-key": "viewer", "editor-key": "editor"}
RANK = {"viewer": 0, "editor": 1, "admin": 2}


@dataclass(frozen=True)
class Rule:
    # The least role the operation needs; None: public (then `reason` says why).
    needs: Role | None
    reason: str = ""
    # A server-sent event stream: answered by its status line, the body never ends.
    streaming: bool = False

    def expected(self, persona: str) -> str:
        """What the persona must get: '401', '403', 'allowed' or 'public'."""
        if self.needs is None:
            return "public"
        if persona == "anonymous":
            return "401"
        role = ROLE_OF.get(persona, persona)
        return "allowed" if RANK[role] >= RANK[self.needs] else "403"


def viewer() -> Rule:
    return Rule("viewer")


def editor() -> Rule:
    return Rule("editor")


def admin() -> Rule:
    return Rule("admin")


def public(reason: str) -> Rule:
    return Rule(None, reason)


PING = "heartbeat pings authenticate by the monitor's unguessable key in the URL, not a login"
BADGE = "status badges are embedded in READMEs; only monitors marked public answer, others 404"
STATUS_PAGE = "the public status page is read without a login; only public monitors are on it"

RULES: dict[tuple[str, str], Rule] = {
    # --- outside /api/v1: operations of the process, not of a workspace -----------------------
    ("GET", "/healthz"): public("liveness probe of the orchestrator"),
    ("GET", "/readyz"): public("readiness probe of the orchestrator"),
    ("GET", "/metrics"): public("Prometheus scrape endpoint, protected at the network level"),
    ("HEAD", "/ping/{key}"): public(PING),
    ("GET", "/ping/{key}"): public(PING),
    ("POST", "/ping/{key}"): public(PING),
    ("HEAD", "/ping/{key}/start"): public(PING),
    ("GET", "/ping/{key}/start"): public(PING),
    ("POST", "/ping/{key}/start"): public(PING),
    ("HEAD", "/ping/{key}/fail"): public(PING),
    ("GET", "/ping/{key}/fail"): public(PING),
    ("POST", "/ping/{key}/fail"): public(PING),
    ("HEAD", "/ping/{key}/{exit_status}"): public(PING),
    ("GET", "/ping/{key}/{exit_status}"): public(PING),
    ("POST", "/ping/{key}/{exit_status}"): public(PING),
    # --- the API's index and the built-in login ---------------------------------------------
    ("GET", "/api/v1"): public("the API's index: name, version, where the OpenAPI is"),
    ("POST", "/api/v1/auth/login"): public("how a caller gets credentials in the first place"),
    ("POST", "/api/v1/auth/logout"): public(
        "ends the session the request carries; without one it does nothing (204)"
    ),
    # Every role may ask who it is, so /auth/me needs only the least role.
    ("GET", "/api/v1/auth/me"): viewer(),
    # --- admin: the workspace's accounts and API keys ----------------------------------------
    ("POST", "/api/v1/users"): admin(),
    ("GET", "/api/v1/users"): admin(),
    ("GET", "/api/v1/users/{user_id}"): admin(),
    ("PATCH", "/api/v1/users/{user_id}"): admin(),
    ("DELETE", "/api/v1/users/{user_id}"): admin(),
    ("POST", "/api/v1/api-keys"): admin(),
    ("GET", "/api/v1/api-keys"): admin(),
    ("DELETE", "/api/v1/api-keys/{key_id}"): admin(),
    # --- Pinger: monitors, results, maintenance ----------------------------------------------
    ("POST", "/api/v1/monitors"): editor(),
    ("POST", "/api/v1/monitors/batch"): editor(),
    ("GET", "/api/v1/monitors"): viewer(),
    ("GET", "/api/v1/monitors/{monitor_id}"): viewer(),
    ("PATCH", "/api/v1/monitors/{monitor_id}"): editor(),
    ("DELETE", "/api/v1/monitors/{monitor_id}"): editor(),
    ("POST", "/api/v1/monitors/{monitor_id}/pause"): editor(),
    ("POST", "/api/v1/monitors/{monitor_id}/resume"): editor(),
    ("POST", "/api/v1/monitors/{monitor_id}/check-now"): editor(),
    ("GET", "/api/v1/monitors/{monitor_id}/results"): viewer(),
    ("POST", "/api/v1/maintenance-windows"): editor(),
    ("GET", "/api/v1/maintenance-windows"): viewer(),
    ("GET", "/api/v1/maintenance-windows/{window_id}"): viewer(),
    ("DELETE", "/api/v1/maintenance-windows/{window_id}"): editor(),
    # --- Notificator: channels, rules, silences, alerts, notifications -----------------------
    ("POST", "/api/v1/channels"): editor(),
    ("GET", "/api/v1/channels"): viewer(),
    ("GET", "/api/v1/channels/{channel_id}"): viewer(),
    ("PATCH", "/api/v1/channels/{channel_id}"): editor(),
    ("DELETE", "/api/v1/channels/{channel_id}"): editor(),
    ("POST", "/api/v1/channels/{channel_id}/test"): editor(),
    ("POST", "/api/v1/rules"): editor(),
    ("GET", "/api/v1/rules"): viewer(),
    ("GET", "/api/v1/rules/{rule_id}"): viewer(),
    ("PATCH", "/api/v1/rules/{rule_id}"): editor(),
    ("DELETE", "/api/v1/rules/{rule_id}"): editor(),
    ("POST", "/api/v1/silences"): editor(),
    ("GET", "/api/v1/silences"): viewer(),
    ("GET", "/api/v1/silences/{silence_id}"): viewer(),
    ("PATCH", "/api/v1/silences/{silence_id}"): editor(),
    ("DELETE", "/api/v1/silences/{silence_id}"): editor(),
    ("GET", "/api/v1/alerts"): viewer(),
    ("GET", "/api/v1/alerts/{alert_id}"): viewer(),
    ("POST", "/api/v1/alerts/{alert_id}/acknowledge"): editor(),
    ("GET", "/api/v1/notifications"): viewer(),
    ("GET", "/api/v1/notifications/{notification_id}"): viewer(),
    # --- Statistics -----------------------------------------------------------------------
    ("GET", "/api/v1/stats/overview"): viewer(),
    ("GET", "/api/v1/stats/monitors/{monitor_id}/uptime"): viewer(),
    ("GET", "/api/v1/stats/monitors/{monitor_id}/incidents"): viewer(),
    ("GET", "/api/v1/stats/monitors/{monitor_id}/daily"): viewer(),
    ("GET", "/api/v1/stats/monitors/{monitor_id}/timeseries"): viewer(),
    ("GET", "/api/v1/stats/monitors/{monitor_id}/trends"): viewer(),
    ("POST", "/api/v1/stats/slos"): editor(),
    ("GET", "/api/v1/stats/slos"): viewer(),
    ("GET", "/api/v1/stats/slos/{slo_id}"): viewer(),
    ("PATCH", "/api/v1/stats/slos/{slo_id}"): editor(),
    ("DELETE", "/api/v1/stats/slos/{slo_id}"): editor(),
    ("GET", "/api/v1/stats/reports/sla"): viewer(),
    ("GET", "/api/v1/stats/badges/{monitor_id}/status.svg"): public(BADGE),
    ("GET", "/api/v1/stats/badges/{monitor_id}/uptime.svg"): public(BADGE),
    ("GET", "/api/v1/stats/badges/{monitor_id}/response-time.svg"): public(BADGE),
    ("GET", "/api/v1/stats/public/{workspace}/status-page"): public(STATUS_PAGE),
    ("GET", "/api/v1/stats/public/{workspace}/logo"): public(STATUS_PAGE),
    ("GET", "/api/v1/stats/status-page"): viewer(),
    ("PUT", "/api/v1/stats/status-page"): admin(),
    ("PUT", "/api/v1/stats/status-page/logo"): admin(),
    ("DELETE", "/api/v1/stats/status-page/logo"): admin(),
    # --- the web UI's live stream -------------------------------------------------------------
    ("GET", "/api/v1/events/stream"): Rule("viewer", streaming=True),
    ("GET", "/api/v1/web/config"): public("which login to use: the browser asks before it has one"),
}

# Routes that break their rule today, with the defect; the sweep marks them xfail(strict=True)
# so the suite stays green while the defect stays visible (and turns red once it is fixed).
KNOWN_ROLE_DEFECTS: dict[tuple[str, str], str] = {}
KNOWN_WORKSPACE_DEFECTS: dict[tuple[str, str], str] = {}


def openapi_operations(spec: dict[str, object]) -> set[tuple[str, str]]:
    """Every (METHOD, path) the OpenAPI publishes."""
    paths = spec["paths"]
    assert isinstance(paths, dict)
    return {
        (method.upper(), path)
        for path, operations in paths.items()
        for method in operations
        if method.upper() in {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}
    }
