"""The event bus (one interface, two transports), the transactional outbox and the inbox."""

from pingtower.common.messaging.bus import BatchHandler, Bus, JobHandler, topic_matches

__all__ = ["BatchHandler", "Bus", "JobHandler", "topic_matches"]
