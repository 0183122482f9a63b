"""Schemathesis: property-based requests against the Open311 API, checked against its own
OpenAPI document (no 5xx, documented statuses, content types and response schemas).

The API runs in uvicorn on a thread of its own (schemathesis calls it synchronously) on a real
SQLite file with config.toml's reference data, one case and one API client. Valid API keys
are put into half the generated requests, so the checks reach past authentication.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings

from models import apiclients, cases, reference
from models.engine import create_all, make_engine, session_scope
from tests.web.test_open311 import api_settings
from web.app import EmbeddedServer, create_app
from whistle.config import DEFAULT_CONFIG, load_settings

pytest_plugins = ["tests.test_bot_kit"]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@pytest.fixture(scope="module")
def live_api(tmp_path_factory, model_path):
    """(base URL, API key) of the Open311 API served on a thread until the module ends."""
    base = load_settings(DEFAULT_CONFIG, env={})
    settings = api_settings(base, model_path, callbacks=False)
    db = tmp_path_factory.mktemp("o311") / "whistle.db"
    found: dict = {}
    ready = threading.Event()

    async def serve() -> None:
        engine = make_engine(f"sqlite+aiosqlite:///{db}")
        await create_all(engine)
        async with session_scope(engine) as s:
            await reference.sync_reference_data(s, settings)
            _, found["key"] = await apiclients.add_client(s, "schema", _now())
            case = await cases.create_case(
                s, reporter_telegram_id=1001, now=_now(), text="路灯不亮，晚上很黑"
            )
            found["ref"] = case.ref
        server = EmbeddedServer(
            uvicorn.Config(
                create_app(settings, engine=engine, clock=_now),
                host="127.0.0.1",
                port=0,
                log_level="warning",
                lifespan="on",
            )
        )
        found["server"] = server
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        found["url"] = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        ready.set()
        await task
        await engine.dispose()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(60), "the API did not start"
    yield found
    found["server"].should_exit = True
    thread.join(30)


def _with_real_key(case, key: str) -> None:
    """Half the cases carry the real key (chosen by the generated data, so reproducible)."""
    for container in (case.query, case.body):
        if (
            isinstance(container, dict)
            and isinstance(container.get("api_key"), str)
            and len(container["api_key"]) % 2 == 0
        ):
            container["api_key"] = key


def _check(case, live_api) -> None:
    _with_real_key(case, live_api["key"])
    if (
        case.path_parameters
        and "service_request_id" in case.path_parameters
        and len(case.path_parameters["service_request_id"]) % 3 == 0
    ):
        case.path_parameters["service_request_id"] = live_api["ref"]
    case.call_and_validate()


def test_open311_conforms_to_its_openapi(live_api):
    schema = schemathesis.openapi.from_url(f"{live_api['url']}/open311/v2/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 8
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def conforms(case) -> None:
            _check(case, live_api)

        conforms()
