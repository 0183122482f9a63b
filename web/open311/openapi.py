"""The OpenAPI 3 description of the Open311 API (served at /open311/v2/openapi.json).

It describes the .json paths; each has an .xml twin with the same parameters (Open311 XML).
tests/web/test_open311_schema.py checks the app against it with schemathesis.
"""

from __future__ import annotations

from functools import cache

_TEXT = {"type": "string"}
_ERRORS = {
    "description": "Open311 错误列表",
    "content": {
        "application/json": {
            "schema": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["code", "description"],
                    "properties": {"code": {"type": "integer"}, "description": _TEXT},
                },
            }
        }
    },
}
_REQUEST = {
    "type": "object",
    "required": ["service_request_id", "status", "requested_datetime"],
    "properties": {
        "service_request_id": _TEXT,
        "status": {"enum": ["open", "closed"]},
        "status_notes": _TEXT,
        "service_name": _TEXT,
        "service_code": _TEXT,
        "description": _TEXT,
        "agency_responsible": _TEXT,
        "service_notice": _TEXT,
        "requested_datetime": _TEXT,
        "updated_datetime": _TEXT,
        "expected_datetime": _TEXT,
        "address": _TEXT,
        "address_id": _TEXT,
        "zipcode": _TEXT,
        "lat": {"type": ["number", "string"]},
        "long": {"type": ["number", "string"]},
        "media_url": _TEXT,
    },
}
_UPDATE = {
    "type": "object",
    "required": ["update_id", "service_request_id", "status"],
    "properties": {
        "update_id": _TEXT,
        "service_request_id": _TEXT,
        "external_id": _TEXT,
        "status": {"enum": ["open", "closed"]},
        "whistle_status": _TEXT,
        "description": _TEXT,
        "updated_datetime": _TEXT,
        "media_url": _TEXT,
    },
}
_SERVICE = {
    "type": "object",
    "required": ["service_code", "service_name"],
    "properties": {
        "service_code": _TEXT,
        "service_name": _TEXT,
        "description": _TEXT,
        "metadata": {"type": "boolean"},
        "type": _TEXT,
        "keywords": _TEXT,
        "group": _TEXT,
    },
}


def _json(description: str, schema: dict) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _param(
    name: str,
    description: str,
    schema: dict | None = None,
    where: str = "query",
    required: bool = False,
) -> dict:
    return {
        "name": name,
        "in": where,
        "required": required,
        "description": description,
        "schema": schema or _TEXT,
    }


def _refusals(*codes: int) -> dict:
    return {str(code): _ERRORS for code in codes}


_API_KEY = _param("api_key", "客户端密钥（whistle apikey add）", required=True)
_TIME = {"type": "string", "format": "date-time"}
_DATES = [
    _param("start_date", "ISO 8601 起始时间", _TIME),
    _param("end_date", "ISO 8601 截止时间", _TIME),
]
_LIST = {"type": "string", "maxLength": 2000}
_CODE = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,40}$"}
_REF = {"type": "string", "pattern": "^[A-Za-z0-9-]{1,32}$"}  # WC-20261124-0007
# Text fields: no control characters (web/open311/api.py refuses them); the free text needs
# at least one letter, digit or Chinese character.
_PLAIN = r"^[^\x00-\x1f\x7f]*$"
_WORDY = r"^[^\x00-\x08\x0b-\x1f\x7f]*[A-Za-z0-9\u4e00-\u9fff][^\x00-\x08\x0b-\x1f\x7f]*$"


def _plain(limit: int) -> dict:
    return {"type": "string", "maxLength": limit, "pattern": _PLAIN}


def _form_fields(service_codes: tuple[str, ...], max_text: int) -> dict:
    return {
        "api_key": _TEXT,
        "service_code": {"enum": list(service_codes)},
        "description": {"type": "string", "minLength": 1, "maxLength": max_text, "pattern": _WORDY},
        "lat": {"type": "number", "minimum": -90, "maximum": 90},
        "long": {"type": "number", "minimum": -180, "maximum": 180},
        "address_string": {"type": "string", "maxLength": 300, "pattern": _WORDY},
        "media_url": {
            "type": "array",
            "maxItems": 5,
            "items": {
                "type": "string",
                "maxLength": 500,
                "pattern": r"^https?://[A-Za-z0-9.-]+(/[A-Za-z0-9._~/-]*)?$",
            },
        },
        "first_name": _plain(50),
        "last_name": _plain(50),
        "email": _plain(200),
        "device_id": _plain(100),
        "account_id": _plain(100),
        "phone": {
            "type": "string",
            "pattern": r"^(1[3-9][0-9]{9}|0(10|2[0-9]|[3-9][0-9]{2})-?[2-9][0-9]{6,7})$",
        },
        "attribute[external_id]": _plain(100),
    }


