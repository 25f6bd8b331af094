"""Notificator: channels, rules and alert state; turns monitor events into messages delivered
exactly once per (alert, channel, kind) through a persistent delivery queue."""
