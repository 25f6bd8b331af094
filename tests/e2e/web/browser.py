"""Headless Chromium for the browser tests: Debian's chromium driven by Playwright (never a
downloaded browser). Missing browser: the test fails under CI=true and is skipped elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.harness import REPO

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = REPO / "artifacts" / "screenshots"


def chromium_path() -> str:
    """The browser to drive, or skip (fail in CI) when there is none."""
    path = os.environ.get("PINGTOWER_TEST_CHROMIUM", "/usr/bin/chromium")
    problem = None
    try:
        import playwright  # noqa: F401
    except ImportError:
        problem = "playwright is not installed (pip install playwright)"
    if problem is None and not Path(path).is_file():
        problem = f"no chromium at {path} (apt-get install chromium; see scripts/test-env.sh)"
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    return path
