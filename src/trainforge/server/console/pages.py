"""The console's HTML pages: login, jobs list, job page (with Stop, Clone, artifacts, full log), compare, 404.

Every page but the login page needs a session (else a redirect to the login page). Every form POST needs the
session's CSRF token. Unknown jobs, and other users' jobs for a user who is not an admin, answer the same 404
HTML page; the list and compare pages show the signed-in user's jobs only (an admin's: everyone's).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from functools import partial
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse

from trainforge.errors import AuthError, NotFoundError, StorageError, TrainforgeError, ValidationError
from trainforge.server.console import detail, views
from trainforge.server.console.costs import job_cost_text, prices_of
from trainforge.server.console.listing import PAGE_SIZES, SORTS, STATUSES, ListParams, list_page
from trainforge.server.console.render import (
    BASE,
    SECURITY_HEADERS,
    console_of,
    current_session,
    error_page,
    page,
    principal_of,
    read_form,
    redirect,
    require_session,
    safe_next,
)
from trainforge.server.console.session import ConsoleSession, clear_session_cookie, set_session_cookie
from trainforge.service.jobs import JobService
from trainforge.service.principal import Principal
from trainforge.service.rerun import RerunService
from trainforge.service.users import UserService
from trainforge.store.jobs import JobStore
from trainforge.store.records import JobRecord

router = APIRouter(include_in_schema=False)

NOTICES = {"stop-requested": "Stop requested: the job's code gets SIGTERM, then its artifacts are saved."}
BAD_TICKET = (
    "This sign-in link has expired or was already used. Run 'trainforge console' for a new one, or paste the API token."
)
MAX_CLONE_WARNINGS = 20  # shown on the new job's page after a Clone, carried in its address
MAX_WARNING_CHARS = 600
STALE_FORM = "This form has expired (you signed in again meanwhile). Reload the page and try again."


def _store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


def _svc(request: Request) -> JobService:
    svc: JobService = request.app.state.jobs
    return svc


def _users(request: Request) -> UserService:
    users: UserService = request.app.state.users
    return users


def _owned(request: Request, session: ConsoleSession, name: str) -> JobRecord:
    """The job if the session's user may see it; ``NotFoundError`` (as for an unknown job) otherwise."""
    return _svc(request).owned(name, principal_of(session))


def _job_url(name: str) -> str:
    return f"{BASE}/jobs/{quote(name, safe='')}"


def _no_job(request: Request, name: str) -> Response:
    return error_page(
        request,
        status_code=404,
        title="Training job not found",
        message=f"There is no training job named “{name}” on this server.",
    )


# -- sign in / out ------------------------------------------------------------------------------------


@router.get("/console")
@router.get("/console/")
def console_home() -> Response:
    """The console's entry point: the jobs list."""
    return redirect(f"{BASE}/jobs")


@router.get("/console/login")
def login_form(request: Request, next: str | None = None, ticket: str | None = None) -> Response:
    """The login page; with a valid one-time ``ticket`` it signs the browser in at once."""
    console = console_of(request)
    target = safe_next(next)
    if ticket is not None:
        redeemed = console.sessions.redeem_ticket(ticket)
        try:
            if redeemed is None:
                raise AuthError(BAD_TICKET)
            user, token_id = redeemed
            _users(request).recheck(user, token_id)
        except AuthError as exc:
            return page(request, "login.html", {"error": exc.message, "next": target}, session=None, status_code=401)
        # A page of our own, not a redirect: the next navigation is same-site, so the SameSite=Strict cookie
        # is sent even when the link was opened from another application.
        response = page(request, "signed_in.html", {"next": target}, session=None)
        set_session_cookie(response, request, console.sessions.issue(user, token_id))
        return response
    if current_session(request) is not None:
        return redirect(target)
    return page(request, "login.html", {"error": None, "next": target}, session=None)


@router.post("/console/login", name="ConsoleSignIn")
async def login(request: Request) -> Response:
    """Check the pasted API token (any user's); on success set the session cookie and go on to ``next``."""
    console = console_of(request)
    form = await read_form(request)
    target = safe_next(form.get("next"))
    try:
        who = await to_thread.run_sync(_users(request).authenticate, form.get("token", "").strip() or None)
    except AuthError as exc:
        return page(request, "login.html", {"error": exc.message, "next": target}, session=None, status_code=401)
    request.state.principal = who.principal
    response = redirect(target)
    set_session_cookie(response, request, console.sessions.issue(who.principal.user, who.token_id))
    return response


