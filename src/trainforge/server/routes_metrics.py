"""``GET /v1/training-jobs/{name}/metrics``: a job's metric points (training metrics and ``system/...``)."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request

from trainforge.server.auth import Principal, current_user
from trainforge.service.metrics import MAX_NAMES, job_metrics
from trainforge.store.jobs import JobStore

router = APIRouter(prefix="/v1", tags=["metrics"])


@router.get("/training-jobs/{name}/metrics", summary="Read a job's metric points")
async def training_job_metrics(
    name: str,
    request: Request,
    caller: Annotated[Principal, Depends(current_user)],
    names: Annotated[list[str] | None, Query(max_length=MAX_NAMES)] = None,
    host: str | None = None,
    start_time: float | None = None,
    end_time: float | None = None,
) -> dict[str, Any]:
    """``{"points": [{"name", "value", "timestamp", "host"}]}`` ordered by name then time.

    ``names`` (repeatable) keeps those metrics, ``host`` one host's points, ``start_time``/``end_time`` (epoch
    seconds, inclusive) an interval. Another user's job is a 404, as an unknown one.
    """
    store: JobStore = request.app.state.store
    call = partial(job_metrics, store, name, caller, names=names, host=host, start_time=start_time, end_time=end_time)
    return await to_thread.run_sync(call)
