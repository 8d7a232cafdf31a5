"""``Predictor``: call a deployed endpoint (``sagemaker.predictor.Predictor``).

``predict(data)`` serializes ``data`` with the predictor's serializer, invokes the endpoint through the server
(``POST /v1/endpoints/{name}/invocations``) and deserializes the answer with its deserializer. A model that
answers with an error raises :class:`~trainforge.errors.ModelError`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from trainforge.deserializers import BaseDeserializer, BytesDeserializer
from trainforge.errors import NotFoundError, TrainforgeError, ValidationError
from trainforge.inference_requests import production_variant
from trainforge.serializers import BaseSerializer, IdentitySerializer
from trainforge.session import Session
from trainforge.spec.names import name_from_base

logger = logging.getLogger("trainforge")


def _header(value: Any) -> str | None:
    """A content type or accept value (a string or a tuple of them) as one header value."""
    if value is None:
        return None
    return value if isinstance(value, str) else ", ".join(value)


class Predictor:
    """Make real-time predictions against an endpoint.

    Args:
        endpoint_name: The endpoint's name.
        sagemaker_session: The session; default ``Session()``.
        serializer: Turns ``predict``'s data into the request body (default: bytes as they are).
        deserializer: Turns the response body into the result (default: ``bytes``).
        component_name: Accepted for SageMaker compatibility (inference components are not served here).
    """

    # What ``serializer``/``deserializer`` default to; a framework's predictor (``SKLearnPredictor``...) sets its own.
    default_serializer: ClassVar[type[BaseSerializer]] = IdentitySerializer
    default_deserializer: ClassVar[type[BaseDeserializer]] = BytesDeserializer

    def __init__(
        self,
        endpoint_name: str,
        sagemaker_session: Session | None = None,
        serializer: BaseSerializer | None = None,
        deserializer: BaseDeserializer | None = None,
        component_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.endpoint_name = endpoint_name
        self.sagemaker_session = sagemaker_session if sagemaker_session is not None else Session()
        self.serializer: BaseSerializer = serializer if serializer is not None else self.default_serializer()
        self.deserializer: BaseDeserializer = deserializer if deserializer is not None else self.default_deserializer()
        self.component_name = component_name
        self._endpoint_config_name: str | None = None
        self._model_names: list[str] | None = None

    @property
    def content_type(self) -> str:
        """The MIME type of the data the serializer produces (the request's ``Content-Type``)."""
        return str(self.serializer.CONTENT_TYPE)

    @property
    def accept(self) -> Any:
        """The MIME type(s) the deserializer reads (the request's ``Accept``)."""
        return self.deserializer.ACCEPT

    @property
    def endpoint(self) -> str:
        """Deprecated name of :attr:`endpoint_name`."""
        return self.endpoint_name

    def predict(
        self,
        data: Any,
        initial_args: Mapping[str, Any] | None = None,
        target_model: str | None = None,
        target_variant: str | None = None,
        inference_id: str | None = None,
        custom_attributes: str | None = None,
        component_name: str | None = None,
    ) -> Any:
        """Invoke the endpoint with ``data`` and return the deserialized answer.

        Args:
            data: What the serializer turns into the request body.
            initial_args: InvokeEndpoint arguments that override the predictor's (``ContentType``, ``Accept``,
                ``CustomAttributes``, ...).
            target_model, target_variant, inference_id: Accepted; one model and one variant serve here.
            custom_attributes: Sent as ``X-Amzn-SageMaker-Custom-Attributes``.
            component_name: Accepted for compatibility.

        Raises:
            ModelError: The model's code failed on the request (its message and status in the error).
            NotFoundError: The endpoint does not exist (or was deleted).
            ValidationError: The endpoint is not InService, or the payload is over 6 MB.
        """
        args = self._create_request_args(data, initial_args, target_model, target_variant, inference_id)
        if custom_attributes is not None:
            args["CustomAttributes"] = custom_attributes
        response = self.sagemaker_session.sagemaker_runtime_client.invoke_endpoint(**args)
        content_type = response.get("ContentType") or "application/octet-stream"
        return self.deserializer.deserialize(response["Body"], content_type)

    def _create_request_args(
        self,
        data: Any,
        initial_args: Mapping[str, Any] | None,
        target_model: str | None,
        target_variant: str | None,
        inference_id: str | None,
    ) -> dict[str, Any]:
        args: dict[str, Any] = dict(initial_args or {})
        args.setdefault("EndpointName", self.endpoint_name)
        if "ContentType" not in args:
            args["ContentType"] = _header(self.content_type)
        if "Accept" not in args:
            args["Accept"] = _header(self.accept)
        if target_model:
            args["TargetModel"] = target_model
        if target_variant:
            args["TargetVariant"] = target_variant
        if inference_id:
            args["InferenceId"] = inference_id
        args["Body"] = self.serializer.serialize(data)
        return args

    # -- endpoint and models ----------------------------------------------------------------------------

    def _get_endpoint_config_name(self) -> str:
        if self._endpoint_config_name is None:
            described = self.sagemaker_session.describe_endpoint(self.endpoint_name)
            self._endpoint_config_name = str(described["EndpointConfigName"])
        return self._endpoint_config_name

    def _get_model_names(self) -> list[str]:
        if self._model_names is None:
            config = self.sagemaker_session.describe_endpoint_config(self._get_endpoint_config_name())
            self._model_names = [str(v["ModelName"]) for v in config.get("ProductionVariants") or []]
        return self._model_names

    def delete_endpoint(self, delete_endpoint_config: bool = True) -> None:
        """Delete the endpoint (its instances stop) and, by default, its endpoint config.

        The model names are remembered first, so :meth:`delete_model` still works afterwards.

        Raises:
            NotFoundError: The endpoint does not exist.
        """
        if delete_endpoint_config:
            config_name = self._get_endpoint_config_name()
            try:
                self._get_model_names()
            except NotFoundError:
                self._model_names = []
            try:
                self.sagemaker_session.delete_endpoint_config(config_name)
            except NotFoundError:
                logger.warning("Endpoint config %s was already deleted", config_name)
        self.sagemaker_session.delete_endpoint(self.endpoint_name)

    def delete_model(self) -> None:
        """Delete the model(s) the endpoint serves.

        Raises:
            TrainforgeError: One or more models could not be deleted (each named in the message).
        """
        failed: list[str] = []
        for name in self._get_model_names():
            try:
                self.sagemaker_session.delete_model(name)
            except TrainforgeError as exc:
                logger.error("Could not delete model %s: %s", name, exc)
                failed.append(name)
        if failed:
            raise TrainforgeError(f"One or more models cannot be deleted: {', '.join(failed)}")

    def update_endpoint(
        self,
        initial_instance_count: int | None = None,
        instance_type: str | None = None,
        accelerator_type: str | None = None,
        model_name: str | None = None,
        tags: list[dict[str, str]] | None = None,
        kms_key: str | None = None,
        data_capture_config_dict: Mapping[str, Any] | None = None,
        wait: bool = True,
        **_: Any,
    ) -> None:
        """Serve the endpoint from a new endpoint config: a copy of the current one with the given model, instance
        type and count (SageMaker's ``Predictor.update_endpoint``). The old instances serve until the new ones are
        InService; with ``wait`` this returns then.

        Raises:
            ValidationError: A model or resources were asked for without both ``initial_instance_count`` and
                ``instance_type``, or no model is named and the endpoint serves several.
            UnexpectedStatusError: ``wait`` and the update failed (the FailureReason is in the message).
        """
        changes = bool(initial_instance_count or instance_type or accelerator_type or model_name)
        if changes and (instance_type is None or initial_instance_count is None):
            raise ValidationError(
                "initial_instance_count, instance_type: both are needed to change the endpoint's model or "
                f"resources (got initial_instance_count={initial_instance_count!r}, instance_type={instance_type!r})",
                field="instance_type" if instance_type is None else "initial_instance_count",
            )
        current = self.sagemaker_session.describe_endpoint_config(self._get_endpoint_config_name())
        variants = [dict(v) for v in current.get("ProductionVariants") or []]
        if changes:
            assert instance_type is not None and initial_instance_count is not None
            if model_name is None:
                names = self._get_model_names()
                if len(names) != 1:
                    raise ValidationError(
                        f"model_name: the endpoint serves {len(names)} models ({', '.join(names)}); name the one "
                        "the new config should serve",
                        field="model_name",
                    )
                model_name = names[0]
            variants = [
                production_variant(model_name, instance_type, initial_instance_count, accelerator_type=accelerator_type)
            ]
        request: dict[str, Any] = {
            "EndpointConfigName": name_from_base(self.endpoint_name),
            "ProductionVariants": variants,
        }
        for key, value in (
            ("Tags", tags),
            ("KmsKeyId", kms_key if kms_key is not None else current.get("KmsKeyId")),
            ("DataCaptureConfig", data_capture_config_dict),
        ):
            if value:
                request[key] = value
        self.sagemaker_session.sagemaker_client.create_endpoint_config(**request)
        self.sagemaker_session.update_endpoint(self.endpoint_name, request["EndpointConfigName"], wait=wait)
        self._endpoint_config_name = request["EndpointConfigName"]
        self._model_names = [str(v["ModelName"]) for v in variants]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.endpoint_name!r})"


# Kept for code written against SageMaker v1 (``sagemaker.predictor.RealTimePredictor``).
RealTimePredictor = Predictor

__all__ = ["Predictor", "RealTimePredictor"]
