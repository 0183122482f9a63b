"""The dashboard in headless Chromium: log in, read the figures, watch a refresh, screenshot;
a fresh store opened from a wall screen's token link; a phone's width; the console stays clean.

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

from classifier import load_model
from models.auth import issue_login_code
from models.engine import create_all, make_engine, session_scope
from models.tables import Case, Reporter
from tests.models.test_stats import NOW, seed_known_cases
from tests.web.test_dashboard import (
    EMPTY_NOTES,
    LEADER,
    SCREEN_TOKEN,
    dashboard_settings,
    fresh_store,
    running,
)
from web.app import create_app

pytest_plugins = ["tests.test_bot_kit"]  # the shared classifier model (model_path)

CHROMIUM = os.environ.get("WHISTLE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("WHISTLE_CHROMEDRIVER", "/usr/bin/chromedriver")
REFRESH_SECONDS = 5  # the app's lower bound; the test waits for one refresh
# The browser runs in another zone than the district (Asia/Shanghai, 14:00 at NOW): a clock
# that followed the browser would show Los Angeles time, 16 hours behind.
BROWSER_TZ = "America/Los_Angeles"
DISTRICT_DATE = "2026年3月18日星期三"

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
    pytest.skip(
        f"headless Chromium not available ({CHROMIUM}, {CHROMEDRIVER}): "
        "apt-get install chromium chromium-driver",
        allow_module_level=True,
    )

from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

EXPECTED_KPIS = {
    "kpi-today": "4",
    "kpi-month": "12",
    "kpi-open": "8",
    "kpi-yellow": "2",
    "kpi-red": "3",
    "kpi-completion": "50.0%",
    "kpi-ontime": "80.0%",
    "kpi-satisfaction": "75.0%",
    "kpi-enterprise": "2",
    "kpi-enterprise-completion": "50.0%",
}


def start_chromium(profile: Path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1920,1080",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(CHROMEDRIVER, env={**os.environ, "TZ": BROWSER_TZ})
    return webdriver.Chrome(service=service, options=options)


def set_viewport(driver, width: int, height: int, mobile: bool = False) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )


def kpis(driver) -> dict[str, str]:
    return {key: driver.find_element(By.ID, key).text for key in EXPECTED_KPIS}


def clock(driver) -> dict[str, str]:
    return {
        "date": driver.find_element(By.ID, "clock-date").text,
        "time": driver.find_element(By.ID, "clock-time").text,
        "updated": driver.find_element(By.ID, "updated").text,
        "browser_zone": driver.execute_script(
            "return Intl.DateTimeFormat().resolvedOptions().timeZone;"
        ),
    }


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def favicon(driver) -> dict:
    """The icon the page links to, fetched by the page itself."""
    return driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const link = document.querySelector('link[rel="icon"]');
        fetch(link.href).then(r => done({href: link.getAttribute('href'), status: r.status,
                                          type: r.headers.get('content-type')}));""")


def phone_overflow(driver) -> list[str]:
    """What scrolls sideways at the current width: the page, or any scrolling panel."""
    return driver.execute_script("""
        const out = [];
        if (document.documentElement.scrollWidth > window.innerWidth + 1) out.push('page');
        document.querySelectorAll('.scroll, .panel, .kpis, .top, .bottom').forEach(e => {
          if (e.scrollWidth > e.clientWidth + 1) out.push(e.className);
        });
        return out;""")


def phone_overflow_settled(driver) -> list[str]:
    """phone_overflow once the charts have followed the new width (they resize a frame later)."""
    try:
        WebDriverWait(driver, 5).until(lambda d: not phone_overflow(d))
    except TimeoutException:
        pass
    return phone_overflow(driver)


