"""``/v1/costs``: what the caller's jobs and endpoints cost (everyone's for an admin), and the server's prices.

Thin routes over :class:`~trainforge.service.costs.CostService`; bad ``by``, ``since`` or ``until`` values are a 400
naming the parameter.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, FastAPI, Query, Request

from trainforge.server.auth import Principal, current_user
from trainforge.service.costs import CostService, PriceTable
from trainforge.store.usage import UsageStore

router = APIRouter(prefix="/v1", tags=["costs"])
Caller = Annotated[Principal, Depends(current_user)]


def _svc(request: Request) -> CostService:
    svc: CostService = request.app.state.costs
    return svc


@router.get("/costs", summary="Costs by user, day or instance type")
async def costs(
    request: Request,
    caller: Caller,
    by: str = "user",
    since: Annotated[str | None, Query(max_length=64)] = None,
    until: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """``{"Currency", "By", "Since", "Until", "Groups": [{"Key", "Amount", "TrainingJobs", "TransformJobs",
    "Endpoints", "InstanceSeconds"}], "Total", "UnpricedInstanceTypes"}`` for ``[since, until)`` (ISO 8601, epoch
    seconds or an age such as ``7d``); ``by`` is ``user``, ``day`` (UTC date of the start) or ``instance-type``."""
    return await to_thread.run_sync(partial(_svc(request).report, caller, by=by, since=since, until=until))


@router.get("/costs/prices", summary="The server's price table", dependencies=[Depends(current_user)])
async def prices(request: Request) -> dict[str, Any]:
    """``{"Currency", "Source", "Prices": {instance type: price per instance-hour}}``."""
    return _svc(request).prices.to_json()


def install(app: FastAPI, *, prices: PriceTable) -> None:
    """Serve the cost routes on ``app`` with ``prices`` (needs ``app.state.store``); ``app.state.costs`` is the
    service the console's costs page uses too."""
    app.state.costs = CostService(usage=UsageStore(app.state.store.engine), prices=prices)
    app.include_router(router)
