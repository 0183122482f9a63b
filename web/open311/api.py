"""The Open311 GeoReport v2 endpoints (/open311/v2/…), JSON or XML by the path's suffix.

GET discovery, services, services/{code}, requests, requests/{id}, servicerequestupdates
(mySociety's extension; the client's own cases) and openapi.json; POST requests (a client's
work order becomes a case through bot.actions.submit_report, the bot's own create path) and
POST requests/{id}/feedback (the caller's 回访 answer). Every refusal is an Open311 error
list with the HTTP status the spec gives it.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.texts import open311 as t
from models import apiclients, cases, deadlines, open311, people, reference
from models.engine import session_scope
from models.lifecycle import CaseError, IllegalTransition
from models.open311 import Privacy, RequestQuery
from models.tables import ApiClient
from models.validation import InvalidInput, normalize_phone
from web.open311.xml import to_xml
from whistle.config import Open311Settings

log = logging.getLogger(__name__)

FORMATS = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}
# Field limits of POST requests (characters), beyond the description's own limit.
LIMITS = {
    "address_string": 300,
    "external_id": 100,
    "first_name": 50,
    "last_name": 50,
    "email": 200,
    "device_id": 100,
    "account_id": 100,
    "media_url": 500,
    "service_code": 40,
    "comment": 1000,
}
MAX_MEDIA = 5
CACHE_SECONDS = 5.0
_CALLER_FIELDS = ("first_name", "last_name", "phone", "email", "device_id", "account_id")


class ApiError(Exception):
    """A refusal: HTTP status and the description the client is given."""

    def __init__(self, status: int, description: str, headers: dict | None = None):
        super().__init__(description)
        self.status, self.description, self.headers = status, description, headers or {}


class RateLimiter:
    """A token bucket per API client: `rate` requests a second on average, `burst` at once."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[int, tuple[float, float]] = {}

    def wait_seconds(self, client_id: int) -> float:
        """0 and one token taken if the client may go on now; else how long until it may."""
        now = self.clock()
        tokens, at = self._buckets.get(client_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= 1:
            self._buckets[client_id] = (tokens - 1, now)
            return 0.0
        self._buckets[client_id] = (tokens, now)
        return (1 - tokens) / self.rate


@dataclass
class Open311:
    """What the handlers share (the sub-app's state.open311)."""

    settings: Any
    engine: AsyncEngine
    clock: Callable[[], datetime]
    options: Open311Settings
    privacy: Privacy
    limiter: RateLimiter
    max_body: int
    services_factory: Callable[[], Any] | None = None
    _services: Any = field(default=None, init=False)
    # Keys and service codes are read once per CACHE_SECONDS, not once per request: a
    # revoked key stops working within that time.
    _clients: dict[str, tuple[float, ApiClient | None]] = field(default_factory=dict, init=False)
    _codes: tuple[float, frozenset[str]] = field(default=(0.0, frozenset()), init=False)

    async def client_for(self, key: str) -> ApiClient | None:
        """The active client holding `key` (cached for CACHE_SECONDS)."""
        now = time.monotonic()
        cached = self._clients.get(key)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        async with session_scope(self.engine) as session:
            client = await apiclients.authenticate(session, key)
        if len(self._clients) > 10_000:  # garbage keys must not grow it without bound
            self._clients.clear()
        self._clients[key] = (now, client)
        return client

    async def service_codes(self) -> frozenset[str]:
        """Codes of the active departments (cached for CACHE_SECONDS)."""
        now = time.monotonic()
        if now - self._codes[0] >= CACHE_SECONDS:
            async with session_scope(self.engine) as session:
                codes = frozenset(d.code for d in await open311.active_departments(session))
            self._codes = (now, codes)
        return self._codes[1]

    @classmethod
    def from_settings(
        cls,
        settings,
        engine: AsyncEngine,
        clock: Callable[[], datetime],
        services_factory: Callable[[], Any] | None = None,
    ) -> Open311:
        options = settings.open311
        return cls(
            settings=settings,
            engine=engine,
            clock=clock,
            options=options,
            privacy=Privacy(
                exact_location=options.public_exact_location, show_address=options.public_address
            ),
            limiter=RateLimiter(options.rate_per_second, options.rate_burst),
            max_body=options.max_body_bytes,
            services_factory=services_factory,
        )

    def services(self):
        """The bot's Services (classifier included), built on first use: only POST needs it."""
        if self._services is None:
            if self.services_factory is not None:
                self._services = self.services_factory()
            else:
                from bot.services import Services

                # The app's own database: Services makes its own engines, which on SQLite run
                # statements in place (no thread hop per statement, as the bot does).
                own = (
                    self.engine.url.render_as_string(hide_password=False)
                    == self.settings.database_url
                )
                self._services = Services.from_settings(
                    self.settings, engine=None if own else self.engine, clock=self.clock
                )
        return self._services

    @property
    def max_text(self) -> int:
        return self.settings.conversation.max_text_chars

    @property
    def rules(self) -> deadlines.Rules:
        return (
            self.services().rules
            if self._services
            else deadlines.Rules.from_settings(self.settings)
        )

    def local(self, value: datetime | None) -> str:
        """ISO 8601 in district time with its offset, as Open311 wants."""
        if value is None:
            return ""
        return self.rules.calendar.to_local(value).isoformat(timespec="seconds")

    def parse_time(self, name: str, raw: str | None) -> datetime | None:
        """An ISO 8601 time as naive UTC (no offset given: district time)."""
        if not raw:
            return None
        try:  # RFC 3339 allows a lower-case t and z
            value = datetime.fromisoformat(raw.strip().upper())
        except ValueError:
            raise ApiError(400, t.BAD_DATE.format(name=name)) from None
        if value.tzinfo is None:
            value = value.replace(tzinfo=self.rules.calendar.tz)
        return value.astimezone(UTC).replace(tzinfo=None)


def _state(request: Request) -> Open311:
    return request.app.state.open311


def _format(request: Request) -> str:
    fmt = request.path_params.get("fmt", "json")
    if fmt not in FORMATS:
        raise ApiError(404, t.BAD_FORMAT)
    return fmt


def render(
    fmt: str,
    data: Any,
    *,
    root: str,
    item: str | None = None,
    status: int = 200,
    headers: dict | None = None,
) -> Response:
    """JSON as the data is; XML with `root` around it (and `item` around each list entry)."""
    if fmt == "xml":
        return Response(
            to_xml(data, root, item), status_code=status, headers=headers, media_type=FORMATS["xml"]
        )
    return JSONResponse(data, status_code=status, headers=headers)


def error_response(
    fmt: str, status: int, description: str, headers: dict | None = None
) -> Response:
    return render(
        fmt if fmt in FORMATS else "json",
        [{"code": status, "description": description}],
        root="errors",
        item="error",
        status=status,
        headers=headers,
    )


def endpoint(handler):
    """Turn ApiError, bad input and a database outage into Open311 error bodies."""

    async def wrapped(request: Request) -> Response:
        fmt = request.path_params.get("fmt", "json")
        try:
            return await handler(request, _format(request))
        except ApiError as exc:
            return error_response(fmt, exc.status, exc.description, exc.headers)
        except InvalidInput as exc:
            return error_response(fmt, 400, str(exc))
        except SQLAlchemyError:
            log.exception("Open311: database error")
            return error_response(fmt, 503, t.DATABASE_BUSY, {"Retry-After": "5"})

    wrapped.__name__ = handler.__name__
    return wrapped


# ---------------------------------------------------------------- parameters


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _one(params: dict[str, list[str]], name: str) -> str | None:
    """A parameter's (last) value, stripped; None if empty."""
    values = params.get(name)
    value = values[-1].strip() if values else ""
    if _CONTROL.search(value):
        raise ApiError(400, t.CONTROL_CHARS.format(name=name))
    limit = LIMITS.get(name)
    if limit and len(value) > limit:
        raise ApiError(400, t.TOO_LONG.format(name=name, limit=limit))
    return value or None


def _int(params: dict, name: str, default: int, low: int, high: int) -> int:
    raw = _one(params, name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise ApiError(400, t.BAD_NUMBER.format(name=name))
    value = int(raw)
    if not low <= value <= high:
        raise ApiError(400, t.BAD_RANGE.format(name=name))
    return value


def _float(params: dict, name: str, low: float, high: float) -> float | None:
    raw = _one(params, name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, t.BAD_NUMBER.format(name=name)) from None
    if not low <= value <= high:  # also refuses nan
        raise ApiError(400, t.BAD_RANGE.format(name=name))
    return value


def _csv(params: dict, name: str) -> tuple[str, ...]:
    """A comma-separated list (at most 2,000 characters); unknown entries simply match nothing."""
    raw = ",".join(params.get(name, []))
    if len(raw) > 2000:
        raise ApiError(400, t.TOO_LONG.format(name=name, limit=2000))
    return tuple(v.strip() for v in raw.split(",") if v.strip())


def _query_params(request: Request) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    return params


async def _form_params(request: Request, max_body: int) -> dict[str, list[str]]:
    """The query string and the form body together; a body over max_body is refused
    while it is read, whatever Content-Length says."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_body:
        raise ApiError(413, t.TOO_LARGE.format(limit=max_body))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body:
            raise ApiError(413, t.TOO_LARGE.format(limit=max_body))
    params = _query_params(request)
    if body:
        if "json" in request.headers.get("content-type", ""):
            raise ApiError(415, t.BAD_BODY)
        try:
            pairs = parse_qsl(
                body.decode("utf-8"),
                keep_blank_values=True,
                strict_parsing=True,
                max_num_fields=200,
            )
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, t.BAD_BODY) from None
        for key, value in pairs:
            params.setdefault(key, []).append(value)
    return params


async def _client(state: Open311, params: dict) -> ApiClient:
    """The API client whose key came with the request, within its rate limit."""
    # A garbled key is simply not a key (403), whatever characters it holds.
    key = (params.get("api_key") or [""])[-1].strip()
    if not key:
        raise ApiError(401, t.API_KEY_MISSING)
    client = await state.client_for(key[:200])
    if client is None:
        raise ApiError(403, t.API_KEY_BAD)
    wait = state.limiter.wait_seconds(client.id)
    if wait > 0:
        raise ApiError(429, t.RATE_LIMITED, {"Retry-After": str(max(1, round(wait)))})
    return client


# ---------------------------------------------------------------- reading


@endpoint
async def discovery(request: Request, fmt: str) -> Response:
    state = _state(request)
    base = str(request.url_for("open311_root")).rstrip("/") + "/"
    data = {
        "changeset": "2026-12-05T00:00:00+08:00",
        "contact": t.DISCOVERY_CONTACT.format(district=state.settings.district.name),
        "key_service": "whistle apikey add NAME",
        "endpoints": [
            {
                "specification": "http://wiki.open311.org/GeoReport_v2",
                "url": base,
                "changeset": "2026-12-05T00:00:00+08:00",
                "type": "production",
                "formats": ["application/json", "text/xml"],
            }
        ],
    }
    return render(fmt, data, root="discovery")


def _service(dept) -> dict:
    return {
        "service_code": dept.code,
        "service_name": dept.name,
        "description": dept.description or dept.name,
        "metadata": False,
        "type": "realtime",
        "keywords": "",
        "group": "部门",
    }


@endpoint
async def services(request: Request, fmt: str) -> Response:
    async with session_scope(_state(request).engine) as session:
        depts = await open311.active_departments(session)
    return render(fmt, [_service(d) for d in depts], root="services", item="service")


@endpoint
async def service_definition(request: Request, fmt: str) -> Response:
    code = request.path_params["code"]
    async with session_scope(_state(request).engine) as session:
        dept = await reference.get_department(session, code)
    if dept is None or not dept.active:
        raise ApiError(404, t.NO_SUCH_SERVICE)
    return render(fmt, {"service_code": dept.code, "attributes": []}, root="service_definition")


async def _public(state: Open311, session, cases) -> list[dict]:
    names = await open311.department_names(session)
    reasons = await open311.not_accepted_reasons(
        session, [c.id for c in cases if c.status == "not_accepted"]
    )
    return [
        open311.public_request(c, names, state.privacy, state.local, reasons.get(c.id))
        for c in cases
    ]


def request_query(state: Open311, params: dict) -> RequestQuery:
    status = _one(params, "status")
    if status not in (None, open311.OPEN, open311.CLOSED_311):
        raise ApiError(400, t.BAD_STATUS)
    page_size = _int(params, "page_size", 0, 1, 200) or _int(params, "max_requests", 50, 1, 200)
    return RequestQuery(
        ids=tuple(cases.normalize_ref(i) for i in _csv(params, "service_request_id")),
        service_codes=_csv(params, "service_code"),
        status=status,
        start=state.parse_time("start_date", _one(params, "start_date")),
        end=state.parse_time("end_date", _one(params, "end_date")),
        page=_int(params, "page", 1, 1, 100_000),
        page_size=page_size,
    )


async def list_requests(request: Request, fmt: str) -> Response:
    state = _state(request)
    query = request_query(state, _query_params(request))
    async with session_scope(state.engine) as session:
        cases = await open311.find_requests(session, query)
        data = await _public(state, session, cases)
    return render(fmt, data, root="service_requests", item="request")


@endpoint
async def one_request(request: Request, fmt: str) -> Response:
    state = _state(request)
    ref = cases.normalize_ref(request.path_params["rid"])
    async with session_scope(state.engine) as session:
        case = await cases.get_case_by_ref(session, ref) if len(ref) <= 32 else None
        if case is None or case.status == "merged":
            raise ApiError(404, t.NO_SUCH_REQUEST)
        data = await _public(state, session, [case])
    return render(fmt, data, root="service_requests", item="request")


@endpoint
async def updates(request: Request, fmt: str) -> Response:
    state = _state(request)
    params = _query_params(request)
    client = await _client(state, params)
    start = state.parse_time("start_date", _one(params, "start_date"))
    end = state.parse_time("end_date", _one(params, "end_date"))
    limit = _int(params, "max_updates", 1000, 1, 1000)
    async with session_scope(state.engine) as session:
        rows = await open311.client_updates(session, client.id, start, end, limit)
    data = [open311.update_record(e, c, state.local) for e, c in rows]
    return render(fmt, data, root="service_request_updates", item="request_update")


# ---------------------------------------------------------------- writing


def _media(params: dict) -> list[str]:
    urls = [u.strip() for u in params.get("media_url", []) if u.strip()]
    if len(urls) > MAX_MEDIA:
        raise ApiError(400, t.TOO_MANY.format(name="media_url", limit=MAX_MEDIA))
    for url in urls:
        parts = urlsplit(url)
        if (
            len(url) > LIMITS["media_url"]
            or parts.scheme not in ("http", "https")
            or not parts.netloc
        ):
            raise ApiError(400, t.BAD_URL)
    return urls


def _caller(params: dict) -> dict | None:
    caller = {
        name: value for name in _CALLER_FIELDS if name != "phone" and (value := _one(params, name))
    }
    if raw_phone := (params.get("phone") or [""])[-1].strip():
        try:
            caller["phone"] = normalize_phone(raw_phone[:40])
        except InvalidInput:
            raise ApiError(400, t.BAD_PHONE) from None
    return caller or None


def _in_district(settings, lat: float, lon: float) -> bool:
    bbox = settings.district.bbox
    if not bbox:
        return True
    lon_min, lat_min, lon_max, lat_max = bbox
    return lon_min <= lon <= lon_max and lat_min <= lat <= lat_max


def work_order(state: Open311, client: ApiClient, params: dict):
    """The ReportDraft a POST describes, checked field by field."""
    from bot.actions import ReportDraft

    description = _one(params, "description")
    if description is None:
        raise ApiError(400, t.NEED_DESCRIPTION)
    if len(description) > state.max_text:
        raise ApiError(400, t.TOO_LONG.format(name="description", limit=state.max_text))
    lat, lon = _float(params, "lat", -90, 90), _float(params, "long", -180, 180)
    address = _one(params, "address_string")
    if (lat is None) != (lon is None) or (lat is None and address is None):
        raise ApiError(400, t.NEED_PLACE)
    external_id = _one(params, "attribute[external_id]") or _one(params, "external_id")
    if external_id and len(external_id) > LIMITS["external_id"]:
        raise ApiError(400, t.TOO_LONG.format(name="external_id", limit=LIMITS["external_id"]))
    origin = {
        "channel": client.channel,
        "api_client_id": client.id,
        "external_id": external_id,
        "caller": _caller(params),
    }
    return ReportDraft(
        nonce=secrets.randbits(62),
        text=description,
        photos=_media(params),
        latitude=lat,
        longitude=lon,
        address=address,
        out_of_area=lat is not None and not _in_district(state.settings, lat, lon),
        origin=origin,
        department=_one(params, "service_code"),
        idempotency_key=f"o311:{client.id}:{external_id}" if external_id else None,
    )


async def post_request(request: Request, fmt: str) -> Response:
    state = _state(request)
    params = await _form_params(request, state.max_body)
    client = await _client(state, params)
    draft = work_order(state, client, params)
    services = state.services()
    if draft.department is not None and draft.department not in await state.service_codes():
        raise ApiError(400, t.NO_SUCH_SERVICE)
    from bot.actions import submit_report

    case, new = await submit_report(
        services,
        telegram_id=apiclients.client_reporter_id(client.id),
        display_name=f"{client.name}（接口）",
        draft=draft,
    )
    if case.external_id != draft.origin["external_id"]:
        raise ApiError(409, t.EXTERNAL_CONFLICT)
    if new:  # create_case made the stand-in reporter reachable: it never is (no Telegram)
        async with services.session() as session:
            await people.set_reporter_reachable(
                session, apiclients.client_reporter_id(client.id), False
            )
    data = [
        {
            "service_request_id": case.ref,
            "service_notice": t.NOTICE_ROUTED.format(ref=case.ref),
            "account_id": "",
        }
    ]
    return render(fmt, data, root="service_requests", item="request", status=201 if new else 200)


@endpoint
async def requests_endpoint(request: Request, fmt: str) -> Response:
    if request.method == "POST":
        return await post_request(request, fmt)
    return await list_requests(request, fmt)


@endpoint
async def feedback(request: Request, fmt: str) -> Response:
    """回访 by the client for its caller: satisfied/basic close the case, unsatisfied reopens."""
    state = _state(request)
    params = await _form_params(request, state.max_body)
    client = await _client(state, params)
    rating = _one(params, "rating")
    if rating not in cases.RATINGS:
        raise ApiError(400, t.BAD_RATING)
    services = state.services()
    from bot.survey import submit_rating  # the bot's own: 不满意 goes back to the department

    async with services.session() as session:
        case = await cases.get_case_by_ref(session, request.path_params["rid"])
        if case is None:
            raise ApiError(404, t.NO_SUCH_REQUEST)
        if case.api_client_id != client.id:
            raise ApiError(403, t.NOT_YOURS)
        try:
            case = await submit_rating(
                session,
                services,
                apiclients.client_reporter_id(client.id),
                case.id,
                case.version,
                rating,
                _one(params, "comment"),
                services.clock(),
            )
        except IllegalTransition:
            raise ApiError(409, t.CANNOT_RATE) from None
        except CaseError as exc:
            raise ApiError(400, str(exc)) from None
        data = await _public(state, session, [case])
    return render(fmt, data, root="service_requests", item="request")


async def openapi(request: Request) -> Response:
    from web.open311.openapi import document

    state = _state(request)
    async with session_scope(state.engine) as session:
        codes = tuple(d.code for d in await open311.active_departments(session))
    return JSONResponse(document(codes, state.max_text))


async def not_found(request: Request, exc: Exception | None = None) -> Response:
    return error_response("json", 404, t.NOT_FOUND)


async def not_allowed(request: Request, exc: Exception) -> Response:
    return error_response("json", 405, t.NOT_ALLOWED)


def http_errors() -> dict:
    """Starlette's own 404/405 as Open311 error bodies too."""
    return {404: not_found, 405: not_allowed}


def routes() -> list[Route]:
    return [
        Route("/", not_found, name="open311_root"),
        Route("/openapi.json", openapi),
        Route("/discovery.{fmt}", discovery),
        Route("/services.{fmt}", services),
        Route("/services/{code}.{fmt}", service_definition),
        Route("/requests.{fmt}", requests_endpoint, methods=["GET", "POST"]),
        Route("/requests/{rid}/feedback.{fmt}", feedback, methods=["POST"]),
        Route("/requests/{rid}.{fmt}", one_request),
        Route("/servicerequestupdates.{fmt}", updates),
    ]