def wait_for_data(wait) -> None:
    wait.until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"),
        "the dashboard never showed its data",
    )


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
        wait_for_data(wait)
        seen["title"] = driver.title
        seen["clock"] = clock(driver)
        seen["export_forms"] = len(driver.find_elements(By.ID, "export"))
        seen["favicon"] = favicon(driver)
        seen["kpis"] = kpis(driver)
        seen["first_department"] = driver.find_element(
            By.CSS_SELECTOR, "#league tbody tr td:nth-child(2)"
        ).text
        seen["first_light"] = driver.find_element(
            By.CSS_SELECTOR, "#league tbody tr .dot"
        ).get_attribute("class")
        seen["red_refs"] = [
            e.text
            for e in driver.find_elements(By.CSS_SELECTOR, "#red-cases tbody tr td:first-child")
        ]
        seen["charts"] = driver.execute_script(
            "return typeof Chart !== 'undefined' && !!Chart.getChart('trend-chart')"
            " && !!Chart.getChart('grid-chart');"
        )
        seen["fits_screen"] = driver.execute_script(
            "return document.documentElement.scrollHeight <= window.innerHeight + 1;"
        )
        driver.save_screenshot(str(shots / "dashboard-1920x1080.png"))

        # Refresh without reloading: a marker on window survives, the figure moves on.
        driver.execute_script("window.__notReloaded = true;")
        add_case()
        wait.until(
            lambda d: d.find_element(By.ID, "kpi-today").text == "5",
            "the new case did not appear after a refresh",
        )
        seen["not_reloaded"] = driver.execute_script("return window.__notReloaded === true;")

        set_viewport(driver, 375, 812, mobile=True)
        seen["phone_overflow"] = phone_overflow_settled(driver)
        seen["league_labels"] = driver.execute_script(
            "const td = document.querySelector('#league tbody td:nth-child(3)');"
            "return [td.dataset.label, getComputedStyle(td, '::before').content];"
        )
        height = driver.execute_script("return document.documentElement.scrollHeight;")
        set_viewport(driver, 375, min(int(height), 4000), mobile=True)
        driver.save_screenshot(str(shots / "dashboard-phone.png"))
        seen["console_errors"] = console_errors(driver)
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
    app = create_app(
        dashboard_settings(settings, refresh_seconds=REFRESH_SECONDS),
        engine=engine,
        clock=lambda: NOW,
    )
    loop = asyncio.get_running_loop()

    async def insert_case() -> None:
        async with session_scope(engine) as s:
            reporter = (await s.exec(select(Reporter))).first()
            s.add(
                Case(
                    ref="NEW",
                    reporter_id=reporter.id,
                    text="新诉求",
                    created_at=datetime(2026, 3, 18, 5, 30),
                )
            )

    def add_case() -> None:  # called from the browser thread
        asyncio.run_coroutine_threadsafe(insert_case(), loop).result(timeout=10)

    try:
        async with running(app) as url:
            seen = await asyncio.to_thread(browse, url, shots, tmp_path / "profile", add_case)
    finally:
        await engine.dispose()

    assert seen["title"] == "望城区吹哨报到指挥大屏"
    assert seen["clock"]["browser_zone"] == BROWSER_TZ
    assert seen["clock"]["date"] == DISTRICT_DATE, seen["clock"]
    assert seen["clock"]["time"].startswith("14:00:"), seen["clock"]
    assert seen["clock"]["updated"] == "数据更新于 14:00:00"
    assert seen["export_forms"] == 0, "a wall screen shows no export controls"
    assert seen["favicon"] == {
        "href": "/static/favicon.svg",
        "status": 200,
        "type": "image/svg+xml",
    }
    assert seen["kpis"] == EXPECTED_KPIS
    assert seen["first_department"] == "水务局" and "red" in seen["first_light"]
    assert seen["red_refs"] == ["P1", "C6", "C10"]
    assert seen["charts"] is True
    assert seen["fits_screen"] is True, "at 1920×1080 the dashboard should fit one screen"
    assert seen["not_reloaded"] is True
    assert seen["phone_overflow"] == [], "nothing scrolls sideways on a 375 px phone"
    assert seen["league_labels"] == ["在办", '"在办"'], "each figure is named on a phone"
    assert seen["console_errors"] == []
    for name in ("dashboard-1920x1080.png", "dashboard-phone.png"):
        assert (shots / name).stat().st_size > 10_000
    print(f"screenshots in {shots}")