@router.post("/console/logout", name="ConsoleSignOut")
async def logout(request: Request, session: ConsoleSession = Depends(require_session)) -> Response:
    """Sign out: the session is revoked and its cookie dropped."""
    form = await read_form(request)
    if not console_of(request).sessions.csrf_ok(session, form.get("csrf")):
        return error_page(request, status_code=403, title="Form expired", message=STALE_FORM)
    console_of(request).sessions.revoke(session)
    response = redirect(f"{BASE}/login")
    clear_session_cookie(response, request)
    return response


# -- jobs list and compare ------------------------------------------------------------------------------


@router.get("/console/jobs")
def jobs_list(request: Request, session: ConsoleSession = Depends(require_session)) -> Response:
    """The jobs list: filter by status, search by name, sort, pages; its script refreshes it while jobs run."""
    params = ListParams.parse(request.query_params)
    data = list_page(_store(request), params, viewer=principal_of(session), prices=prices_of(request))
    context = {
        **data,
        "statuses": STATUSES,
        "sorts": SORTS,
        "page_sizes": PAGE_SIZES,
        "page_data": {"query": data["params"].query_string(), "active": data["active"]},
    }
    return page(request, "jobs.html", context, session=session)


@router.get("/console/compare")
def compare(request: Request, session: ConsoleSession = Depends(require_session)) -> Response:
    """Selected jobs (``?job=a&job=b``) side by side, and one metric of all of them on one chart."""
    names = request.query_params.getlist("job")
    data = detail.compare_page(_store(request), names, viewer=principal_of(session))
    return page(request, "compare.html", data, session=session)


# -- one job --------------------------------------------------------------------------------------------


