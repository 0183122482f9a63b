"""The Open311 API over real HTTP (uvicorn on 127.0.0.1, httpx), on SQLite and PostgreSQL.

A fake 12345 platform (aiohttp, in the test) posts work orders and takes the status
callbacks; it is down for a while and Whistle is restarted in between, and every status
change still arrives exactly once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiohttp import web
from sqlmodel import select

from models import apiclients, cases
from models.cases import Actor
from models.engine import session_scope
from models.stats import summary
from models.tables import DISPATCHED, HOTLINE, Case, Outbox
from tests.web.test_dashboard import dashboard_settings, running
from web.app import create_app

pytest_plugins = ["tests.test_bot_kit"]  # the shared classifier model (model_path)

CALLER_PHONE, CALLER_NAME = "13912345678", "测试来电人"


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def api_settings(settings, model_path, **options):
    """Test settings: the session's model, quick callback retries, a roomy rate limit."""
    base = dashboard_settings(settings, model=model_path)
    open311 = dataclasses.replace(
        base.open311,
        **{
            "callback_poll_seconds": 0.05,
            "callback_backoff_seconds": (0.2,),
            "rate_per_second": 1000,
            "rate_burst": 1000,
            **options,
        },
    )
    return dataclasses.replace(base, open311=open311)


async def new_client(engine, name="12345热线", callback=None) -> str:
    async with session_scope(engine) as s:
        _, key = await apiclients.add_client(s, name, now(), callback_url=callback)
    return key


def work_order(key: str, external_id: str, **fields) -> dict:
    return {
        "api_key": key,
        "service_code": "water",
        "attribute[external_id]": external_id,
        "description": "银星村自来水管爆裂，路面积水，请尽快维修",
        "lat": "28.37",
        "long": "112.82",
        "first_name": CALLER_NAME,
        "phone": CALLER_PHONE,
        **fields,
    }


@pytest.fixture
async def api(seeded, model_path):
    """The dashboard app with the Open311 API on the seeded store; yields (base URL, key)."""
    settings = api_settings(seeded.settings, model_path)
    key = await new_client(seeded.engine)
    async with running(create_app(settings, engine=seeded.engine, clock=now)) as url:
        yield f"{url}/open311/v2", key


async def test_post_makes_a_dispatched_hotline_case_once(api, seeded):
    base, key = api
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        first = await http.post("/requests.json", data=work_order(key, "GD-001"))
        again = await http.post("/requests.json", data=work_order(key, "GD-001"))
        assert first.status_code == 201, first.text
        assert again.status_code == 200
        ref = first.json()[0]["service_request_id"]
        assert again.json()[0]["service_request_id"] == ref
        public = await http.get(f"/requests/{ref}.json")
        xml = await http.get(f"/requests/{ref}.xml")
        listed = await http.get(
            "/requests.json", params={"service_code": "water", "status": "open"}
        )
    async with session_scope(seeded.engine) as s:
        case = await cases.get_case_by_ref(s, ref)
        count = len((await s.exec(select(Case))).all())
    assert count == 1
    assert (case.status, case.department_code, case.channel) == (DISPATCHED, "water", HOTLINE)
    assert case.external_id == "GD-001" and case.caller["phone"] == CALLER_PHONE
    [item] = public.json()
    assert item["status"] == "open" and item["service_code"] == "water"
    assert item["lat"] == 28.37 and item["address"] == ""
    for body in (public.text, xml.text, listed.text):
        assert CALLER_PHONE not in body and CALLER_NAME not in body
    root = ET.fromstring(xml.content)
    assert root.tag == "service_requests" and root.find("request/status").text == "open"
    assert ref in [r["service_request_id"] for r in listed.json()]


async def test_free_text_goes_through_the_classifier(api, seeded):
    base, key = api
    order = work_order(key, "GD-002", description="小区门口污水井冒水，臭味很大")
    del order["service_code"]
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        response = await http.post("/requests.json", data=order)
    assert response.status_code == 201, response.text
    async with session_scope(seeded.engine) as s:
        case = await cases.get_case_by_ref(s, response.json()[0]["service_request_id"])
    assert case.suggestions and case.model_version
    assert case.status in ("triage", "dispatched")


