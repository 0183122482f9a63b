"""The grid view (网格分布) in the real headless Chromium: the map drawn from the demo
boundaries with the bundled Leaflet and nothing fetched from anywhere but the dashboard,
drill-down by clicking a grid on the map and a name in the league, back by the breadcrumb,
colouring by open or red cases, red cases as points, a deep link, a phone's width.

Skipped like tests/web/test_dashboard_browser.py when Chromium or selenium is missing.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from shapely.geometry import shape
from sqlalchemy import update

from models.engine import create_all, make_engine, session_scope
from models.tables import Case
from tests.models.test_gridstats import seed_grid_work
from tests.models.test_stats import NOW, seed_known_cases
from tests.web.test_dashboard import SCREEN_TOKEN, dashboard_settings, running
from tests.web.test_dashboard_browser import (  # skips this module too without Chromium
    By,
    StaleElementReferenceException,
    WebDriverWait,
    console_errors,
    phone_overflow_settled,
    set_viewport,
    start_chromium,
    wait_for_data,
)
from web.app import create_app

BOUNDARIES = Path(__file__).resolve().parents[2] / "geo" / "demo" / "boundaries.geojson"
ZERO_FILL = "#10243f"  # grids.js: the colour of a grid without cases


def inside(code: str) -> tuple[float, float]:
    """(lat, lon) of a point inside the demo grid `code`."""
    features = json.loads(BOUNDARIES.read_text(encoding="utf-8"))["features"]
    geom = next(shape(f["geometry"]) for f in features if f["properties"]["code"] == code)
    point = geom.representative_point()
    return point.y, point.x


def loaded(wait, code: str) -> None:
    wait.until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-grids-loaded") == code,
        f"the grid view never showed {code}",
    )


def shapes(driver) -> dict[str, dict]:
    """Each grid drawn on the map: its fill and the value it is coloured by."""
    return driver.execute_script("""
        const out = {};
        document.querySelectorAll('#grid-map path.grid-shape').forEach(p => {
          out[p.dataset.code] = {fill: p.getAttribute('fill'), value: p.dataset.value};
        });
        return out;""")


def clickable_shape(driver, code: str):
    """The map path of `code`, once the point a click lands on (its box's centre) is on it."""

    def find(d):
        return d.execute_script(
            """
            const p = document.querySelector('#grid-map path.grid-shape[data-code="' +
                                              arguments[0] + '"]');
            if (!p) return null;
            const r = p.getBoundingClientRect();
            return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2) === p
                ? p : null;""",
            code,
        )

    return WebDriverWait(driver, 10).until(find, f"{code} cannot be clicked at its centre")


def view(driver) -> dict:
    """What the grid view shows, read in one script (nothing can change half-way through)."""
    seen = driver.execute_script("""
        const texts = sel => Array.from(document.querySelectorAll(sel), e => e.innerText);
        return {
          path: document.getElementById('grid-path').innerText,
          level: document.getElementById('grid-level-title').innerText,
          rows: texts('#grid-league tbody td:nth-child(2)'),
          points: document.querySelectorAll('#grid-map path.red-case').length,
          labels: texts('#grid-map .grid-label').sort(),
        };""")
    return {**seen, "shapes": shapes(driver)}


def browse(url: str, shots: Path, profile: Path) -> dict:
    driver = start_chromium(profile)
    wait = WebDriverWait(driver, 30, ignored_exceptions=(StaleElementReferenceException,))
    seen: dict = {}
    try:
        set_viewport(driver, 1920, 1080)
        driver.get(url + "/login")
        driver.find_element(By.ID, "credential").send_keys(SCREEN_TOKEN)
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait_for_data(wait)
        seen["overview_hidden_at_start"] = driver.find_element(By.ID, "grids-view").is_displayed()
        driver.find_element(By.ID, "tab-grids").click()
        loaded(wait, "district")
        seen["district"] = view(driver)
        seen["node"] = driver.find_element(By.ID, "grid-node").text
        seen["channels"] = driver.find_element(By.ID, "grid-channels").text
        seen["league_head"] = driver.find_element(By.CSS_SELECTOR, "#grid-league thead").text
        seen["yld_row"] = driver.find_element(
            By.CSS_SELECTOR, "#grid-league tr[data-code='WC-YLD']"
        ).text
        seen["overview_shown"] = driver.find_element(By.ID, "overview-view").is_displayed()
        seen["fits_screen"] = driver.execute_script(
            "return document.documentElement.scrollHeight <= window.innerHeight + 1;"
        )
        driver.save_screenshot(str(shots / "grids-district.png"))

        clickable_shape(driver, "WC-YLD").click()  # a click on the map drills down
        loaded(wait, "WC-YLD")
        seen["street"] = view(driver)
        seen["hash"] = driver.execute_script("return location.hash;")

        driver.find_element(By.XPATH, "//table[@id='grid-league']//button[.='银星村']").click()
        loaded(wait, "WC-YLD-YX")
        seen["community"] = view(driver)
        driver.save_screenshot(str(shots / "grids-community.png"))
        driver.find_element(By.CSS_SELECTOR, ".map-tools .colour[data-colour='red']").click()
        seen["by_red"] = shapes(driver)
        seen["legend"] = driver.find_element(By.ID, "grid-legend").text

        driver.find_element(By.XPATH, "//nav[@id='grid-path']/button[.='全区']").click()
        loaded(wait, "district")
        seen["back"] = view(driver)["rows"]

        driver.get(url + "/#grids/WC-GTL")  # a wall screen's saved link to one street
        loaded(wait, "WC-GTL")
        seen["deep_link"] = view(driver)

        seen["resources"] = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name);"
        )
        set_viewport(driver, 375, 812, mobile=True)
        seen["phone_overflow"] = phone_overflow_settled(driver)
        seen["console_errors"] = console_errors(driver)
    finally:
        driver.quit()
    return seen


