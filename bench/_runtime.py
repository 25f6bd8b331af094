"""Running PingTower processes for a benchmark: `pingtower up` (the embedded mode) in its own
data dir on a free local port, waiting for /readyz, creating monitors through its API, stopping
it; and the process's CPU time and resident set from /proc."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import aiohttp

from bench.local_nginx import free_port


def up_env(**settings: str) -> dict[str, str]:
    """This process's environment with what every embedded benchmark sets, then `settings`."""
    return {
        **os.environ,
        # The load goes to local targets only.
        "PINGTOWER_ALLOW_PRIVATE_TARGETS": "true",
        "PINGTOWER_LOG_LEVEL": "warning",
        # Creating thousands of monitors is a benchmark's set-up, not abuse.
        "PINGTOWER_RATE_LIMIT_PER_MINUTE": "0",
        # Issue 3 measures 50,000 monitors in one workspace, past the default quota of 10,000.
        "PINGTOWER_MAX_MONITORS_PER_WORKSPACE": "0",
        **settings,
    }


class EmbeddedProcess:
    """`pingtower up --port P --data-dir D`, run as `python -m <launcher...> up`; the launcher is
    `pingtower.cli` or a wrapper taking the same arguments (bench.loop_lag_cli, or
    bench.tracemalloc_cli with its snapshot path). Its output is appended to `log_path`; it
    can be stopped and started again on the same data dir and port."""

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        env: dict[str, str],
        launcher: Sequence[str] = ("pingtower.cli",),
    ) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.env = env
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.command = [sys.executable, "-m", *launcher, "up", "--port", str(self.port)]
        self.command += ["--data-dir", str(data_dir)]
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("pingtower up is not running")
        return self._process.pid

    def start(self, ready_timeout: float = 60) -> None:
        """Starts the process and returns once it answers /readyz; stops it if it does not."""
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            self.command, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        try:
            wait_ready(self.base, self._process, "pingtower up", ready_timeout)
        except BaseException:
            self.stop()
            raise

    def admin_token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None


def wait_ready(base: str, process: subprocess.Popen[bytes], name: str, timeout: float = 60) -> None:
    """Polls `base`/readyz until it answers 200; fails early if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited; see its log")
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:  # refused while starting, or 503 until every part is ready
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} was not ready within {timeout:g} s")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a clean shutdown flushes what the benchmark reads afterwards), then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


CREATE_ATTEMPTS = 10
# Monitors per POST /api/v1/monitors/batch: each batch is one transaction, which in the
# embedded mode holds SQLite's only write lock while the checks of the monitors created so far
# wait to store their results; 500 keeps that wait well under a second.
BATCH_SIZE = 500


async def create_monitors(
    base: str, token: str, bodies: Sequence[dict[str, Any]], in_flight: int = 2
) -> list[dict[str, Any]]:
    """Creates every body through /api/v1/monitors/batch, BATCH_SIZE a request and `in_flight`
    requests at a time; the created monitors in the order of `bodies`."""
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{base}/api/v1/monitors/batch"
    created: list[dict[str, Any]] = [{} for _ in bodies]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for start in range(0, len(bodies), BATCH_SIZE):
        queue.put_nowait(start)

    async with aiohttp.ClientSession(headers=headers) as session:

        async def worker() -> None:
            while not queue.empty():
                start = queue.get_nowait()
                batch = {"monitors": list(bodies[start : start + BATCH_SIZE])}
                # A busy embedded database answers 503 with Retry-After (the process is also
                # checking the monitors created so far); a refused batch wrote nothing, so the
                # set-up waits as a client should and sends it again.
                for _attempt in range(CREATE_ATTEMPTS):
                    async with session.post(url, json=batch) as response:
                        if response.status == 503:
                            await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                            continue
                        if response.status != 201:
                            raise RuntimeError(f"create failed: {await response.text()}")
                        monitors = (await response.json())["monitors"]
                        created[start : start + len(monitors)] = monitors
                        break
                else:
                    raise RuntimeError(f"create refused {CREATE_ATTEMPTS} times as busy")

        await asyncio.gather(*(worker() for _ in range(in_flight)))
    return created


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def process_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")
