"""Use cases on models and endpoint configs: create, describe, list, delete, for the caller's user.

A user sees and uses their own models and configs only (an admin everyone's); another user's is answered like one
that does not exist.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trainforge.backends.base import Backend
from trainforge.errors import CapacityError, NotFoundError, ValidationError
from trainforge.scheduler.instances import Machine, hosting_instance_type
from trainforge.service.principal import ADMIN_USER, Principal
from trainforge.settings import Settings
from trainforge.spec.endpoints import (
    config_not_found_message,
    endpoint_config_arn,
    model_arn,
    model_not_found_message,
    parse_create_endpoint_config,
    parse_create_model,
)
from trainforge.spec.images import resolve_image
from trainforge.store.inference import EndpointConfigRecord, EndpointConfigStore, ModelRecord, ModelStore


def owner(created_by: str | None) -> str:
    """The user a record belongs to (records made before users existed belong to the admin)."""
    return created_by or ADMIN_USER


def visible(principal: Principal, created_by: str | None) -> bool:
    """Whether ``principal`` may see and use a record made by ``created_by``: its owner or any admin."""
    return principal.admin or owner(created_by) == principal.user


def describe_model(model: ModelRecord) -> dict[str, Any]:
    """DescribeModel of a stored model (times in epoch seconds)."""
    spec = model.spec
    out: dict[str, Any] = {
        "ModelName": model.name,
        "ModelArn": model.arn,
        "PrimaryContainer": spec["PrimaryContainer"],
        "ExecutionRoleArn": spec.get("ExecutionRoleArn"),
        "CreationTime": model.creation_time,
        "EnableNetworkIsolation": bool(spec.get("EnableNetworkIsolation", False)),
    }
    if model.training_job_name:
        out["TrainingJobName"] = model.training_job_name
    return out


def describe_config(config: EndpointConfigRecord) -> dict[str, Any]:
    """DescribeEndpointConfig of a stored config."""
    return {
        "EndpointConfigName": config.name,
        "EndpointConfigArn": config.arn,
        "ProductionVariants": config.spec["ProductionVariants"],
        "CreationTime": config.creation_time,
    }


@dataclass
class ModelService:
    """Models and endpoint configs; routes call one method each."""

    models: ModelStore
    configs: EndpointConfigStore
    settings: Settings
    machine: Machine
    backend: Backend
    # (creator, ExecutionRoleArn) -> the role the model's instances run with, as training submit resolves RoleArn.
    resolve_role: Callable[[Principal, str], dict[str, Any] | None] | None = None

    # -- models -----------------------------------------------------------------------------------------------

    def owned_model(self, name: str, principal: Principal) -> ModelRecord:
        """The model ``name`` if ``principal`` may see it, else the unknown-model error."""
        model = self.models.get(name)
        if not visible(principal, model.created_by):
            raise NotFoundError(model_not_found_message(name))
        return model

    def create_model(self, body: Any, principal: Principal) -> dict[str, Any]:
        """CreateModel: validate (image in the catalogue, s3:// model data, a role the caller may pass) and store.

        Raises:
            ValidationError: A bad field, named with the fix.
            ConflictError: The name is taken.
        """
        request = parse_create_model(body)
        container = request.container
        field = "PrimaryContainer" if request.PrimaryContainer is not None else "Containers[0]"
        resolve_image(container.Image, field=f"{field}.Image")
        role_field_error: ValidationError | None = None
        role = None
        if self.resolve_role is not None:
            try:
                role = self.resolve_role(principal, request.ExecutionRoleArn)
            except ValidationError as exc:  # the training rule names RoleArn; CreateModel's field is another
                role_field_error = ValidationError(
                    exc.message.replace("RoleArn:", "ExecutionRoleArn:", 1),
                    field="ExecutionRoleArn",
                    details=exc.details,
                )
        if role_field_error is not None:
            raise role_field_error
        training_job = request.training_job_tag or self._training_job_of(container.ModelDataUrl, principal)
        arn = model_arn(self.settings.region, self.settings.account_id, request.ModelName)
        model = self.models.create(
            name=request.ModelName,
            arn=arn,
            spec=request.to_wire(),
            training_job_name=training_job,
            created_by=principal.user,
            role_json=None if role is None else json.dumps(role),
        )
        return {"ModelArn": model.arn}

    def _training_job_of(self, uri: str, principal: Principal) -> str | None:
        found = self.models.training_job_with_artifacts(uri)
        if found is None or not visible(principal, found[1]):
            return None
        return found[0]

    def describe_model(self, name: str, principal: Principal) -> dict[str, Any]:
        """DescribeModel; :class:`NotFoundError` if unknown or not the caller's."""
        return describe_model(self.owned_model(name, principal))

    def list_models(self, principal: Principal, *, name_contains: str | None = None) -> dict[str, Any]:
        """ListModels: the caller's models (an admin's: everyone's), newest first."""
        created_by = None if principal.admin else principal.user
        found = self.models.list_models(name_contains=name_contains, created_by=created_by)
        return {"Models": [{"ModelName": m.name, "ModelArn": m.arn, "CreationTime": m.creation_time} for m in found]}

    def delete_model(self, name: str, principal: Principal) -> dict[str, Any]:
        """DeleteModel (endpoints serving it keep their resolved copy)."""
        self.owned_model(name, principal)
        self.models.delete(name)
        return {}

    # -- endpoint configs -------------------------------------------------------------------------------------

    def owned_config(self, name: str, principal: Principal) -> EndpointConfigRecord:
        """The endpoint config ``name`` if ``principal`` may see it, else the unknown-config error."""
        config = self.configs.get(name)
        if not visible(principal, config.created_by):
            raise NotFoundError(config_not_found_message(name))
        return config

    def create_endpoint_config(self, body: Any, principal: Principal) -> dict[str, Any]:
        """CreateEndpointConfig: one production variant whose model exists (and is the caller's) and whose instance
        type is known and fits this backend.

        Raises:
            ValidationError: A bad field, named with the fix.
            ConflictError: The name is taken.
        """
        request = parse_create_endpoint_config(body)
        variant = request.variant
        field = "ProductionVariants[0]"
        instance = hosting_instance_type(variant.InstanceType, self.machine, field=f"{field}.InstanceType")
        try:
            self.backend.check_fits(instance, variant.InitialInstanceCount)
        except (ValidationError, CapacityError) as exc:
            raise ValidationError(
                exc.message.replace("ResourceConfig.InstanceType", f"{field}.InstanceType"),
                field=f"{field}.InstanceType",
            ) from None
        try:
            self.owned_model(variant.ModelName, principal)
        except NotFoundError:
            raise ValidationError(
                f"{field}.ModelName: {model_not_found_message(variant.ModelName)} Create it first (CreateModel, or "
                "estimator.create_model()), or check the name with 'trainforge models list'",
                field=f"{field}.ModelName",
            ) from None
        arn = endpoint_config_arn(self.settings.region, self.settings.account_id, request.EndpointConfigName)
        config = self.configs.create(
            name=request.EndpointConfigName, arn=arn, spec=request.to_wire(), created_by=principal.user
        )
        return {"EndpointConfigArn": config.arn}

    def describe_endpoint_config(self, name: str, principal: Principal) -> dict[str, Any]:
        """DescribeEndpointConfig; :class:`NotFoundError` if unknown or not the caller's."""
        return describe_config(self.owned_config(name, principal))

    def list_endpoint_configs(self, principal: Principal) -> dict[str, Any]:
        """ListEndpointConfigs: the caller's configs (an admin's: everyone's), newest first."""
        found = self.configs.list_configs(created_by=None if principal.admin else principal.user)
        return {
            "EndpointConfigs": [
                {"EndpointConfigName": c.name, "EndpointConfigArn": c.arn, "CreationTime": c.creation_time}
                for c in found
            ]
        }

    def delete_endpoint_config(self, name: str, principal: Principal) -> dict[str, Any]:
        """DeleteEndpointConfig (endpoints created from it keep serving their resolved copy)."""
        self.owned_config(name, principal)
        self.configs.delete(name)
        return {}
