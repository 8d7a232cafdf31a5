"""Use cases on endpoints: create, describe, list, update, delete, read logs and metrics, for the caller's user.

Another user's endpoint is answered exactly like one that does not exist (``Could not find endpoint "<name>".``).
The reconciler (:mod:`trainforge.scheduler.endpoints`) does the launching and stopping; these only change records
(through the store's compare-and-set) and wake it.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from trainforge.errors import ConflictError, NotFoundError, ValidationError
from trainforge.service.invocations import InvocationMetrics, InvocationRouter, Route, metric_totals, shown_points
from trainforge.service.models import ModelService, describe_model, visible
from trainforge.service.principal import Principal
from trainforge.settings import Settings
from trainforge.spec.endpoints import (
    EndpointStatus,
    InstanceStatus,
    config_not_found_message,
    endpoint_arn,
    endpoint_not_found_message,
    model_not_found_message,
    parse_create_endpoint,
    parse_update_endpoint,
)
from trainforge.store.inference import EndpointRecord, EndpointStore, InstanceRecord
from trainforge.store.inference_logs import InferenceLogStore, endpoint_log_owner
from trainforge.store.records import LogRecord
from trainforge.store.users import AuditQuery, UserStore

E = EndpointStatus


def _variant(endpoint: EndpointRecord) -> dict[str, Any]:
    variant: dict[str, Any] = endpoint.spec["EndpointConfig"]["ProductionVariants"][0]
    return variant


def shown_attempt(endpoint: EndpointRecord) -> int | None:
    """The launch whose instances DescribeEndpoint shows: the serving one, else the newest."""
    serving = endpoint.handle.get("serving")
    if serving is not None:
        return int(serving)
    return endpoint.attempt or None


def describe_endpoint(endpoint: EndpointRecord, instances: list[InstanceRecord]) -> dict[str, Any]:
    """DescribeEndpoint, plus trainforge's ``ModelName``, ``TrainingJobName`` and ``Instances``."""
    variant = _variant(endpoint)
    model = endpoint.spec["Models"].get(variant["ModelName"], {})
    shown = [i for i in instances if i.attempt == shown_attempt(endpoint)]
    weight = float(variant.get("InitialVariantWeight", 1.0))
    out: dict[str, Any] = {
        "EndpointName": endpoint.name,
        "EndpointArn": endpoint.arn,
        "EndpointConfigName": endpoint.config_name,
        "EndpointStatus": endpoint.status.value,
        "CreationTime": endpoint.creation_time,
        "LastModifiedTime": endpoint.last_modified_time,
        "ProductionVariants": [
            {
                "VariantName": variant.get("VariantName", "AllTraffic"),
                "CurrentInstanceCount": sum(1 for i in shown if i.status == InstanceStatus.IN_SERVICE.value),
                "DesiredInstanceCount": int(variant.get("InitialInstanceCount", 1)),
                "CurrentWeight": weight,
                "DesiredWeight": weight,
            }
        ],
        "ModelName": variant["ModelName"],
        "Instances": [{"Host": i.host, "Status": i.status, "Address": i.address} for i in shown],
    }
    if endpoint.failure_reason:
        out["FailureReason"] = endpoint.failure_reason
    if model.get("TrainingJobName"):
        out["TrainingJobName"] = model["TrainingJobName"]
    return out


def route_of(endpoint: EndpointRecord, instances: list[InstanceRecord]) -> Route:
    """What the invocation route keeps of an endpoint: owner, status, variant and serving addresses."""
    serving = endpoint.handle.get("serving")
    launches = endpoint.handle.get("launches") or {}
    launch = launches.get(str(serving), {}) if serving is not None else {}
    ready = tuple(
        (i.host, i.address)
        for i in instances
        if serving is not None
        and i.attempt == int(serving)
        and i.status == InstanceStatus.IN_SERVICE.value
        and i.address
    )
    return Route(
        name=endpoint.name,
        created_by=endpoint.created_by,
        status=endpoint.status.value,
        variant=str(launch.get("variant") or _variant(endpoint).get("VariantName", "AllTraffic")),
        log_owner=endpoint.log_owner,
        instances=ready,
    )


