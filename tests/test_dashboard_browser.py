"""The dashboard in headless Chromium: log in, read the figures, watch a refresh, screenshot.

Needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver) and
the selenium package; skipped with a message otherwise. Selenium Manager is never used (the
driver path is given explicitly), so nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from sqlmodel import select

from models.db import create_all, make_engine, session_scope
from models.tables import Case, Reporter
from tests.test_dashboard import SCREEN_TOKEN, dashboard_settings, running
from tests.test_stats import NOW, seed_known_cases
from web.app import create_app

CHROMIUM = os.environ.get("WHISTLE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("WHISTLE_CHROMEDRIVER", "/usr/bin/chromedriver")
REFRESH_SECONDS = 5  # the app's lower bound; the test waits for one refresh

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
    pytest.skip(f"headless Chromium not available ({CHROMIUM}, {CHROMEDRIVER}): "
                "apt-get install chromium chromium-driver", allow_module_level=True)

from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

EXPECTED_KPIS = {
    "kpi-today": "4", "kpi-month": "12", "kpi-open": "8", "kpi-yellow": "2", "kpi-red": "3",
    "kpi-completion": "50.0%", "kpi-ontime": "80.0%", "kpi-satisfaction": "75.0%",
    "kpi-enterprise": "2", "kpi-enterprise-completion": "50.0%",
}


def start_chromium(profile: Path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1920,1080",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def set_viewport(driver, width: int, height: int, mobile: bool = False) -> None:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})


def kpis(driver) -> dict[str, str]:
    return {key: driver.find_element(By.ID, key).text for key in EXPECTED_KPIS}


def browse(url: str, shots: Path, profile: Path, add_case) -> dict:
    """Everything the browser does (blocking; runs in a thread beside the server)."""
    driver = start_chromium(profile)
    # An element found just before the page navigates (login, refresh) goes stale: look again.
    wait = WebDriverWait(driver, 30, ignored_exceptions=(StaleElementReferenceException,))
    seen = {}
    try:
        set_viewport(driver, 1920, 1080)
        driver.get(url + "/")
        wait.until(lambda d: d.current_url.endswith("/login"), "not sent to /login")
        driver.find_element(By.ID, "credential").send_keys(SCREEN_TOKEN)
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"),
                   "the dashboard never showed its data")
        seen["title"] = driver.title
        seen["kpis"] = kpis(driver)
        seen["first_department"] = driver.find_element(
            By.CSS_SELECTOR, "#league tbody tr td:nth-child(2)").text
        seen["first_light"] = driver.find_element(
            By.CSS_SELECTOR, "#league tbody tr .dot").get_attribute("class")
        seen["red_refs"] = [e.text for e in driver.find_elements(
            By.CSS_SELECTOR, "#red-cases tbody tr td:first-child")]
        seen["charts"] = driver.execute_script(
            "return typeof Chart !== 'undefined' && !!Chart.getChart('trend-chart')"
            " && !!Chart.getChart('grid-chart');")
        seen["fits_screen"] = driver.execute_script(
            "return document.documentElement.scrollHeight <= window.innerHeight + 1;")
        driver.save_screenshot(str(shots / "dashboard-1920x1080.png"))

        # Refresh without reloading: a marker on window survives, the figure moves on.
        driver.execute_script("window.__notReloaded = true;")
        add_case()
        wait.until(lambda d: d.find_element(By.ID, "kpi-today").text == "5",
                   "the new case did not appear after a refresh")
        seen["not_reloaded"] = driver.execute_script("return window.__notReloaded === true;")

        set_viewport(driver, 390, 844, mobile=True)
        seen["phone_overflow"] = driver.execute_script(
            "return document.documentElement.scrollWidth > window.innerWidth + 1;")
        height = driver.execute_script("return document.documentElement.scrollHeight;")
        set_viewport(driver, 390, min(int(height), 4000), mobile=True)
        driver.save_screenshot(str(shots / "dashboard-phone.png"))
    finally:
        driver.quit()
    return seen


async def test_dashboard_in_headless_chromium(tmp_path, settings, monkeypatch):
    monkeypatch.delenv("WHISTLE_DASHBOARD_TOKENS", raising=False)
    shots = Path(os.environ.get("WHISTLE_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'whistle.db'}")
    await create_all(engine)
    await seed_known_cases(engine, settings)
    app = create_app(dashboard_settings(settings, refresh_seconds=REFRESH_SECONDS),
                     engine=engine, clock=lambda: NOW)
    loop = asyncio.get_running_loop()

    async def insert_case() -> None:
        async with session_scope(engine) as s:
            reporter = (await s.exec(select(Reporter))).first()
            s.add(Case(ref="NEW", reporter_id=reporter.id, text="新诉求",
                       created_at=datetime(2026, 3, 18, 5, 30)))

    def add_case() -> None:  # called from the browser thread
        asyncio.run_coroutine_threadsafe(insert_case(), loop).result(timeout=10)

    try:
        async with running(app) as url:
            seen = await asyncio.to_thread(browse, url, shots, tmp_path / "profile", add_case)
    finally:
        await engine.dispose()

    assert seen["title"] == "望城区吹哨报到指挥大屏"
    assert seen["kpis"] == EXPECTED_KPIS
    assert seen["first_department"] == "水务局" and "red" in seen["first_light"]
    assert seen["red_refs"] == ["P1", "C6", "C10"]
    assert seen["charts"] is True
    assert seen["fits_screen"] is True, "at 1920×1080 the dashboard should fit one screen"
    assert seen["not_reloaded"] is True
    assert seen["phone_overflow"] is False, "no sideways scrolling on a phone"
    for name in ("dashboard-1920x1080.png", "dashboard-phone.png"):
        assert (shots / name).stat().st_size > 10_000
    print(f"screenshots in {shots}")
