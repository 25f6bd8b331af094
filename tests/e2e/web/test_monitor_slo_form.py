"""The monitor form's optional SLO in a real browser against a real embedded PingTower: a
percentage out of range is refused next to the field, 99.9 % is saved as the API's 0.999 and
shown again as 99.9 when editing, and emptying the field removes the objective."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import Process, free_port, pingtower, wait_ready
from tests.e2e.web.browser import CHROMIUM_ARGS, chromium_path

pytestmark = pytest.mark.e2e

SEEN = 30_000  # generous for a loaded machine; each wait ends as soon as the page shows it


async def test_the_monitor_form_sets_changes_and_removes_an_slo(tmp_path: Path) -> None:
    executable = chromium_path()
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=SEEN)
    port = free_port()
    data_dir = tmp_path / "data"
    process = Process(
        "pingtower-slo-form",
        pingtower("up", "--port", str(port), "--data-dir", str(data_dir)),
        {"PINGTOWER_DATA_DIR": str(data_dir), "PINGTOWER_ALLOW_PRIVATE_TARGETS": "true"},
        tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(base, process)
        token = (data_dir / "admin-token").read_text().strip()

        async def monitors() -> dict[str, dict[str, Any]]:
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
                response = await client.get(f"{base}/api/v1/monitors")
            assert response.status_code == 200, response.text
            return {m["name"]: m for m in response.json()["items"]}

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=executable, args=CHROMIUM_ARGS
            )
            page = await browser.new_page()
            page.set_default_timeout(SEEN)
            await page.goto(f"{base}/")
            await page.get_by_label("API token").fill(token)
            await page.get_by_role("button", name="Use token").click()
            await expect(page.get_by_role("heading", name="Overview")).to_be_visible()

            await page.get_by_role("link", name="New monitor").click()
            await page.get_by_label("Name").fill("Shop")
            await page.get_by_label("Target").fill("http://127.0.0.1:9/")
            await page.get_by_label("SLO objective (%)").fill("150")
            await page.get_by_role("button", name="Create monitor").click()
            await expect(page.locator('.field-error[data-field="slo"]')).to_contain_text(
                "percentage"
            )
            await page.get_by_label("SLO objective (%)").fill("99.9")
            await page.get_by_label("SLO window (days)").fill("7")
            await page.get_by_role("button", name="Create monitor").click()
            await expect(page.get_by_role("heading", name="Shop", exact=True)).to_be_visible()
            shop = (await monitors())["Shop"]
            assert shop["slo"] == {"objective": 0.999, "window_days": 7}

            await page.goto(f"{base}/#/monitors/{shop['id']}/edit")
            await expect(page.get_by_label("SLO objective (%)")).to_have_value("99.9")
            await expect(page.get_by_label("SLO window (days)")).to_have_value("7")
            # The API's own field errors land next to the field too.
            await page.get_by_label("SLO window (days)").fill("400")
            await page.get_by_role("button", name="Save").click()
            await expect(page.locator('.field-error[data-field="slo"]')).to_be_visible()
            await page.get_by_label("SLO window (days)").fill("30")
            await page.get_by_role("button", name="Save").click()
            await expect(page.get_by_role("heading", name="Shop", exact=True)).to_be_visible()
            assert (await monitors())["Shop"]["slo"] == {"objective": 0.999, "window_days": 30}

            await page.goto(f"{base}/#/monitors/{shop['id']}/edit")
            await expect(page.get_by_label("SLO objective (%)")).to_have_value("99.9")
            await page.get_by_label("SLO objective (%)").fill("")
            await page.get_by_role("button", name="Save").click()
            await expect(page.get_by_role("heading", name="Shop", exact=True)).to_be_visible()
            assert (await monitors())["Shop"]["slo"] is None
            await browser.close()
    finally:
        process.stop()