@dataclass
class EndpointService:
    """Endpoints; routes call one method each."""

    store: EndpointStore
    models: ModelService
    logs_store: InferenceLogStore
    settings: Settings
    router: InvocationRouter
    metrics: InvocationMetrics
    users: UserStore | None = None
    wake: threading.Event = field(default_factory=threading.Event)

    def owned(self, name: str, principal: Principal) -> EndpointRecord:
        """The endpoint ``name`` if ``principal`` may see it; otherwise SageMaker's unknown-endpoint error."""
        endpoint = self.store.get(name)
        if not visible(principal, endpoint.created_by):
            raise NotFoundError(endpoint_not_found_message(name))
        return endpoint

    def _resolve(self, config_name: str, principal: Principal, field: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The config (DescribeEndpointConfig shape) and ``{model name: DescribeModel}`` an endpoint will serve."""
        try:
            config = self.models.owned_config(config_name, principal)
        except NotFoundError:
            raise ValidationError(
                f"{field}: {config_not_found_message(config_name)} Create it first (CreateEndpointConfig), or check "
                "the name",
                field=field,
            ) from None
        resolved: dict[str, Any] = {}
        for variant in config.spec["ProductionVariants"]:
            name = variant["ModelName"]
            try:
                model = self.models.owned_model(name, principal)
            except NotFoundError:
                raise ValidationError(
                    f"{field}: the config's model is gone: {model_not_found_message(name)} Create the model again "
                    "or use another endpoint config",
                    field=field,
                ) from None
            resolved[name] = {**describe_model(model), "_role_json": model.role_json}
        spec_config = {"EndpointConfigName": config.name, "ProductionVariants": config.spec["ProductionVariants"]}
        return spec_config, resolved

    @staticmethod
    def _split_roles(models: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        role_json = None
        clean = {}
        for name, model in models.items():
            role_json = role_json or model.get("_role_json")
            clean[name] = {k: v for k, v in model.items() if k != "_role_json"}
        return clean, role_json

    def create(self, body: Any, principal: Principal) -> dict[str, Any]:
        """CreateEndpoint: ``Creating`` with its config and model resolved into its spec; the reconciler launches.

        Raises:
            ValidationError: A bad name, or a config (or its model) that does not exist.
            ConflictError: The name is taken.
        """
        request = parse_create_endpoint(body)
        if self.store.find(request.EndpointName) is not None:
            arn = endpoint_arn(self.settings.region, self.settings.account_id, request.EndpointName)
            raise ConflictError(
                f'Cannot create already existing endpoint "{arn}".',
                details={"field": "EndpointName", "name": request.EndpointName},
            )
        config, models = self._resolve(request.EndpointConfigName, principal, "EndpointConfigName")
        models, role_json = self._split_roles(models)
        now = time.time()
        endpoint = self.store.create(
            name=request.EndpointName,
            arn=endpoint_arn(self.settings.region, self.settings.account_id, request.EndpointName),
            config_name=request.EndpointConfigName,
            spec={"EndpointConfig": config, "Models": models},
            created_by=principal.user,
            role_json=role_json,
            log_owner=endpoint_log_owner(request.EndpointName, now),
            now=now,
        )
        self.router.put(route_of(endpoint, []))
        self.wake.set()
        return {"EndpointArn": endpoint.arn}

    def update(self, name: str, body: Any, principal: Principal) -> dict[str, Any]:
        """UpdateEndpoint: ``Updating``; the reconciler launches the new config and switches traffic when it is
        ready (the old instances serve meanwhile).

        Raises:
            NotFoundError: Unknown or not the caller's.
            ValidationError: The endpoint is not InService, or the config (or its model) does not exist.
        """
        request = parse_update_endpoint(body)
        endpoint = self.owned(name, principal)
        if endpoint.status != E.IN_SERVICE:
            raise ValidationError(
                f"EndpointName: cannot update endpoint {name!r} while it is {endpoint.status.value}; an endpoint can "
                "be updated when it is InService",
                field="EndpointName",
            )
        config, models = self._resolve(request.EndpointConfigName, principal, "EndpointConfigName")
        models, role_json = self._split_roles(models)
        try:
            self.store.transition(
                name,
                E.UPDATING,
                expected_from={E.IN_SERVICE},
                set_fields={
                    "config_name": request.EndpointConfigName,
                    "spec": json.dumps({"EndpointConfig": config, "Models": models}, separators=(",", ":")),
                    "role_json": role_json,
                    "failure_reason": None,
                },
            )
        except ConflictError as exc:
            raise ValidationError(
                f"EndpointName: cannot update endpoint {name!r} while it is {exc.details.get('current')}",
                field="EndpointName",
            ) from None
        self.wake.set()
        return {"EndpointArn": endpoint.arn}

    def describe(self, name: str, principal: Principal) -> dict[str, Any]:
        """DescribeEndpoint; :class:`NotFoundError` (SageMaker's words) if unknown or not the caller's."""
        endpoint = self.owned(name, principal)
        return describe_endpoint(endpoint, self.store.instances(endpoint.id))

    def list_endpoints(self, principal: Principal, *, status: str | None = None) -> dict[str, Any]:
        """ListEndpoints: the caller's endpoints (an admin's: everyone's), newest first."""
        if status and status not in {s.value for s in EndpointStatus}:
            raise ValidationError(
                f"StatusEquals: {status!r} is not one of {', '.join(s.value for s in EndpointStatus)}",
                field="StatusEquals",
            )
        found = self.store.list_endpoints(status=status, created_by=None if principal.admin else principal.user)
        return {
            "Endpoints": [
                {
                    "EndpointName": e.name,
                    "EndpointArn": e.arn,
                    "EndpointStatus": e.status.value,
                    "CreationTime": e.creation_time,
                    "LastModifiedTime": e.last_modified_time,
                }
                for e in found
            ]
        }

    def delete(self, name: str, principal: Principal) -> dict[str, Any]:
        """DeleteEndpoint: ``Deleting``; the reconciler stops its instances, then removes the record (its log lines
        and metric points stay). Deleting a Deleting endpoint again is a no-op."""
        endpoint = self.owned(name, principal)
        if endpoint.status != E.DELETING:
            with contextlib.suppress(ConflictError):  # already Deleting (another request won)
                self.store.transition(name, E.DELETING)
        self.router.forget(name)
        self.wake.set()
        return {}

    # -- logs and metrics -----------------------------------------------------------------------------------

    def _may_read_history(self, name: str, principal: Principal) -> bool:
        """Whether ``principal`` may read the lines and metrics of an endpoint ``name`` that no longer exists: an
        admin, or the user the audit log says created it."""
        if principal.admin:
            return True
        if self.users is None:
            return False
        events = self.users.list_audit(AuditQuery(action="CreateEndpoint", target=name, limit=20))
        return any(e.outcome == "ok" and e.user == principal.user for e in events)

    def _history_owner(self, name: str, principal: Principal) -> tuple[str, bool]:
        """The log owner to read (an existing endpoint's life, or every life of the name by prefix) and whether it
        is a prefix."""
        endpoint = self.store.find(name)
        if endpoint is not None:
            if not visible(principal, endpoint.created_by):
                raise NotFoundError(endpoint_not_found_message(name))
            return f"endpoint/{name}/", True
        prefix = f"endpoint/{name}/"
        had_life = bool(self.logs_store.read(prefix, limit=1, prefix=True)) or bool(
            self.store.owners_with_points(prefix)
        )
        if not had_life or not self._may_read_history(name, principal):
            raise NotFoundError(endpoint_not_found_message(name))
        return prefix, True

    def logs(
        self, name: str, principal: Principal, *, cursor: int, limit: int, host: str | None
    ) -> tuple[list[LogRecord], str | None]:
        """The lines of every life of endpoint ``name`` after ``cursor`` (at most ``limit``) and its status (None
        once deleted)."""
        if not 1 <= limit <= 10000:
            raise ValidationError("limit: must be between 1 and 10000", field="limit")
        if cursor < 0:
            raise ValidationError("cursor: must be >= 0", field="cursor")
        owner, prefix = self._history_owner(name, principal)
        lines = self.logs_store.read(owner, cursor=cursor, limit=limit, host=host, prefix=prefix)
        endpoint = self.store.find(name)
        return lines, endpoint.status.value if endpoint else None

    def metrics_of(self, name: str, principal: Principal) -> dict[str, Any]:
        """``{"points": [{"name", "value", "timestamp"}], "totals": {...}}`` of the endpoint's current life (or,
        once deleted, of its lives together)."""
        self._history_owner(name, principal)
        self.metrics.flush()
        endpoint = self.store.find(name)
        if endpoint is not None:
            points = self.store.read_points(endpoint.log_owner)
        else:
            points = [
                p for owner in self.store.owners_with_points(f"endpoint/{name}/") for p in self.store.read_points(owner)
            ]
        return {
            "points": [{"name": p.name, "value": p.value, "timestamp": p.timestamp} for p in shown_points(points)],
            "totals": metric_totals(points),
        }

    # -- the invocation router's view -------------------------------------------------------------------------

    def refresh_routes(self) -> None:
        """Rebuild the router's endpoints from the store (after each reconciler pass)."""
        routes = {}
        for endpoint in self.store.list_endpoints():
            if endpoint.status == E.DELETING:
                continue
            serving = endpoint.handle.get("serving")
            instances = self.store.instances(endpoint.id, int(serving)) if serving is not None else []
            routes[endpoint.name] = route_of(endpoint, instances)
        self.router.replace(routes)
        self.metrics.flush_if_due()

    def route(self, name: str) -> Route | None:
        """The route of ``name`` from the store (a cache miss of the router), kept in the router if found."""
        endpoint = self.store.find(name)
        if endpoint is None or endpoint.status == E.DELETING:
            return None
        serving = endpoint.handle.get("serving")
        route = route_of(endpoint, self.store.instances(endpoint.id, int(serving)) if serving is not None else [])
        self.router.put(route)
        return route
