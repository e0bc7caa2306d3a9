"""Errors as values for both HTTP surfaces: `{"error": {"code", "message"}}`."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from jarvisd.errors import DomainError


class ApiError(Exception):
    """An error a client can act on, with the HTTP status that fits it."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def error_response(status: int, code: str, message: str, **details: Any) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    body.update(details)
    return web.json_response({"error": body}, status=status, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


def json_ok(value: Any, status: int = 200) -> web.Response:
    return web.json_response(value, status=status, dumps=_dumps)


def bad_request(message: str, **details: Any) -> ApiError:
    return ApiError(400, "bad_request", message, **details)


# HTTP statuses aiohttp raises itself, mapped to our codes.
HTTP_CODES = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
    507: "storage_full",
}


# Domain error codes (jarvisd.errors.DomainError) to statuses: the only place they meet.
STATUS_BY_CODE = {
    "bad_request": 400,
    "question_too_long": 400,
    "query_too_long": 400,
    "limit_out_of_range": 400,
    "out_of_range": 400,
    "not_found": 404,
    "conflict": 409,
    "graph_backend_error": 502,
    "graph_unavailable": 503,
    "storage_full": 507,
    "storage_read_only": 503,
    "busy": 429,
    "unavailable": 503,
}


def from_domain(error: DomainError) -> ApiError:
    """The reply for a service's error: its code and message, the status that fits the code."""
    return ApiError(STATUS_BY_CODE.get(error.code, 500), error.code, error.message, **error.details)
