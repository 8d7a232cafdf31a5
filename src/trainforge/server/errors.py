"""Map every error to the JSON body of DESIGN §6; never a traceback in a response."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from trainforge.errors import AuthError, NotFoundError, TrainforgeError, ValidationError

log = logging.getLogger("trainforge.server")


def _field(loc: tuple[object, ...]) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(body)"


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

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
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err: TrainforgeError
        if exc.status_code == 404:
            err = NotFoundError("no such route")
        elif exc.status_code == 405:
            err = ValidationError("method not allowed on this route", field="(method)")
            return JSONResponse(err.to_body(), status_code=405)
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
