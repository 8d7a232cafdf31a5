"""The jobs list: its query parameters (filter, search, sort, page) and one page of rows."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from trainforge.server.console import queries, views
from trainforge.server.console.costs import job_cost_text
from trainforge.service.costs import PriceTable
from trainforge.service.principal import Principal
from trainforge.spec.status import TrainingJobStatus
from trainforge.store.jobs import JobStore, ListQuery
from trainforge.store.jobs import _encode_token as page_token

STATUSES = [s.value for s in TrainingJobStatus]
SORTS = {"CreationTime": "Created", "Name": "Name", "Status": "Status"}
ORDERS = ("Descending", "Ascending")
PAGE_SIZES = (10, 25, 50, 100)
MAX_SEARCH = 63


@dataclass(frozen=True)
class ListParams:
    """What the list shows; unknown or malformed values fall back to the defaults (newest first, 25 a page)."""

    status: str = ""
    q: str = ""
    sort: str = "CreationTime"
    order: str = "Descending"
    page: int = 1
    size: int = 25

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> ListParams:
        """Read the parameters from a query string's values."""

        def number(key: str, default: int) -> int:
            try:
                return int(query.get(key, default))
            except ValueError:
                return default

        status = query.get("status", "")
        sort = query.get("sort", "CreationTime")
        order = query.get("order", "Descending")
        size = number("size", 25)
        return cls(
            status=status if status in STATUSES else "",
            q=query.get("q", "").strip()[:MAX_SEARCH],
            sort=sort if sort in SORTS else "CreationTime",
            order=order if order in ORDERS else "Descending",
            page=min(max(number("page", 1), 1), 1_000_000),
            size=size if size in PAGE_SIZES else 25,
        )

    def query_string(self, **changes: Any) -> str:
        """These parameters (with ``changes``) as a query string, leaving out defaults."""
        params = replace(self, **changes)
        defaults = ListParams()
        pairs = [
            (key, getattr(params, key))
            for key in ("status", "q", "sort", "order", "page", "size")
            if getattr(params, key) != getattr(defaults, key)
        ]
        return urlencode(pairs)

    def sort_query(self, column: str) -> str:
        """The query string of a click on ``column``'s header: sort by it, flipping the order if it already is."""
        if self.sort == column:
            order = "Ascending" if self.order == "Descending" else "Descending"
        else:
            order = "Ascending" if column == "Name" else "Descending"
        return self.query_string(sort=column, order=order, page=1)


def list_page(
    store: JobStore,
    params: ListParams,
    *,
    viewer: Principal,
    now: float | None = None,
    prices: PriceTable | None = None,
) -> dict[str, Any]:
    """One page of ``viewer``'s rows (everyone's for an admin) and the numbers around it (``total``, ``pages``,
    ``first``/``last`` row index). Each row's ``cost`` is its ended job's cost under ``prices`` (the defaults when
    not given).

    A page past the end shows the last page. Costs three statements whatever the number of jobs.
    """
    t = time.time() if now is None else now
    owner = None if viewer.admin else viewer.user
    total = queries.count_jobs(
        store, name_contains=params.q or None, status_equals=params.status or None, created_by=owner
    )
    pages = max(1, math.ceil(total / params.size))
    params = replace(params, page=min(params.page, pages))
    offset = (params.page - 1) * params.size
    query = ListQuery(
        name_contains=params.q or None,
        status_equals=params.status or None,
        sort_by=params.sort,
        sort_order=params.order,
        max_results=params.size,
        next_token=page_token(offset) if offset else None,
        created_by=owner,
    )
    jobs, _ = store.list_jobs(query)
    metrics = queries.final_metrics_by_job(store, [j.id for j in jobs])
    table = prices or PriceTable()
    rows = [{**views.job_row(j, metrics.get(j.id, []), t), "cost": job_cost_text(j, table)} for j in jobs]
    return {
        "params": params,
        "rows": rows,
        "total": total,
        "page": params.page,
        "pages": pages,
        "first": offset + 1 if rows else 0,
        "last": offset + len(rows),
        "active": any(r["active"] for r in rows),
    }


def list_json(data: Mapping[str, Any]) -> dict[str, Any]:
    """What ``/console/api/jobs`` answers: the page's rows and counts."""
    return {key: data[key] for key in ("rows", "total", "page", "pages", "first", "last", "active")}
