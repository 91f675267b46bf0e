"""Playwright driving the system's Chromium (Debian's ``chromium`` package; Playwright's own
browser download is not used), with the accessibility check and the screenshots of the journey."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from playwright.async_api import Page

VENDOR = Path(__file__).parent / "vendor"
AXE = (VENDOR / "axe.min.js").read_text()
# What axe reports that the console must never have (minor and moderate findings are listed in
# the failure message of a serious one, but do not fail the test on their own).
BLOCKING_IMPACTS = frozenset({"serious", "critical"})


def chromium_path() -> str | None:
    return os.environ.get("WCE_TEST_CHROMIUM") or shutil.which("chromium")


async def accessibility_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not await page.evaluate("() => typeof window.axe !== 'undefined'"):
        await page.add_script_tag(content=AXE)
    result = await page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "targets": [node["target"] for node in v["nodes"]][:5],
        }
        for v in result["violations"]
        if v["impact"] in BLOCKING_IMPACTS
    ]


class Journey:
    """Screenshots of each page, numbered in the order visited, and axe on each of them."""

    def __init__(self, page: Page, folder: Path) -> None:
        self.page = page
        self.folder = folder
        self.count = 0
        self.checked: list[str] = []

    async def page_seen(self, name: str) -> None:
        self.count += 1
        await self.page.screenshot(path=str(self.folder / f"{self.count:02d}-{name}.png"), full_page=True)
        violations = await accessibility_violations(self.page)
        assert violations == [], f"{name} ({self.page.url}): {violations}"
        self.checked.append(name)
