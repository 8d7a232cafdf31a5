"""``/v1/remote-function-keys/{name}``: the integrity key for one remote-function job's payloads."""

from __future__ import annotations

from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Request

from trainforge.server.auth import Principal, current_user
from trainforge.service.jobs import JobService
from trainforge.service.remote_keys import job_key

router = APIRouter(prefix="/v1", tags=["remote-functions"])


@router.get("/remote-function-keys/{name}", summary="Payload integrity key of a remote-function job")
async def remote_function_key(
    name: str, request: Request, caller: Annotated[Principal, Depends(current_user)]
) -> dict[str, Any]:
    """The HMAC key the caller signs ``function/``/``arguments/`` with and checks ``results/`` against.

    The key is asked for before the job is submitted, so a name no job has yet gets its key; the key of another
    user's job is a 404 (an admin gets any job's key).
    """
    svc: JobService = request.app.state.jobs
    key = job_key(request.app.state.remote_secret, name)  # validates the name first
    await to_thread.run_sync(svc.check_unowned_or_own, name, caller)
    return {"TrainingJobName": name, "key": key}
