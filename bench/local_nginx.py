"""A throwaway nginx on 127.0.0.1 serving one small static file, for the benchmarks."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

CONFIG = """
{modules}
worker_processes {workers};
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
{user}
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_timeout 0;
    client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp; fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {root}/www;
        location / {{ }}
{delayed}
    }}
}}
"""


# A target that answers after a delay, as one across a network does: nginx's echo module
# (Debian's libnginx-mod-http-echo) waits on a timer, so the wait costs the target no CPU.
# The kernel here has no netem to delay loopback packets instead.
ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")
ECHO_PACKAGE = "libnginx-mod-http-echo"
DELAYED = """        location = /ok.txt {{
            default_type text/plain;
            echo_sleep {seconds};
            echo -n ok;
        }}"""


def echo_module() -> Path:
    """The echo module's file, installed from Debian's packages when missing and this runs as
    root; a clear error otherwise."""
    if not ECHO_MODULE.exists() and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", ECHO_PACKAGE],
        ):
            subprocess.run(command, env=env, check=False, capture_output=True)
    if not ECHO_MODULE.exists():
        raise RuntimeError(
            f"a delayed target needs nginx's echo module ({ECHO_MODULE}): "
            f"apt-get install {ECHO_PACKAGE}"
        )
    return ECHO_MODULE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalNginx:
    """`with LocalNginx() as nginx:` serves `nginx.url` (a 2-byte page) until the block ends,
    after `delay_ms` when that is set."""

    def __init__(self, workers: int = 1, delay_ms: int = 0) -> None:
        self.workers = workers
        self.delay_ms = delay_ms
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="pingtower-bench-nginx-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ok.txt"

    def __enter__(self) -> LocalNginx:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        (self.root / "www").mkdir()
        (self.root / "tmp").mkdir()
        (self.root / "www" / "ok.txt").write_text("ok")
        self.root.chmod(0o755)
        user = "user root;" if os.geteuid() == 0 else ""
        config = self.root / "nginx.conf"
        modules = delayed = ""
        if self.delay_ms > 0:
            modules = f"load_module {echo_module()};"
            delayed = DELAYED.format(seconds=f"{self.delay_ms / 1000:.3f}")
        config.write_text(
            CONFIG.format(
                modules=modules,
                workers=self.workers,
                root=self.root,
                port=self.port,
                user=user,
                delayed=delayed,
            )
        )
        self.process = subprocess.Popen(
            [binary, "-c", str(config), "-p", str(self.root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError(f"nginx did not start: {(self.root / 'error.log').read_text()}")

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)