def _job_response(
    request: Request,
    session: ConsoleSession,
    job: JobRecord,
    *,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    context = detail.job_page(_store(request), console_of(request).objects, job, time.time())
    context["cost"] = job_cost_text(job, prices_of(request))
    cloned_from = request.query_params.get("cloned_from")
    warnings = request.query_params.getlist("warning")[:MAX_CLONE_WARNINGS] if cloned_from else []
    context.update(notice=notice, error=error, cloned_from=cloned_from, clone_warnings=warnings)
    return page(request, "job.html", context, session=session, status_code=status_code)


@router.get("/console/jobs/{name}")
def job_page(name: str, request: Request, session: ConsoleSession = Depends(require_session)) -> Response:
    """Everything about one job: record, timeline, live log, metric charts, artifacts, Stop and Clone."""
    try:
        job = _owned(request, session, name)
    except NotFoundError:
        return _no_job(request, name)
    notice = NOTICES.get(request.query_params.get("notice", ""))
    return _job_response(request, session, job, notice=notice)


@router.post("/console/jobs/{name}/stop", name="StopTrainingJob")
async def stop_job(name: str, request: Request, session: ConsoleSession = Depends(require_session)) -> Response:
    """StopTrainingJob from the Stop button; back to the job page."""
    form = await read_form(request)
    if not console_of(request).sessions.csrf_ok(session, form.get("csrf")):
        return error_page(request, status_code=403, title="Form expired", message=STALE_FORM)
    try:
        await to_thread.run_sync(_svc(request).stop, name, principal_of(session))
    except NotFoundError:
        return _no_job(request, name)
    except ValidationError as exc:
        job = await to_thread.run_sync(_store(request).get, name)
        return await to_thread.run_sync(
            partial(_job_response, request, session, job, error=exc.message, status_code=409)
        )
    return redirect(f"{_job_url(name)}?notice=stop-requested")


def _clone(request: Request, job: JobRecord, principal: Principal) -> dict[str, Any]:
    return RerunService(jobs=_svc(request), objects=console_of(request).objects).rerun(job.name, principal)


@router.post("/console/jobs/{name}/clone", name="CloneTrainingJob")
async def clone_job(name: str, request: Request, session: ConsoleSession = Depends(require_session)) -> Response:
    """Rerun the job (its spec, image, code object and data again) as ``<name>-rerun-<n>``; on to the new job's
    page, which shows what changed since the original ran (the rerun's warnings)."""
    form = await read_form(request)
    if not console_of(request).sessions.csrf_ok(session, form.get("csrf")):
        return error_page(request, status_code=403, title="Form expired", message=STALE_FORM)
    try:
        job = await to_thread.run_sync(_owned, request, session, name)
    except NotFoundError:
        return _no_job(request, name)
    try:
        result = await to_thread.run_sync(_clone, request, job, principal_of(session))
    except TrainforgeError as exc:
        return await to_thread.run_sync(
            partial(_job_response, request, session, job, error=f"Clone failed: {exc.message}", status_code=400)
        )
    new_name = str(result["TrainingJobName"])
    request.state.audit_detail = f"new job {new_name}"
    query = [("cloned_from", name)]
    query += [("warning", w[:MAX_WARNING_CHARS]) for w in result["Warnings"][:MAX_CLONE_WARNINGS]]
    return redirect(f"{_job_url(new_name)}?{urlencode(query)}")


@router.get("/console/jobs/{name}/artifacts/{kind}")
def artifact(name: str, kind: str, request: Request, session: ConsoleSession = Depends(require_session)) -> Response:
    """Download the job's ``model.tar.gz``, ``output.tar.gz`` or ``sourcedir.tar.gz`` (nothing else)."""
    try:
        job = _owned(request, session, name)
    except NotFoundError:
        return _no_job(request, name)
    file = views.ARTIFACT_FILES.get(kind)
    uri = views.artifact_uri(job, kind) if file else None
    objects = console_of(request).objects
    info = views.artifact_info(objects, uri) if uri else None
    chunks = None
    if info is not None and uri is not None:
        with contextlib.suppress(NotFoundError, StorageError):
            chunks = objects.read_chunks(uri)
    if file is None or info is None or chunks is None:
        return error_page(
            request, status_code=404, title="Artifact not found", message=f"Job “{name}” has no {kind} artifact yet."
        )
    # Streamed from the object store (local or S3) in chunks; nothing assumes a local file.
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        "Content-Disposition": f'attachment; filename="{job.name}-{file}"',
        "Content-Length": str(info.size),
    }
    return StreamingResponse(chunks, media_type="application/gzip", headers=headers)


def _log_text(store: JobStore, job: JobRecord, host: str | None, attempt: int | None = None) -> Iterator[bytes]:
    cursor = 0
    prefix = job.instance_count > 1 and not host
    last = 1
    while True:
        lines = store.read_logs(job.id, cursor=cursor, limit=5000, host=host, attempt=attempt)
        if not lines:
            return
        out: list[str] = []
        for r in lines:
            if attempt is None and r.attempt != last:
                out.append(f"-------- attempt {r.attempt} --------\n")  # a retry after a lost host starts here
                last = r.attempt
            out.append(f"[{r.host}] {r.message}\n" if prefix else f"{r.message}\n")
        yield "".join(out).encode()
        cursor = lines[-1].cursor


@router.get("/console/jobs/{name}/log.txt")
def log_text(
    name: str,
    request: Request,
    host: str | None = None,
    attempt: Annotated[int | None, Query(ge=1)] = None,
    session: ConsoleSession = Depends(require_session),
) -> Response:
    """The job's whole log as plain text (one host's with ``?host=``, one attempt's with ``?attempt=``)."""
    store = _store(request)
    try:
        job = _owned(request, session, name)
    except NotFoundError:
        return _no_job(request, name)
    headers = {
        **SECURITY_HEADERS,
        "Content-Disposition": f'inline; filename="{job.name}.log"',
    }
    return StreamingResponse(
        _log_text(store, job, host or None, attempt), media_type="text/plain; charset=utf-8", headers=headers
    )


@router.get("/console/{path:path}")
def not_found(path: str, request: Request) -> Response:
    """Any other console address: a 404 page."""
    return error_page(request, status_code=404, title="Page not found", message=f"Nothing is at /console/{path}.")