@cache
def document(service_codes: tuple[str, ...], max_text: int) -> dict:
    """The OpenAPI document for these service codes and description limit (built once)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Whistle Open311 GeoReport v2", "version": "2"},
        "servers": [{"url": "/open311/v2"}],
        "paths": {
            "/discovery.json": {
                "get": {
                    "responses": {
                        "200": _json("服务发现", {"type": "object", "required": ["endpoints"]})
                    }
                }
            },
            "/services.json": {
                "get": {
                    "responses": {
                        "200": _json("服务类型（部门）", {"type": "array", "items": _SERVICE})
                    }
                }
            },
            "/services/{service_code}.json": {
                "get": {
                    "parameters": [
                        _param("service_code", "服务类型", _CODE, where="path", required=True)
                    ],
                    "responses": {"200": _json("服务定义", {"type": "object"}), **_refusals(404)},
                }
            },
            "/requests.json": {
                "get": {
                    "parameters": [
                        _param("service_request_id", "诉求编号，逗号分隔", _LIST),
                        _param("service_code", "服务类型，逗号分隔", _LIST),
                        _param("status", "open 或 closed", {"enum": ["open", "closed"]}),
                        *_DATES,
                        _param(
                            "page", "页码", {"type": "integer", "minimum": 1, "maximum": 100000}
                        ),
                        _param(
                            "page_size",
                            "每页条数",
                            {"type": "integer", "minimum": 1, "maximum": 200},
                        ),
                    ],
                    "responses": {
                        "200": _json("诉求列表", {"type": "array", "items": _REQUEST}),
                        **_refusals(400),
                    },
                },
                "post": {
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/x-www-form-urlencoded": {
                                "schema": {
                                    "type": "object",
                                    "required": ["api_key", "description"],
                                    "properties": _form_fields(service_codes, max_text),
                                    # a place is a point or an address (or both)
                                    "dependentRequired": {"lat": ["long"], "long": ["lat"]},
                                    "anyOf": [
                                        {"required": ["lat", "long"]},
                                        {"required": ["address_string"]},
                                    ],
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": _json(
                            "已受理",
                            {
                                "type": "array",
                                "items": {"type": "object", "required": ["service_request_id"]},
                            },
                        ),
                        "200": _json("同一外部编号已受理过", {"type": "array"}),
                        **_refusals(400, 401, 403, 409, 413, 415, 429, 503),
                    },
                },
            },
            "/requests/{service_request_id}.json": {
                "get": {
                    "parameters": [
                        _param("service_request_id", "诉求编号", _REF, where="path", required=True)
                    ],
                    "responses": {
                        "200": _json("一件诉求", {"type": "array", "items": _REQUEST}),
                        **_refusals(404),
                    },
                }
            },
            "/requests/{service_request_id}/feedback.json": {
                "post": {
                    "parameters": [
                        _param("service_request_id", "诉求编号", _REF, where="path", required=True)
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/x-www-form-urlencoded": {
                                "schema": {
                                    "type": "object",
                                    "required": ["api_key", "rating"],
                                    "properties": {
                                        "api_key": _TEXT,
                                        "comment": _TEXT,
                                        "rating": {"enum": ["satisfied", "basic", "unsatisfied"]},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json("回访已记录", {"type": "array", "items": _REQUEST}),
                        **_refusals(400, 401, 403, 404, 409, 413, 415, 429),
                    },
                }
            },
            "/servicerequestupdates.json": {
                "get": {
                    "parameters": [
                        _API_KEY,
                        *_DATES,
                        _param(
                            "max_updates",
                            "条数上限",
                            {"type": "integer", "minimum": 1, "maximum": 1000},
                        ),
                    ],
                    "responses": {
                        "200": _json("状态变更", {"type": "array", "items": _UPDATE}),
                        **_refusals(400, 401, 403, 429),
                    },
                }
            },
        },
    }