async def test_grid_view_in_headless_chromium(tmp_path, settings, monkeypatch):
    monkeypatch.delenv("WHISTLE_DASHBOARD_TOKENS", raising=False)
    shots = Path(os.environ.get("WHISTLE_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'whistle.db'}")
    await create_all(engine)
    await seed_known_cases(engine, settings)
    await seed_grid_work(engine)
    # Two red cases get a place on the map: C6 in 银星村第二网格, C10 in 新城社区第二网格.
    async with session_scope(engine) as s:
        for ref, code in (("C6", "WC-YLD-YX-02"), ("C10", "WC-GTL-XC-02")):
            lat, lon = inside(code)
            await s.exec(
                update(Case)
                .where(Case.ref == ref)
                .values(grid_code=code, latitude=lat, longitude=lon)
            )
    app = create_app(dashboard_settings(settings), engine=engine, clock=lambda: NOW)
    try:
        async with running(app) as url:
            seen = await asyncio.to_thread(browse, url, shots, tmp_path / "profile")
    finally:
        await engine.dispose()

    assert seen["overview_hidden_at_start"] is False and seen["overview_shown"] is False
    district = seen["district"]
    assert district["path"] == "全区" and district["level"] == "街道（镇）"
    assert district["rows"] == ["高塘岭街道", "月亮岛街道", "白鹭湖街道"]
    assert sorted(district["shapes"]) == ["WC-BLH", "WC-GTL", "WC-YLD"]
    # Coloured by open cases: 高塘岭 has C5 and C10 open, 月亮岛 C6, 白鹭湖 none.
    assert {c: s["value"] for c, s in district["shapes"].items()} == {
        "WC-GTL": "2",
        "WC-YLD": "1",
        "WC-BLH": "0",
    }
    assert district["shapes"]["WC-BLH"]["fill"] == ZERO_FILL
    assert district["shapes"]["WC-GTL"]["fill"] != district["shapes"]["WC-YLD"]["fill"]
    assert district["points"] == 2
    assert district["labels"] == ["月亮岛街道 1", "白鹭湖街道 0", "高塘岭街道 2"]
    assert "未关联网格 5 件（在办 5）" in seen["node"]
    # 小事不出网格率 / 大事不出街镇率 (tests/models/test_gridstats.py's GRID_WORK): district and league.
    assert "小事不出网格率 50.0%" in seen["node"] and "大事不出街镇率 75.0%" in seen["node"]
    assert "不出网格" in seen["league_head"] and "不出街镇" in seen["league_head"]
    assert seen["yld_row"].split()[-2:] == ["50.0%", "100.0%"]
    assert seen["channels"].split()[2:6] == ["雷锋哨", "5", "随手拍", "3"]
    assert seen["fits_screen"] is True

    street = seen["street"]
    assert street["path"] == "全区\n›\n月亮岛街道" or street["path"].split() == [
        "全区",
        "›",
        "月亮岛街道",
    ]
    assert street["level"] == "社区（村）"
    assert sorted(street["shapes"]) == ["WC-YLD-LS", "WC-YLD-YT", "WC-YLD-YX"]
    assert street["points"] == 1 and seen["hash"] == "#grids/WC-YLD"

    community = seen["community"]
    assert community["path"].split() == ["全区", "›", "月亮岛街道", "›", "银星村"]
    assert community["level"] == "网格" and len(community["shapes"]) == 5
    assert community["rows"][0] == "银星村第二网格"  # the red one heads the league
    assert community["shapes"]["WC-YLD-YX-02"]["value"] == "1"
    assert community["shapes"]["WC-YLD-YX-03"]["fill"] == ZERO_FILL
    assert seen["by_red"]["WC-YLD-YX-02"]["value"] == "1"
    assert seen["by_red"]["WC-YLD-YX-02"]["fill"] != community["shapes"]["WC-YLD-YX-02"]["fill"]
    assert seen["legend"].split() == ["0", "1"]  # one red case at most: one class

    assert seen["back"] == district["rows"]
    deep = seen["deep_link"]
    assert deep["level"] == "社区（村）" and deep["points"] == 1
    assert sorted(deep["shapes"]) == ["WC-GTL-GH", "WC-GTL-MY", "WC-GTL-XC"]

    # Nothing but the dashboard itself was fetched: no tiles, no CDN.
    assert seen["resources"] and all(r.startswith(url + "/") for r in seen["resources"])
    assert any(r.endswith("/static/vendor/leaflet/leaflet.js") for r in seen["resources"])
    assert seen["phone_overflow"] == []
    assert seen["console_errors"] == []
    for name in ("grids-district.png", "grids-community.png"):
        assert (shots / name).stat().st_size > 10_000
