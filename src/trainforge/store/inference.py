"""``ModelStore``, ``EndpointConfigStore``, ``EndpointStore``: the only way to read and change the records of models,
endpoint configs and endpoints (with their instances and metric points).

An endpoint's status changes through :meth:`EndpointStore.transition`, one conditional update
(``UPDATE ... WHERE status IN (<allowed predecessors>)``): a route and the reconciler racing on one endpoint never
both win. ``backend_handle`` holds the endpoint's launches (see :mod:`trainforge.scheduler.endpoints`); only the
reconciler writes it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Engine, Table, delete, func, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from trainforge.errors import ConflictError, NotFoundError
from trainforge.spec.endpoints import (
    EndpointStatus,
    InstanceStatus,
    allowed_predecessors,
    config_not_found_message,
    endpoint_not_found_message,
    model_not_found_message,
)
from trainforge.store.tables import (
    endpoint_configs,
    endpoint_instances,
    endpoint_metric_points,
    endpoints,
    jobs,
    models,
)

_TERMINAL_INSTANCE = {InstanceStatus.FAILED.value, InstanceStatus.STOPPED.value}


@dataclass(frozen=True)
class ModelRecord:
    """One model: its CreateModel request as stored (``spec``) and who made it."""

    id: int
    name: str
    arn: str
    spec: dict[str, Any]
    training_job_name: str | None
    created_by: str | None
    role_json: str | None
    creation_time: float


@dataclass(frozen=True)
class EndpointConfigRecord:
    """One endpoint config: its CreateEndpointConfig request as stored."""

    id: int
    name: str
    arn: str
    spec: dict[str, Any]
    created_by: str | None
    creation_time: float


@dataclass(frozen=True)
class InstanceRecord:
    """One instance (host) of one launch (attempt) of an endpoint."""

    attempt: int
    host: str
    status: str
    address: str | None
    failure_reason: str | None
    heartbeat_time: float | None
    updated_time: float


@dataclass(frozen=True)
class EndpointRecord:
    """One endpoint. ``spec`` is ``{"EndpointConfig": ..., "Models": {name: DescribeModel}}`` as resolved at create
    or update; ``handle`` the reconciler's launches (``backend_handle`` as JSON)."""

    id: int
    name: str
    arn: str
    config_name: str
    spec: dict[str, Any]
    status: EndpointStatus
    failure_reason: str | None
    creation_time: float
    last_modified_time: float
    created_by: str | None
    role_json: str | None
    backend: str | None
    handle: dict[str, Any]
    agent_token_hash: str | None
    attempt: int
    log_owner: str


@dataclass(frozen=True)
class MetricPoint:
    """One stored endpoint metric point."""

    name: str
    value: float
    timestamp: float


def _model(row: Row[Any]) -> ModelRecord:
    return ModelRecord(
        row.id,
        row.name,
        row.arn,
        json.loads(row.spec),
        row.training_job_name,
        row.created_by,
        row.role_json,
        row.creation_time,
    )


def _config(row: Row[Any]) -> EndpointConfigRecord:
    return EndpointConfigRecord(row.id, row.name, row.arn, json.loads(row.spec), row.created_by, row.creation_time)


def _endpoint(row: Row[Any]) -> EndpointRecord:
    return EndpointRecord(
        id=row.id,
        name=row.name,
        arn=row.arn,
        config_name=row.config_name,
        spec=json.loads(row.spec),
        status=EndpointStatus(row.status),
        failure_reason=row.failure_reason,
        creation_time=row.creation_time,
        last_modified_time=row.last_modified_time,
        created_by=row.created_by,
        role_json=row.role_json,
        backend=row.backend,
        handle=json.loads(row.backend_handle) if row.backend_handle else {},
        agent_token_hash=row.agent_token_hash,
        attempt=row.attempt,
        log_owner=row.log_owner,
    )


def _instance(row: Row[Any]) -> InstanceRecord:
    return InstanceRecord(
        row.attempt, row.host, row.status, row.address, row.failure_reason, row.heartbeat_time, row.updated_time
    )


R = TypeVar("R")


