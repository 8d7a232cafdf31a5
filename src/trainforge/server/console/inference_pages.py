"""The console's endpoint and transform-job pages: lists beside the training jobs, one page each, full logs.

Pages need a session, as the jobs pages do. Unknown endpoints and jobs, and other users' for a user who is not an
admin, answer the same 404 page. Installed before :mod:`~trainforge.server.console.pages`, whose catch-all 404
route would otherwise answer these addresses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import Engine

from trainforge.errors import NotFoundError
from trainforge.server.console import inference_views as iv
from trainforge.server.console.render import SECURITY_HEADERS, error_page, page, principal_of, require_session
from trainforge.server.console.session import ConsoleSession
from trainforge.service.endpoints import EndpointService
from trainforge.service.principal import Principal
from trainforge.service.transforms import TransformService
from trainforge.store.records import LogRecord

router = APIRouter(include_in_schema=False)
LOG_PAGE = 5000
_Svc = TypeVar("_Svc", EndpointService, TransformService)


def _endpoints(request: Request) -> EndpointService:
    svc: EndpointService = request.app.state.endpoints
    return svc


def _transforms(request: Request) -> TransformService:
    svc: TransformService = request.app.state.transforms
    return svc


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.store.engine
    return engine


def _not_found(request: Request, what: str, name: str) -> Response:
    return error_page(
        request, status_code=404, title=f"{what} not found", message=f"There is no {what.lower()} named “{name}” here."
    )


def _status(request: Request, known: list[str]) -> str:
    status = request.query_params.get("status", "")
    return status if status in known else ""


def _list_page(
    request: Request,
    session: ConsoleSession,
    template: str,
    statuses: list[str],
    rows: Callable[[_Svc, Principal, str], list[dict[str, Any]]],
    svc: _Svc,
) -> Response:
    """A list page: the viewer's ``rows(svc, viewer, status)``, ``?status=`` kept when it is one of ``statuses``."""
    status = _status(request, statuses)
    context = {"rows": rows(svc, principal_of(session), status), "statuses": statuses, "status": status}
    return page(request, template, context, session=session)


def _detail_page(
    request: Request,
    session: ConsoleSession,
    template: str,
    what: str,
    name: str,
    load: Callable[[_Svc, Engine, str, Principal], Mapping[str, Any]],
    svc: _Svc,
) -> Response:
    """One resource's page from ``load(svc, engine, name, viewer)``; the 404 page naming ``what`` when it is not
    the viewer's."""
    try:
        data = load(svc, _engine(request), name, principal_of(session))
    except NotFoundError:
        return _not_found(request, what, name)
    return page(request, template, {**data, "name": name}, session=session)


def _log_download(
    request: Request, what: str, name: str, check: Callable[[], object], read: Callable[[int], list[LogRecord]]
) -> Response:
    """Every line ``read(cursor)`` pages out, as a plain-text download; the 404 page when ``check()`` finds no
    such ``what`` for the viewer."""
    try:
        check()
    except NotFoundError:
        return _not_found(request, what, name)

    def chunks() -> Iterator[bytes]:
        cursor = 0
        while True:
            lines = read(cursor)
            if not lines:
                return
            yield "".join(f"[{r.host}] {r.message.rstrip(chr(10))}\n" for r in lines).encode()
            cursor = lines[-1].cursor

    headers = {**SECURITY_HEADERS, "Content-Disposition": f'inline; filename="{name}.log"'}
    return StreamingResponse(chunks(), media_type="text/plain; charset=utf-8", headers=headers)


# -- endpoints ------------------------------------------------------------------------------------------------


@router.get("/console/endpoints")
def endpoints_list(request: Request, session: ConsoleSession = Depends(require_session)) -> Response:
    """The signed-in user's endpoints (an admin's: everyone's), newest first; ``?status=`` keeps one status."""
    return _list_page(request, session, "endpoints.html", iv.ENDPOINT_STATUSES, iv.endpoint_rows, _endpoints(request))


@router.get("/console/endpoints/{name}")
def endpoint_page(name: str, request: Request, session: ConsoleSession = Depends(require_session)) -> Response:
    """One endpoint: status, config, model and its training job, instances, metric totals, recent log lines."""
    return _detail_page(request, session, "endpoint.html", "Endpoint", name, iv.endpoint_page, _endpoints(request))


@router.get("/console/endpoints/{name}/log.txt")
def endpoint_log(name: str, request: Request, session: ConsoleSession = Depends(require_session)) -> Response:
    """Every log line of the endpoint, all its lives, as plain text (kept after it is deleted)."""
    svc, viewer = _endpoints(request), principal_of(session)
    return _log_download(
        request,
        "Endpoint",
        name,
        lambda: svc.logs(name, viewer, cursor=0, limit=1, host=None),
        lambda cursor: svc.logs(name, viewer, cursor=cursor, limit=LOG_PAGE, host=None)[0],
    )


# -- transform jobs -------------------------------------------------------------------------------------------


@router.get("/console/transform-jobs")
def transform_jobs_list(request: Request, session: ConsoleSession = Depends(require_session)) -> Response:
    """The signed-in user's transform jobs (an admin's: everyone's), newest first; ``?status=`` keeps one."""
    return _list_page(
        request, session, "transform_jobs.html", iv.TRANSFORM_STATUSES, iv.transform_rows, _transforms(request)
    )


@router.get("/console/transform-jobs/{name}")
def transform_job_page(name: str, request: Request, session: ConsoleSession = Depends(require_session)) -> Response:
    """One transform job: status, input, output, resources, model and its training job, recent log lines."""
    return _detail_page(
        request, session, "transform_job.html", "Transform job", name, iv.transform_page, _transforms(request)
    )


@router.get("/console/transform-jobs/{name}/log.txt")
def transform_job_log(name: str, request: Request, session: ConsoleSession = Depends(require_session)) -> Response:
    """Every log line of the transform job as plain text."""
    svc, viewer = _transforms(request), principal_of(session)
    return _log_download(
        request,
        "Transform job",
        name,
        lambda: svc.owned(name, viewer),
        lambda cursor: svc.logs(name, viewer, cursor=cursor, limit=LOG_PAGE, host=None)[1],
    )
