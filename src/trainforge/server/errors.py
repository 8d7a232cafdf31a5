"""Map every error to the JSON body of DESIGN §6; never a traceback in a response."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from trainforge.errors import AuthError, NotFoundError, TrainforgeError, ValidationError

log = logging.getLogger("trainforge.server")


def _field(loc: tuple[object, ...]) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(body)"


ERROR_BODY_SCHEMA: dict[str, Any] = {
    "title": "ErrorBody",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "description": "Stable error code, e.g. ValidationException"},
                "message": {"type": "string"},
                "details": {"type": "object", "description": "``field`` names the offending field, if any"},
            },
        }
    },
}
"""The JSON body of every error reply (DESIGN §6)."""

API_ERRORS: dict[str, str] = {
    "400": "ValidationException: the request broke a rule; details.field names the field",
    "401": "AccessDenied: missing, unknown, expired or revoked token",
    "403": "PermissionDenied: the caller may not do this (e.g. an admin-only route)",
    "404": "ResourceNotFound: no such resource (another user's job reads as unknown)",
    "409": "ResourceInUse: the request conflicts with the current state",
}
"""The error replies every ``/v1`` route may give, as documented in the OpenAPI schema."""


def document_errors(app: FastAPI) -> None:
    """Make ``app``'s OpenAPI schema tell the truth about errors and authentication.

    FastAPI documents a 422 that this server never sends (request validation answers 400, see :func:`install`)
    and no security at all. Every ``/v1`` operation instead lists :data:`API_ERRORS` with
    :data:`ERROR_BODY_SCHEMA` and requires a bearer token (a user's token, or a job's agent token on
    ``/v1/agent/...``).
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's own 422 body, never sent
            schemas.pop(unused, None)
        schemas["ErrorBody"] = ERROR_BODY_SCHEMA
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        for path, operations in schema.get("paths", {}).items():
            if not path.startswith("/v1/"):
                continue
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                for code, description in API_ERRORS.items():
                    responses.setdefault(code, {"description": description, "content": error_ref})
                operation["security"] = [{"bearer": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allow(request: Request) -> dict[str, str]:
    """The ``Allow`` header of a 405: every method some route serves at this path (Starlette's own 405 names only
    the first matching route's methods, or none through an included router)."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    ]
    return {"Allow": ", ".join(allowed)} if allowed else {}


def install(app: FastAPI) -> None:
    """Register the handlers on ``app`` and document the error replies in its OpenAPI schema."""
    document_errors(app)

    @app.exception_handler(TrainforgeError)
    async def _ours(_request: Request, exc: TrainforgeError) -> JSONResponse:
        if exc.http_status >= 500:
            log.error("%s: %s", type(exc).__name__, exc.message)
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthError) else None
        return JSONResponse(exc.to_body(), status_code=exc.http_status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = tuple(err.get("loc", ()))
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            if err.get("type") == "json_invalid":
                msg = f"the request body is not valid JSON ({err.get('ctx', {}).get('error', 'parse error')})"
                loc = ("body",)
            elif err.get("type") == "extra_forbidden":
                msg = "is not a known field (check its spelling; names are SageMaker's, e.g. 'HyperParameters')"
            elif err.get("type") == "missing" and loc == ("body",):
                msg = "a JSON request body is required"
            problems.append({"field": _field(loc), "message": msg})
        first = problems[0] if problems else {"field": "(body)", "message": "invalid request"}
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        err = ValidationError(
            f"{first['field']}: {first['message']}{more}",
            field=first["field"],
            details={"problems": problems},
        )
        return JSONResponse(err.to_body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err: TrainforgeError
        if exc.status_code == 404:
            err = NotFoundError("no such route")
        elif exc.status_code == 405:
            err = ValidationError("method not allowed on this route", field="(method)")
            return JSONResponse(err.to_body(), status_code=405, headers=_allow(request))
        else:
            err = TrainforgeError(str(exc.detail))
            return JSONResponse(err.to_body(), status_code=exc.status_code)
        return JSONResponse(err.to_body(), status_code=err.http_status)

    @app.exception_handler(json.JSONDecodeError)
    async def _json(_request: Request, exc: json.JSONDecodeError) -> JSONResponse:
        err = ValidationError(f"(body): the request body is not valid JSON ({exc.msg})", field="(body)")
        return JSONResponse(err.to_body(), status_code=400)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        err = TrainforgeError("internal error; see the server log for details")
        return JSONResponse(err.to_body(), status_code=500)