def _insert_named(
    engine: Engine, table: Table, values: Mapping[str, Any], convert: Callable[[Row[Any]], R], taken: ConflictError
) -> R:
    """Insert a record whose ``name`` is unique and return it as stored; ``taken`` is raised when the name is."""
    try:
        with engine.begin() as conn:
            conn.execute(insert(table).values(**values))
            return convert(conn.execute(select(table).where(table.c.name == values["name"])).one())
    except IntegrityError:
        raise taken from None


def _find_named(engine: Engine, table: Table, name: str, convert: Callable[[Row[Any]], R]) -> R | None:
    """The record called ``name``, or None."""
    with engine.connect() as conn:
        row = conn.execute(select(table).where(table.c.name == name)).first()
    return None if row is None else convert(row)


def _delete_named(engine: Engine, table: Table, name: str, not_found: str) -> None:
    """Delete the record called ``name``; :class:`NotFoundError` with ``not_found`` if there is none."""
    with engine.begin() as conn:
        if conn.execute(delete(table).where(table.c.name == name)).rowcount != 1:
            raise NotFoundError(not_found)


class ModelStore:
    """Models in the SQL database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(
        self,
        *,
        name: str,
        arn: str,
        spec: Mapping[str, Any],
        training_job_name: str | None,
        created_by: str | None,
        role_json: str | None,
        now: float | None = None,
    ) -> ModelRecord:
        """Insert a model; :class:`ConflictError` (SageMaker's words) when the name is taken."""
        values = {
            "name": name,
            "arn": arn,
            "spec": json.dumps(dict(spec), separators=(",", ":")),
            "training_job_name": training_job_name,
            "created_by": created_by,
            "role_json": role_json,
            "creation_time": time.time() if now is None else now,
        }
        taken = ConflictError(
            f'Cannot create already existing model "{arn}".', details={"field": "ModelName", "name": name}
        )
        return _insert_named(self.engine, models, values, _model, taken)

    def find(self, name: str) -> ModelRecord | None:
        """The model called ``name``, or None."""
        return _find_named(self.engine, models, name, _model)

    def get(self, name: str) -> ModelRecord:
        """The model called ``name``; :class:`NotFoundError` otherwise."""
        found = self.find(name)
        if found is None:
            raise NotFoundError(model_not_found_message(name))
        return found

    def list_models(self, *, name_contains: str | None = None, created_by: str | None = None) -> list[ModelRecord]:
        """Models, newest first; ``name_contains`` (case-insensitive) and ``created_by`` filter them."""
        stmt = select(models)
        if name_contains:
            stmt = stmt.where(func.lower(models.c.name).contains(name_contains.lower(), autoescape=True))
        if created_by is not None:
            stmt = stmt.where(models.c.created_by == created_by)
        stmt = stmt.order_by(models.c.creation_time.desc(), models.c.id.desc())
        with self.engine.connect() as conn:
            return [_model(r) for r in conn.execute(stmt).all()]

    def delete(self, name: str) -> None:
        """Delete the model called ``name`` (endpoints keep their resolved copy); :class:`NotFoundError` if none."""
        _delete_named(self.engine, models, name, model_not_found_message(name))

    def training_job_with_artifacts(self, uri: str) -> tuple[str, str | None] | None:
        """``(name, created_by)`` of the newest training job whose ``model_artifacts`` is ``uri``, or None."""
        stmt = (
            select(jobs.c.name, jobs.c.created_by)
            .where(jobs.c.model_artifacts == uri)
            .order_by(jobs.c.creation_time.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else (str(row.name), row.created_by)


class EndpointConfigStore:
    """Endpoint configs in the SQL database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(
        self, *, name: str, arn: str, spec: Mapping[str, Any], created_by: str | None, now: float | None = None
    ) -> EndpointConfigRecord:
        """Insert an endpoint config; :class:`ConflictError` when the name is taken."""
        values = {
            "name": name,
            "arn": arn,
            "spec": json.dumps(dict(spec), separators=(",", ":")),
            "created_by": created_by,
            "creation_time": time.time() if now is None else now,
        }
        taken = ConflictError(
            f'Cannot create already existing endpoint configuration "{arn}".',
            details={"field": "EndpointConfigName", "name": name},
        )
        return _insert_named(self.engine, endpoint_configs, values, _config, taken)

    def find(self, name: str) -> EndpointConfigRecord | None:
        """The endpoint config called ``name``, or None."""
        return _find_named(self.engine, endpoint_configs, name, _config)

    def get(self, name: str) -> EndpointConfigRecord:
        """The endpoint config called ``name``; :class:`NotFoundError` otherwise."""
        found = self.find(name)
        if found is None:
            raise NotFoundError(config_not_found_message(name))
        return found

    def list_configs(self, *, created_by: str | None = None) -> list[EndpointConfigRecord]:
        """Endpoint configs, newest first (``created_by``: one owner's)."""
        stmt = select(endpoint_configs)
        if created_by is not None:
            stmt = stmt.where(endpoint_configs.c.created_by == created_by)
        stmt = stmt.order_by(endpoint_configs.c.creation_time.desc(), endpoint_configs.c.id.desc())
        with self.engine.connect() as conn:
            return [_config(r) for r in conn.execute(stmt).all()]

    def delete(self, name: str) -> None:
        """Delete the endpoint config called ``name``; :class:`NotFoundError` if none."""
        _delete_named(self.engine, endpoint_configs, name, config_not_found_message(name))


class EndpointStore:
    """Endpoints, their instances and their metric points in the SQL database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- endpoints ------------------------------------------------------------------------------------------

    def create(
        self,
        *,
        name: str,
        arn: str,
        config_name: str,
        spec: Mapping[str, Any],
        created_by: str | None,
        role_json: str | None,
        log_owner: str,
        now: float,
    ) -> EndpointRecord:
        """Insert an endpoint as ``Creating`` (attempt 0: nothing launched yet); :class:`ConflictError` when the name
        is taken."""
        values = {
            "name": name,
            "arn": arn,
            "config_name": config_name,
            "spec": json.dumps(dict(spec), separators=(",", ":")),
            "status": EndpointStatus.CREATING.value,
            "creation_time": now,
            "last_modified_time": now,
            "created_by": created_by,
            "role_json": role_json,
            "attempt": 0,
            "log_owner": log_owner,
        }
        taken = ConflictError(
            f'Cannot create already existing endpoint "{arn}".', details={"field": "EndpointName", "name": name}
        )
        return _insert_named(self.engine, endpoints, values, _endpoint, taken)

    def find(self, name: str) -> EndpointRecord | None:
        """The endpoint called ``name``, or None."""
        return _find_named(self.engine, endpoints, name, _endpoint)

    def get(self, name: str) -> EndpointRecord:
        """The endpoint called ``name``; :class:`NotFoundError` with SageMaker's message otherwise."""
        found = self.find(name)
        if found is None:
            raise NotFoundError(endpoint_not_found_message(name))
        return found

    def list_endpoints(self, *, status: str | None = None, created_by: str | None = None) -> list[EndpointRecord]:
        """Endpoints, newest first; ``status`` keeps one status, ``created_by`` one owner's."""
        stmt = select(endpoints)
        if status:
            stmt = stmt.where(endpoints.c.status == status)
        if created_by is not None:
            stmt = stmt.where(endpoints.c.created_by == created_by)
        stmt = stmt.order_by(endpoints.c.creation_time.desc(), endpoints.c.id.desc())
        with self.engine.connect() as conn:
            return [_endpoint(r) for r in conn.execute(stmt).all()]

    def transition(
        self,
        name: str,
        to: EndpointStatus | str,
        *,
        expected_from: Iterable[EndpointStatus] | None = None,
        conditions: Mapping[str, Any] | None = None,
        set_fields: Mapping[str, Any] | None = None,
        failure_reason: str | None = None,
        now: float | None = None,
    ) -> EndpointRecord:
        """Move an endpoint to ``to`` if the status table (and ``expected_from``, ``conditions``) allow it, in one
        conditional update that also writes ``set_fields`` (a value may be a column expression).

        Raises:
            NotFoundError: No endpoint has this name.
            ConflictError: Its current status (or a condition) does not allow the change.
        """
        target = EndpointStatus(to)
        allowed = set(allowed_predecessors(target))
        if expected_from is not None:
            allowed &= {EndpointStatus(s) for s in expected_from}
        values: dict[str, Any] = {
            "status": target.value,
            "last_modified_time": time.time() if now is None else now,
            **dict(set_fields or {}),
        }
        if failure_reason is not None:
            values["failure_reason"] = failure_reason[:1024]
        stmt = update(endpoints).where(
            endpoints.c.name == name, endpoints.c.status.in_(sorted(s.value for s in allowed))
        )
        for column, expected in (conditions or {}).items():
            col = endpoints.c[column]
            stmt = stmt.where(col.is_(None) if expected is None else col == expected)
        with self.engine.begin() as conn:
            if conn.execute(stmt.values(**values)).rowcount != 1:
                current = conn.execute(select(endpoints.c.status).where(endpoints.c.name == name)).scalar()
                if current is None:
                    raise NotFoundError(endpoint_not_found_message(name))
                raise ConflictError(
                    f"endpoint {name!r} is {current}; it cannot move to {target.value}",
                    details={"current": current, "requested": target.value},
                )
            return _endpoint(conn.execute(select(endpoints).where(endpoints.c.name == name)).one())

    def claim_attempt(
        self, name: str, *, attempt: int, token_hash: str, handle: Mapping[str, Any], backend: str
    ) -> int:
        """Move the endpoint from launch ``attempt`` to ``attempt + 1`` (new agent token, ``handle``) if it is still
        on ``attempt`` and not ``Deleting``/``Failed``; returns the new attempt. :class:`ConflictError` otherwise."""
        stmt = (
            update(endpoints)
            .where(
                endpoints.c.name == name,
                endpoints.c.attempt == attempt,
                endpoints.c.status.not_in([EndpointStatus.DELETING.value, EndpointStatus.FAILED.value]),
            )
            .values(
                attempt=attempt + 1,
                agent_token_hash=token_hash,
                backend=backend,
                backend_handle=json.dumps(dict(handle)),
            )
        )
        with self.engine.begin() as conn:
            if conn.execute(stmt).rowcount != 1:
                raise ConflictError(f"endpoint {name!r} moved on from launch {attempt}")
        return attempt + 1

    def set_handle(self, name: str, handle: Mapping[str, Any]) -> None:
        """Store the reconciler's launches of ``name`` (no status change)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(endpoints).where(endpoints.c.name == name).values(backend_handle=json.dumps(dict(handle)))
            )

    def delete(self, name: str) -> bool:
        """Remove a ``Deleting`` endpoint and its instances (its log lines and metric points stay); returns whether
        a row was removed."""
        with self.engine.begin() as conn:
            endpoint_id = conn.execute(
                select(endpoints.c.id).where(
                    endpoints.c.name == name, endpoints.c.status == EndpointStatus.DELETING.value
                )
            ).scalar()
            if endpoint_id is None:
                return False
            conn.execute(delete(endpoint_instances).where(endpoint_instances.c.endpoint_id == endpoint_id))
            conn.execute(delete(endpoints).where(endpoints.c.id == endpoint_id))
            return True

    # -- instances ------------------------------------------------------------------------------------------

    def record_instance(
        self,
        endpoint_id: int,
        attempt: int,
        host: str,
        status: InstanceStatus | str,
        *,
        address: str | None = None,
        failure_reason: str | None = None,
        now: float | None = None,
    ) -> InstanceRecord:
        """Store one instance's report (and count it as a heartbeat); an instance already ``Failed``/``Stopped``
        keeps that status. Returns the instance as stored."""
        t = time.time() if now is None else now
        value = InstanceStatus(status).value
        key = (
            endpoint_instances.c.endpoint_id == endpoint_id,
            endpoint_instances.c.attempt == attempt,
            endpoint_instances.c.host == host,
        )
        with self.engine.begin() as conn:
            current = conn.execute(select(endpoint_instances).where(*key)).first()
            fields = {
                "status": value,
                "address": address,
                "failure_reason": failure_reason[:1024] if failure_reason else None,
                "heartbeat_time": t,
                "updated_time": t,
            }
            if current is None:
                conn.execute(
                    insert(endpoint_instances).values(endpoint_id=endpoint_id, attempt=attempt, host=host, **fields)
                )
            elif current.status not in _TERMINAL_INSTANCE:
                if address is None:
                    fields["address"] = current.address if value == InstanceStatus.IN_SERVICE.value else None
                conn.execute(update(endpoint_instances).where(*key).values(**fields))
            return _instance(conn.execute(select(endpoint_instances).where(*key)).one())

    def heartbeat(self, endpoint_id: int, attempt: int, host: str, *, now: float | None = None) -> None:
        """Note that an instance is alive."""
        t = time.time() if now is None else now
        with self.engine.begin() as conn:
            conn.execute(
                update(endpoint_instances)
                .where(
                    endpoint_instances.c.endpoint_id == endpoint_id,
                    endpoint_instances.c.attempt == attempt,
                    endpoint_instances.c.host == host,
                )
                .values(heartbeat_time=t)
            )

    def instances(self, endpoint_id: int, attempt: int | None = None) -> list[InstanceRecord]:
        """The instances of an endpoint (of one launch ``attempt``), by attempt then host."""
        stmt = select(endpoint_instances).where(endpoint_instances.c.endpoint_id == endpoint_id)
        if attempt is not None:
            stmt = stmt.where(endpoint_instances.c.attempt == attempt)
        stmt = stmt.order_by(endpoint_instances.c.attempt, endpoint_instances.c.host)
        with self.engine.connect() as conn:
            return [_instance(r) for r in conn.execute(stmt).all()]

    def forget_instances(self, endpoint_id: int, attempt: int) -> None:
        """Remove the instance rows of a launch that is gone."""
        with self.engine.begin() as conn:
            conn.execute(
                delete(endpoint_instances).where(
                    endpoint_instances.c.endpoint_id == endpoint_id, endpoint_instances.c.attempt == attempt
                )
            )

    # -- metric points --------------------------------------------------------------------------------------

    def read_points(self, owner: str) -> list[MetricPoint]:
        """Every metric point of one endpoint life, by name then time."""
        mp = endpoint_metric_points
        stmt = select(mp).where(mp.c.owner == owner).order_by(mp.c.name, mp.c.timestamp, mp.c.id)
        with self.engine.connect() as conn:
            return [MetricPoint(r.name, r.value, r.timestamp) for r in conn.execute(stmt).all()]

    def points_at(self, owner: str, timestamp: float) -> dict[str, float]:
        """The points of ``owner`` stored for one minute ``timestamp``, by name."""
        mp = endpoint_metric_points
        stmt = select(mp.c.name, mp.c.value).where(mp.c.owner == owner, mp.c.timestamp == timestamp)
        with self.engine.connect() as conn:
            return {str(r.name): float(r.value) for r in conn.execute(stmt).all()}

    def replace_points(self, owner: str, timestamp: float, values: Mapping[str, float]) -> None:
        """Make ``values`` the points of ``owner`` for one minute ``timestamp`` (earlier ones of that minute and
        those names are replaced), in one transaction."""
        mp = endpoint_metric_points
        with self.engine.begin() as conn:
            conn.execute(
                delete(mp).where(mp.c.owner == owner, mp.c.timestamp == timestamp, mp.c.name.in_(list(values)))
            )
            conn.execute(
                insert(mp),
                [{"owner": owner, "name": n, "value": float(v), "timestamp": timestamp} for n, v in values.items()],
            )

    def owners_with_points(self, prefix: str) -> Sequence[str]:
        """The owners starting with ``prefix`` that have metric points."""
        mp = endpoint_metric_points
        stmt = select(mp.c.owner).where(mp.c.owner.startswith(prefix, autoescape=True)).distinct()
        with self.engine.connect() as conn:
            return [str(r[0]) for r in conn.execute(stmt).all()]
