"""The AsyncAPI document of PingTower's events, generated from the contracts themselves so the
documentation cannot drift from the code (`pingtower asyncapi`; docs/asyncapi.json is its output
and a test keeps it current)."""

from __future__ import annotations

from typing import Any

from pingtower import __version__
from pingtower.common.events import CONTRACTS, CheckJob, Envelope
from pingtower.common.messaging.packing import (
    COUNT_HEADER,
    MAX_PACKED_BYTES,
    MAX_PACKED_EVENTS,
    MAX_PACKED_JOBS,
    PACKED_CONTENT_TYPE,
)

# Who produces and who consumes each event type: the topology as built.
PRODUCERS: dict[str, str] = {
    "monitor.created": "pinger (api)",
    "monitor.updated": "pinger (api)",
    "monitor.deleted": "pinger (api)",
    "check.completed": "pinger (probe)",
    "monitor.status_changed": "pinger (evaluator)",
    "incident.opened": "pinger (evaluator)",
    "incident.resolved": "pinger (evaluator)",
    "notification.delivered": "notificator",
    "notification.failed": "notificator",
    "slo.burn_rate_exceeded": "statistics",
}
CONSUMERS: dict[str, list[str]] = {
    "monitor.created": ["notificator.events", "statistics.ingest"],
    "monitor.updated": ["notificator.events", "statistics.ingest"],
    "monitor.deleted": ["notificator.events", "statistics.ingest"],
    "check.completed": ["pinger.evaluator", "statistics.ingest", "notificator.events"],
    "monitor.status_changed": ["notificator.events", "statistics.ingest"],
    "incident.opened": ["notificator.events", "statistics.ingest"],
    "incident.resolved": ["notificator.events", "statistics.ingest"],
    "notification.delivered": [],
    "notification.failed": [],
    "slo.burn_rate_exceeded": ["notificator.events"],
}


def document(namespace: str = "pingtower") -> dict[str, Any]:
    channels: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Envelope": Envelope.model_json_schema()}
    for (event_type, version), model in sorted(CONTRACTS.items()):
        name = f"{model.__name__}V{version}"
        schemas[name] = model.model_json_schema(ref_template="#/components/schemas/{model}")
        # Nested models and enums (Status, SloSetting) become components of their own, where
        # the references above point.
        schemas.update(schemas[name].pop("$defs", {}))
        consumers = CONSUMERS.get(event_type, [])
        channels[event_type] = {
            "description": (
                f"Produced by {PRODUCERS.get(event_type, '?')}; consumed by "
                + (", ".join(f"queue {namespace}.{c}" for c in consumers) or "no service yet")
                + "."
            ),
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {"name": f"{namespace}.events", "type": "topic", "durable": True},
                }
            },
            "subscribe": {
                "operationId": f"on_{event_type.replace('.', '_')}",
                "message": {
                    "name": event_type,
                    "title": f"{event_type} v{version}",
                    "contentType": "application/json",
                    "description": (
                        "An Envelope whose `payload` is the schema below; several of them may "
                        f"come packed in one message of content type {PACKED_CONTENT_TYPE}."
                    ),
                    "payload": {
                        "allOf": [
                            {"$ref": "#/components/schemas/Envelope"},
                            {
                                "type": "object",
                                "properties": {
                                    "type": {"const": event_type},
                                    "version": {"const": version},
                                    "payload": {"$ref": f"#/components/schemas/{name}"},
                                },
                            },
                        ]
                    },
                },
            },
        }
    schemas["CheckJob"] = CheckJob.model_json_schema()
    channels["jobs.{region}"] = {
        "description": (
            "Check jobs from the scheduler to the probes of one region: a quorum work queue "
            f"{namespace}.jobs.<region> on the direct exchange {namespace}.jobs; probes are "
            "competing consumers. A job expires at its deadline and is never run late. "
            f"The jobs of one scheduler tick travel packed: one message of content type "
            f"{PACKED_CONTENT_TYPE} holding up to {MAX_PACKED_JOBS} job Envelopes, which "
            "expires at the latest of their deadlines (a probe drops each stale job itself) "
            "and is acknowledged when its first job starts, so that no check runs twice after "
            "a probe dies; a lone job travels alone as application/json."
        ),
        "parameters": {"region": {"schema": {"type": "string"}}},
        "subscribe": {
            "operationId": "run_check_job",
            "message": {
                "name": "check.job",
                "contentType": "application/json",
                "payload": {"$ref": "#/components/schemas/CheckJob"},
            },
        },
    }
    return {
        "asyncapi": "2.6.0",
        "info": {
            "title": "PingTower events",
            "version": __version__,
            "description": (
                f"Every message is an Envelope on the durable topic exchange {namespace}.events, "
                "routed by its type. Each consumer has a durable quorum queue with a delivery "
                f"limit and the dead-letter exchange {namespace}.dlx "
                f"(queue {namespace}.dead-letters). Events published together with the same "
                f"routing key may travel packed: one message of content type "
                f"{PACKED_CONTENT_TYPE} whose body is a JSON array of up to "
                f"{MAX_PACKED_EVENTS} Envelopes ({MAX_PACKED_BYTES // 1024} KiB at most) and "
                f"whose header {COUNT_HEADER} gives their number; a consumer handles each "
                "Envelope of it as if it had come alone. Upgrade consumers before producers."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "components": {"schemas": schemas},
    }
