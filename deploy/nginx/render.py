"""Fill deploy/nginx/pingtower.conf.template with addresses, and optionally wrap it in a
self-contained nginx.conf (own prefix, pid and temp paths) for running nginx unprivileged in tests.

    python deploy/nginx/render.py PINGER_API=127.0.0.1:8001 NOTIFICATOR=127.0.0.1:8002 \
        STATISTICS=127.0.0.1:8003 WEB=127.0.0.1:8004 LISTEN=127.0.0.1:8080 \
        > /etc/nginx/conf.d/pingtower.conf
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

TEMPLATE = Path(__file__).with_name("pingtower.conf.template")


def render(values: dict[str, str]) -> str:
    text = TEMPLATE.read_text()
    missing = sorted(set(re.findall(r"\$\{([A-Z_]+)\}", text)) - set(values))
    if missing:
        raise SystemExit(f"missing values: {', '.join(missing)}")
    return re.sub(r"\$\{([A-Z_]+)\}", lambda m: values[m.group(1)], text)


def standalone(values: dict[str, str], workdir: Path) -> str:
    """A whole nginx.conf that keeps every file under `workdir`."""
    return f"""daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {workdir}/access.log;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
{render(values)}
}}
"""


if __name__ == "__main__":
    pairs = dict(arg.split("=", 1) for arg in sys.argv[1:])
    sys.stdout.write(render(pairs))
