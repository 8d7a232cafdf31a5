"""The console's costs page (``/console/costs``) and the cost shown for each job on the list and the job page.

The page shows what ``GET /v1/costs`` answers for the signed-in user (everyone's for an admin): one row per group
and the total, for a grouping and a period picked in its form. A bad ``since``/``until`` shows the API's message on
the page (400), never a traceback.
"""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from trainforge.errors import ValidationError
from trainforge.server.console.render import page, principal_of, require_session
from trainforge.server.console.session import ConsoleSession
from trainforge.service.costs import BY_CHOICES, CostService, PriceTable, job_cost
from trainforge.store.records import JobRecord

router = APIRouter(include_in_schema=False)
BY_LABELS = {"user": "User", "day": "Day (UTC)", "instance-type": "Instance type"}
MAX_FIELD = 64


def _svc(request: Request) -> CostService:
    svc: CostService = request.app.state.costs
    return svc


def prices_of(request: Request) -> PriceTable:
    """The price table of the server answering ``request``."""
    return _svc(request).prices


def amount_text(amount: float | None, currency: str) -> str:
    """An amount as the console prints it: six decimals and the currency (``0.000383 USD``)."""
    return "no price" if amount is None else f"{amount:.6f} {currency}"


def cost_text(cost: dict[str, Any] | None) -> str:
    """A job's ``Cost`` in one cell: its amount, ``no price`` for a type the table lacks, ``—`` until it ended."""
    if cost is None:
        return "—"
    return amount_text(cost["Amount"], cost["Currency"])


def job_cost_text(job: JobRecord, prices: PriceTable) -> str:
    """:func:`cost_text` of ``job`` under ``prices``."""
    return cost_text(job_cost(job, prices))


@router.get("/console/costs")
async def costs_page(request: Request, session: ConsoleSession = Depends(require_session)) -> Response:
    """Totals by user, day or instance type for a period (``?by=&since=&until=``), as ``GET /v1/costs``."""
    query = request.query_params
    by = query.get("by", "user")
    by = by if by in BY_CHOICES else "user"
    since = query.get("since", "").strip()[:MAX_FIELD]
    until = query.get("until", "").strip()[:MAX_FIELD]
    error = None
    try:
        report: dict[str, Any] | None = await to_thread.run_sync(
            lambda: _svc(request).report(principal_of(session), by=by, since=since or None, until=until or None)
        )
    except ValidationError as exc:
        report, error = None, exc.message
    context = {
        "by": by,
        "since": since,
        "until": until,
        "choices": BY_LABELS,
        "report": report,
        "error": error,
        "money": amount_text,
        "admin": principal_of(session).admin,
    }
    return page(request, "costs.html", context, session=session, status_code=400 if error else 200)