def browse_fresh(url: str, profile: Path, staff_code: str) -> dict:
    """A wall screen's saved link on a fresh store, then a staff member on the same browser."""
    driver = start_chromium(profile)
    wait = WebDriverWait(driver, 30, ignored_exceptions=(StaleElementReferenceException,))
    seen = {}
    try:
        set_viewport(driver, 1920, 1080)
        driver.get(f"{url}/?token={SCREEN_TOKEN}")
        wait_for_data(wait)
        seen["url"] = driver.current_url
        seen["history"] = [
            e["url"] for e in driver.execute_cdp_cmd("Page.getNavigationHistory", {})["entries"]
        ]
        seen["notes"] = {
            note: driver.find_element(By.ID, note).is_displayed() for note in EMPTY_NOTES
        }
        seen["note_text"] = {driver.find_element(By.ID, note).text for note in EMPTY_NOTES}
        seen["canvases"] = driver.execute_script(
            "return ['trend-chart', 'grid-chart'].map("
            "id => getComputedStyle(document.getElementById(id)).visibility);"
        )
        seen["model"] = driver.find_element(By.ID, "model-version").text
        seen["export_forms"] = len(driver.find_elements(By.ID, "export"))

        driver.get(url + "/")  # later visits: the cookie, no token
        wait_for_data(wait)
        seen["again"] = driver.current_url

        driver.find_element(By.CSS_SELECTOR, "form[action='/logout'] button").click()
        wait.until(lambda d: d.current_url.endswith("/login"), "logout did not end the session")
        driver.find_element(By.ID, "credential").send_keys(staff_code)
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait_for_data(wait)
        seen["export_shown"] = driver.find_element(By.ID, "export").is_displayed()
        fields = driver.find_elements(By.CSS_SELECTOR, "#export input[name]")
        seen["dates"] = [
            (
                e.get_attribute("name"),
                e.get_attribute("value"),
                e.get_attribute("lang"),
                e.get_attribute("placeholder"),
            )
            for e in fields
        ]
        seen["calendars"] = [
            e.is_displayed()
            for e in driver.find_elements(By.CSS_SELECTOR, "#export button.calendar")
        ]
        # A day chosen in the browser's calendar lands in the text field as YYYY-MM-DD.
        driver.execute_script("""
            const picker = document.querySelector('#export .date-field .picker');
            picker.value = '2026-03-05';
            picker.dispatchEvent(new Event('change'));""")
        seen["picked"] = fields[0].get_attribute("value")
        set_viewport(driver, 375, 812, mobile=True)
        seen["phone_overflow"] = phone_overflow_settled(driver)
        seen["console_errors"] = console_errors(driver)
    finally:
        driver.quit()
    return seen


async def test_fresh_store_from_a_screen_link_in_headless_chromium(
    tmp_path, settings, model_path, monkeypatch
):
    monkeypatch.delenv("WHISTLE_DASHBOARD_TOKENS", raising=False)
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'whistle.db'}")
    await create_all(engine)
    await fresh_store(engine, settings)
    async with session_scope(engine) as s:
        code = await issue_login_code(s, LEADER, NOW)
    app = create_app(
        dashboard_settings(settings, model=model_path), engine=engine, clock=lambda: NOW
    )
    try:
        async with running(app) as url:
            seen = await asyncio.to_thread(browse_fresh, url, tmp_path / "profile", code)
    finally:
        await engine.dispose()

    assert seen["url"] == url + "/", "the token must not stay in the address bar"
    assert seen["history"][-1] == url + "/"
    assert not any(SCREEN_TOKEN in entry for entry in seen["history"]), "nor in the history"
    assert seen["notes"] == dict.fromkeys(EMPTY_NOTES, True), "every empty panel says so"
    assert seen["note_text"] == {"暂无数据"}
    assert seen["canvases"] == ["hidden", "hidden"]
    assert seen["model"] == load_model(model_path).model_version
    assert seen["export_forms"] == 0 and seen["again"] == url + "/"
    assert seen["export_shown"] is True
    assert seen["dates"] == [
        ("from", "2026-03-01", "zh-CN", "YYYY-MM-DD"),
        ("to", "2026-03-18", "zh-CN", "YYYY-MM-DD"),
    ]
    assert seen["calendars"] == [True, True] and seen["picked"] == "2026-03-05"
    assert seen["phone_overflow"] == []
    assert seen["console_errors"] == []
