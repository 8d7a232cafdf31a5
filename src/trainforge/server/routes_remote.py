"""``/v1/remote-function-keys/{name}``: the integrity key for one remote-function job's payloads."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from trainforge.server.auth import require_user
from trainforge.service.remote_keys import job_key

router = APIRouter(prefix="/v1", dependencies=[Depends(require_user)], tags=["remote-functions"])


@router.get("/remote-function-keys/{name}", summary="Payload integrity key of a remote-function job")
async def remote_function_key(name: str, request: Request) -> dict[str, Any]:
    """The HMAC key the caller signs ``function/``/``arguments/`` with and checks ``results/`` against."""
    return {"TrainingJobName": name, "key": job_key(request.app.state.remote_secret, name)}
