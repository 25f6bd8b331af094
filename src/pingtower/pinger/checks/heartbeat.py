"""Heartbeat (push) check type: nothing to run; the monitored job pings `/ping/<key>`.

Registered like every check type so monitors validate the same way; `scheduled = False` tells
the scheduler to publish no jobs for it (its lateness watcher reports silence instead).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from pingtower.common.events import CheckJob
from pingtower.pinger.checks.base import Check, CheckContext, CheckResult, register


class HeartbeatSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: int = Field(
        60, ge=1, le=7 * 86_400, description="How late a ping may be before it counts as missed."
    )


@register
class HeartbeatCheck(Check):
    type_name = "heartbeat"
    settings_model = HeartbeatSettings
    scheduled = False

    def validate_target(self, target: str) -> str:
        return "push"  # nothing to reach: the job calls us

    async def run(self, job: CheckJob, context: CheckContext) -> CheckResult:
        return CheckResult.failed("config", "heartbeat monitors are not run by probes")
