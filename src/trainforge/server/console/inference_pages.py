"""The console's endpoint and transform-job pages: lists beside the training jobs, one page each, full logs.

Pages need a session, as the jobs pages do. Unknown endpoints and jobs, and other users' for a user who is not an
admin, answer the same 404 page. Installed before :mod:`~trainforge.server.console.pages`, whose catch-all 404
route would otherwise answer these addresses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import Engine

from trainforge.errors import NotFoundError
from trainforge.server.console import inference_views as iv
from trainforge.server.console.render import SECURITY_HEADERS, error_page, page, principal_of, require_session
from trainforge.server.console.session import ConsoleSession
from trainforge.service.endpoints import EndpointService
from trainforge.service.transforms import TransformService
from trainforge.store.records import LogRecord

router = APIRouter(include_in_schema=False)
LOG_PAGE = 5000


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


def _log_text(read: Callable[[int], list[LogRecord]], name: str) -> StreamingResponse:
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
    status = _status(request, iv.ENDPOINT_STATUSES)
    rows = iv.endpoint_rows(_endpoints(request), principal_of(session), status)
    context = {"rows": rows, "statuses": iv.ENDPOINT_STATUSES, "status": status}
    return page(request, "endpoints.html", context, session=session)


@router.get("/console/endpoints/{name}")
def endpoint_page(name: str, request: Request, session: ConsoleSession = Depends(require_session)) -> Response:
    """One endpoint: status, config, model and its training job, instances, metric totals, recent log lines."""
    try:
        data = iv.endpoint_page(_endpoints(request), _engine(request), name, principal_of(session))
    except NotFoundError:
        return _not_found(request, "Endpoint", name)
    return page(request, "endpoint.html", {**data, "name": name}, session=session)


@router.get("/console/endpoints/{name}/log.txt")
def endpoint_log(name: str, request: Request, session: ConsoleSession = Depends(require_session)) -> Response:
    """Every log line of the endpoint, all its lives, as plain text (kept after it is deleted)."""
    svc, viewer = _endpoints(request), principal_of(session)
    try:
        svc.logs(name, viewer, cursor=0, limit=1, host=None)
    except NotFoundError:
        return _not_found(request, "Endpoint", name)
    return _log_text(lambda cursor: svc.logs(name, viewer, cursor=cursor, limit=LOG_PAGE, host=None)[0], name)


# -- transform jobs -------------------------------------------------------------------------------------------


@router.get("/console/transform-jobs")
def transform_jobs_list(request: Request, session: ConsoleSession = Depends(require_session)) -> Response:
    """The signed-in user's transform jobs (an admin's: everyone's), newest first; ``?status=`` keeps one."""
    status = _status(request, iv.TRANSFORM_STATUSES)
    rows = iv.transform_rows(_transforms(request), principal_of(session), status)
    context = {"rows": rows, "statuses": iv.TRANSFORM_STATUSES, "status": status}
    return page(request, "transform_jobs.html", context, session=session)


@router.get("/console/transform-jobs/{name}")
def transform_job_page(name: str, request: Request, session: ConsoleSession = Depends(require_session)) -> Response:
    """One transform job: status, input, output, resources, model and its training job, recent log lines."""
    try:
        data = iv.transform_page(_transforms(request), _engine(request), name, principal_of(session))
    except NotFoundError:
        return _not_found(request, "Transform job", name)
    return page(request, "transform_job.html", {**data, "name": name}, session=session)


@router.get("/console/transform-jobs/{name}/log.txt")
def transform_job_log(name: str, request: Request, session: ConsoleSession = Depends(require_session)) -> Response:
    """Every log line of the transform job as plain text."""
    svc, viewer = _transforms(request), principal_of(session)
    try:
        svc.owned(name, viewer)
    except NotFoundError:
        return _not_found(request, "Transform job", name)
    return _log_text(lambda cursor: svc.logs(name, viewer, cursor=cursor, limit=LOG_PAGE, host=None)[1], name)