@pytest.mark.parametrize(
    "change, status, words",
    [
        ({"api_key": ""}, 401, "api_key"),
        ({"api_key": "o311_wrong"}, 403, "api_key"),
        ({"description": ""}, 400, "description"),
        ({"lat": "", "long": ""}, 400, "address_string"),
        ({"lat": "91"}, 400, "lat"),
        ({"lat": "nan"}, 400, "lat"),
        ({"service_code": "no_such"}, 400, "service_code"),
        ({"phone": "12"}, 400, "phone"),
        ({"media_url": "javascript:alert(1)"}, 400, "media_url"),
        ({"attribute[external_id]": "x" * 101}, 400, "external_id"),
        ({"description": "长" * 2001}, 400, "description"),
    ],
)
async def test_bad_posts_get_open311_errors_and_write_nothing(api, seeded, change, status, words):
    base, key = api
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        response = await http.post("/requests.json", data=work_order(key, "GD-X", **change))
        xml = await http.post("/requests.xml", data=work_order(key, "GD-X", **change))
    assert response.status_code == status
    [error] = response.json()
    assert error["code"] == status and words in error["description"]
    assert ET.fromstring(xml.content).find("error/code").text == str(status)
    async with session_scope(seeded.engine) as s:
        assert (await s.exec(select(Case))).all() == []


async def test_body_size_format_and_rate_limits(seeded, model_path):
    settings = api_settings(
        seeded.settings, model_path, rate_per_second=0.01, rate_burst=2, max_body_bytes=1000
    )
    key = await new_client(seeded.engine)
    async with (
        running(create_app(settings, engine=seeded.engine, clock=now)) as url,
        httpx.AsyncClient(base_url=f"{url}/open311/v2", timeout=30) as http,
    ):
        big = await http.post("/requests.json", data=work_order(key, "A", description="长" * 900))
        wrong = await http.get("/requests.csv")
        polls = [
            await http.get("/servicerequestupdates.json", params={"api_key": key}) for _ in range(3)
        ]
    assert big.status_code == 413 and big.json()[0]["code"] == 413
    assert wrong.status_code == 404 and wrong.json()[0]["code"] == 404
    assert [p.status_code for p in polls] == [200, 200, 429]
    assert int(polls[2].headers["retry-after"]) >= 1


async def test_services_and_discovery(api):
    base, _ = api
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        services = await http.get("/services.json")
        services_xml = await http.get("/services.xml")
        discovery = await http.get("/discovery.xml")
        definition = await http.get("/services/water.json")
        missing = await http.get("/services/nope.json")
    codes = {s["service_code"] for s in services.json()}
    assert {"water", "housing"} <= codes
    assert all(s["description"] for s in services.json())
    assert len(ET.fromstring(services_xml.content).findall("service")) == len(codes)
    assert ET.fromstring(discovery.content).find("endpoints/endpoint/formats/format") is not None
    assert definition.json()["service_code"] == "water" and missing.status_code == 404


async def test_revoked_key_is_refused(api, seeded):
    base, key = api
    async with session_scope(seeded.engine) as s:
        assert await apiclients.revoke(s, "12345热线", now())
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        response = await http.post("/requests.json", data=work_order(key, "GD-R"))
    assert response.status_code == 403


# ---------------------------------------------------------------- a fake 12345 platform


class FakePlatform:
    """A 12345 platform's callback endpoint: answers 503 while `down`, records what it took."""

    def __init__(self) -> None:
        self.down = True
        self.received: list[dict] = []
        self.refused = 0

    async def handle(self, request: web.Request) -> web.Response:
        if self.down:
            self.refused += 1
            return web.Response(status=503)
        body = await request.json()
        self.received.extend(body["service_request_updates"])
        return web.json_response({"ok": True})

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/callback", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/callback"


