"""The dashboard's grid view over real HTTP (uvicorn on 127.0.0.1): /api/grids drills down the
demo district's tree, /api/grid_shapes serves its boundaries as GeoJSON; both need a login.
The figures themselves are checked in tests/models/test_gridstats.py; here what crosses the wire."""

from __future__ import annotations

import dataclasses

from sqlalchemy import update

from models.engine import session_scope
from models.tables import Case
from tests.models.test_gridstats import seed_grid_work
from tests.models.test_stats import NOW, seed_known_cases
from tests.web.test_dashboard import (
    SCREEN_TOKEN,
    client,
    dashboard_settings,
    login,
    running,
    site,  # noqa: F401 (fixture)
)
from web.app import create_app


async def test_grid_routes_need_a_login(site):
    async with client(site) as http:
        for path in ("/api/grids", "/api/grid_shapes?code=WC-YLD"):
            answer = await http.get(path)
            assert answer.status_code == 401 and answer.json() == {"error": "请先登录指挥大屏"}


async def test_drill_down_over_http(site):
    async with client(site) as http:
        await login(http, SCREEN_TOKEN)
        top = (await http.get("/api/grids")).json()
        assert [r["name"] for r in top["step"]["rows"]] == [
            "高塘岭街道",
            "白鹭湖街道",
            "月亮岛街道",
        ]
        assert top["step"]["node"]["unplaced"] == {"name": "未关联网格", "received": 7, "open": 7}
        assert top["updated_at"] == "14:00:00"
        assert {c["name"]: c["count"] for c in top["channels"]} == {"随手拍": 10, "企业吹哨": 2}
        # Every seeded case signed at dispatch (0 h): slowest first, then by department code.
        assert [(r["name"], r["reported"], r["avg_report_hours"]) for r in top["report_times"]] == [
            ("住建局", 2, 0.0),
            ("市政局", 1, 0.0),
            ("水务局", 4, 0.0),
        ]

        street = (await http.get("/api/grids", params={"code": "WC-GTL"})).json()["step"]
        assert street["path"] == [{"code": "WC-GTL", "name": "高塘岭街道"}]
        assert [r["name"] for r in street["rows"]] == ["新城社区", "桂花坪村", "梅园社区"]
        grid = (await http.get("/api/grids", params={"code": "WC-GTL-XC"})).json()["step"]
        assert grid["rows"][0] == {
            **grid["rows"][0],
            "code": "WC-GTL-XC-01",
            "created": 2,
            "on_time_rate": 0.5,
            "level": "grid",
            "has_children": True,
        }

        gone = await http.get("/api/grids", params={"code": "WC-NOWHERE"})
        assert gone.status_code == 404
        assert gone.json() == {"error": "没有编码为 WC-NOWHERE 的网格，请返回上一级重新选择。"}


async def test_boundaries_level_by_level(site):
    async with client(site) as http:
        await login(http, SCREEN_TOKEN)
        top = await http.get("/api/grid_shapes")
        assert top.status_code == 200 and top.headers["content-type"] == "application/geo+json"
        streets = top.json()
        assert streets["type"] == "FeatureCollection" and streets["message"] is None
        assert sorted(f["properties"]["code"] for f in streets["features"]) == [
            "WC-BLH",
            "WC-GTL",
            "WC-YLD",
        ]
        assert {f["geometry"]["type"] for f in streets["features"]} <= {"Polygon", "MultiPolygon"}
        community = (await http.get("/api/grid_shapes", params={"code": "WC-YLD-YX"})).json()
        props = {f["properties"]["code"]: f["properties"] for f in community["features"]}
        assert sorted(props) == [f"WC-YLD-YX-0{i}" for i in range(1, 6)]
        assert props["WC-YLD-YX-01"]["has_children"] and not props["WC-YLD-YX-02"]["has_children"]
        leaf = (await http.get("/api/grid_shapes", params={"code": "WC-YLD-YX-02"})).json()
        assert leaf["features"] == []
        assert (await http.get("/api/grid_shapes", params={"code": "NOPE"})).status_code == 404


async def test_without_boundaries_the_map_says_why(engine, settings, monkeypatch):
    monkeypatch.delenv("WHISTLE_DASHBOARD_TOKENS", raising=False)
    await seed_known_cases(engine, settings)
    district = dataclasses.replace(settings.district, grid_boundaries="")
    bare = dataclasses.replace(dashboard_settings(settings), district=district)
    app = create_app(bare, engine=engine, clock=lambda: NOW)
    async with running(app) as url, client(url) as http:
        await login(http, SCREEN_TOKEN)
        shapes = (await http.get("/api/grid_shapes")).json()
        assert shapes["features"] == []
        assert "未配置网格边界" in shapes["message"]
        # The league does not need boundaries.
        assert len((await http.get("/api/grids")).json()["step"]["rows"]) == 3


async def test_red_points_follow_the_drill_down(site, engine):
    async with session_scope(engine) as s:
        await s.exec(
            update(Case)
            .where(Case.ref == "C6")
            .values(grid_code="WC-YLD-YX-02", latitude=28.35, longitude=112.85)
        )
    async with client(site) as http:
        await login(http, SCREEN_TOKEN)
        top = (await http.get("/api/grids")).json()["step"]
        assert [(p["ref"], p["grid_code"]) for p in top["red_points"]] == [("C6", "WC-YLD-YX-02")]
        other = (await http.get("/api/grids", params={"code": "WC-GTL"})).json()["step"]
        assert other["red_points"] == []


async def test_grid_rates_channels_and_whistled_reports_over_http(site, engine):
    await seed_grid_work(engine)  # tests/models/test_gridstats.py: the figures worked out there
    async with client(site) as http:
        await login(http, SCREEN_TOKEN)
        top = (await http.get("/api/grids")).json()
        node = top["step"]["node"]
        assert (node["in_grid_rate"], node["in_street_rate"], node["grid_done"]) == (0.5, 0.75, 4)
        assert {
            r["code"]: (r["in_grid_rate"], r["in_street_rate"]) for r in top["step"]["rows"]
        } == {"WC-GTL": (0.5, 0.5), "WC-YLD": (0.5, 1.0), "WC-BLH": (None, None)}
        assert [(c["name"], c["count"]) for c in top["channels"]] == [
            ("雷锋哨", 5),
            ("随手拍", 3),
            ("热线哨", 2),
            ("攻坚哨", 1),
            ("其他平台", 1),
        ]
        assert top["report_times"][0] == {
            "code": "water",
            "name": "水务局",
            "reported": 2,
            "whistled": 2,
            "avg_report_hours": 3.5,
            "report_on_time_rate": 1.0,
        }
        community = (await http.get("/api/grids", params={"code": "WC-GTL-XC"})).json()["step"]
        assert community["node"]["in_grid_rate"] == 0.5
        assert community["rows"][0]["code"] == "WC-GTL-XC-01"
        assert community["rows"][0]["in_street_rate"] == 0.5
