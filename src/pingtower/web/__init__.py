"""The web dashboard and public status pages, served by PingTower itself.

static/        the single-page app (plain JS modules and CSS, no build step, no CDN)
domain/        what the live stream and the status page compute, without I/O
live.py        fan-out of bus events to server-sent-event connections
component.py   the WebUi component: /, /static, /status/{workspace}, /api/v1/events/stream
service.py     build(settings, bus, roles) for the process
"""