async def wait_for(predicate, seconds: float = 60.0) -> None:  # a loaded CI box is slow
    deadline = time.monotonic() + seconds
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_12345_platform_gets_every_status_once_across_outage_and_restart(seeded, model_path):
    platform = FakePlatform()
    callback = await platform.start()
    settings = api_settings(seeded.settings, model_path)
    key = await new_client(seeded.engine, callback=callback)
    officer = Actor.staff(seeded.dept_staff["water"])
    try:
        async with (
            running(create_app(settings, engine=seeded.engine, clock=now)) as url,
            httpx.AsyncClient(base_url=f"{url}/open311/v2", timeout=30) as http,
        ):
            created = await http.post("/requests.json", data=work_order(key, "GD-100"))
            ref = created.json()[0]["service_request_id"]
            async with session_scope(seeded.engine) as s:
                case = await cases.get_case_by_ref(s, ref)
                await cases.sign_for(s, case.id, officer, now(), rules=seeded.rules)
            await wait_for(lambda: _queued_while_down(seeded.engine, platform, 3))
        # Whistle is restarted while the platform is still down; then it comes back.
        async with (
            running(create_app(settings, engine=seeded.engine, clock=now)) as url,
            httpx.AsyncClient(base_url=f"{url}/open311/v2", timeout=30) as http,
        ):
            platform.down = False
            async with session_scope(seeded.engine) as s:
                await cases.resolve(s, case.id, officer, "已更换水管", now(), rules=seeded.rules)
            await wait_for(lambda: _all_sent(platform, 4))
            rated = await http.post(
                f"/requests/{ref}/feedback.json", data={"api_key": key, "rating": "satisfied"}
            )
            await wait_for(lambda: _all_sent(platform, 5))
            polled = await http.get(
                "/servicerequestupdates.json", params={"api_key": key, "start_date": "2000-01-01"}
            )
            await asyncio.sleep(0.5)  # more passes: nothing more may arrive
    finally:
        await platform.runner.cleanup()
    statuses = [u["whistle_status"] for u in platform.received]
    assert statuses == ["submitted", "dispatched", "signed", "resolved", "closed"]
    assert len({u["update_id"] for u in platform.received}) == 5
    assert all(u["external_id"] == "GD-100" for u in platform.received)
    assert platform.refused >= 1  # it was called while down (and the rest held back)
    assert rated.status_code == 200 and rated.json()[0]["status"] == "closed"
    assert [u["whistle_status"] for u in polled.json()] == statuses
    async with session_scope(seeded.engine) as s:
        day = await summary(
            s,
            start=now() - timedelta(days=1),
            end=now() + timedelta(days=1),
            now=now(),
            rules=seeded.rules,
        )
    assert (day["rated"], day["satisfaction_rate"]) == (1, 1.0)


async def _queued_while_down(engine, platform: FakePlatform, count: int) -> bool:
    """`count` callbacks queued, none sent, and the platform refused at least one."""
    async with session_scope(engine) as s:
        rows = (await s.exec(select(Outbox).where(Outbox.chat_id == -1))).all()
    return len(rows) >= count and platform.refused >= 1 and not platform.received


async def _all_sent(platform: FakePlatform, count: int) -> bool:
    return len(platform.received) >= count


async def test_feedback_unsatisfied_reopens_to_the_department(api, seeded):
    base, key = api
    other = await new_client(seeded.engine, name="城市App")
    officer = Actor.staff(seeded.dept_staff["water"])
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        ref = (await http.post("/requests.json", data=work_order(key, "GD-F"))).json()[0][
            "service_request_id"
        ]
        early = await http.post(
            f"/requests/{ref}/feedback.json", data={"api_key": key, "rating": "satisfied"}
        )
        async with session_scope(seeded.engine) as s:
            case = await cases.get_case_by_ref(s, ref)
            await cases.sign_for(s, case.id, officer, now(), rules=seeded.rules)
            await cases.resolve(s, case.id, officer, "已修复", now(), rules=seeded.rules)
        foreign = await http.post(
            f"/requests/{ref}/feedback.json", data={"api_key": other, "rating": "satisfied"}
        )
        bad = await http.post(
            f"/requests/{ref}/feedback.json", data={"api_key": key, "rating": "great"}
        )
        reopened = await http.post(
            f"/requests/{ref}/feedback.json",
            data={"api_key": key, "rating": "unsatisfied", "comment": "水管还在漏"},
        )
    assert (early.status_code, foreign.status_code, bad.status_code) == (409, 403, 400)
    assert reopened.status_code == 200 and reopened.json()[0]["status"] == "open"
    async with session_scope(seeded.engine) as s:
        case = await cases.get_case_by_ref(s, ref)
        posts = (
            await s.exec(
                select(Outbox).where(Outbox.case_id == case.id, Outbox.key.contains("reopened"))
            )
        ).all()
    assert case.status == DISPATCHED and case.satisfaction == "unsatisfied"
    assert [p.kind for p in posts] == ["department"]  # to the 水务局 group, none to a reporter
