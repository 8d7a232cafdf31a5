"""Models: what an endpoint or a batch transform serves (``sagemaker.model.Model``, ``FrameworkModel``).

A :class:`Model` is an image plus the ``model.tar.gz`` it serves. ``deploy()`` creates the model
(CreateModel), an endpoint config named after the endpoint, and the endpoint, and returns a
:class:`~trainforge.predictor.Predictor`; ``transformer()`` creates the model and returns a
:class:`~trainforge.transformer.Transformer`. A model with an ``entry_point`` (every :class:`FrameworkModel`)
is self-contained: its ``model.tar.gz`` is repacked with the code under ``code/`` and uploaded to
``s3://<bucket>/<model name>/model.tar.gz`` before CreateModel (:mod:`trainforge.repack`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from trainforge.deserializers import BaseDeserializer
from trainforge.errors import ValidationError
from trainforge.inference_requests import (
    MODEL_CODE_DIR,
    container_definition,
    model_request,
    production_variant,
    script_mode_environment,
    with_training_job_tag,
)
from trainforge.predictor import Predictor
from trainforge.repack import repack_model
from trainforge.serializers import BaseSerializer
from trainforge.session import Session
from trainforge.spec import images
from trainforge.spec.names import base_from_name, base_name_from_image, name_from_base
from trainforge.storage import parse_s3_uri, s3_join
from trainforge.transformer import Transformer

logger = logging.getLogger("trainforge")

PredictorFactory = Callable[[str, Session], Predictor]
Tags = Sequence[Mapping[str, str]] | Mapping[str, str] | None


def normalize_tags(tags: Tags) -> list[dict[str, str]] | None:
    """Tags as ``[{"Key", "Value"}]``; a dict ``{k: v}`` is accepted as SageMaker does."""
    if tags is None:
        return None
    if isinstance(tags, Mapping):
        return [{"Key": str(k), "Value": str(v)} for k, v in tags.items()]
    return [dict(tag) for tag in tags]


def _as_request(value: Any) -> Any:
    to_dict = getattr(value, "_to_request_dict", None)
    return to_dict() if callable(to_dict) else value


class Model:
    """An image and the model data it serves.

    Args:
        image_uri: The serving image (a catalogue image, e.g. ``trainforge/xgboost:1.7-1``; the training images
            serve too).
        model_data: ``s3://`` URI of the ``model.tar.gz``.
        role: Role ARN or name for the model; default the caller's default role.
        predictor_cls: Class (or ``callable(endpoint_name, session)``) that ``deploy()`` returns; default
            :class:`~trainforge.predictor.Predictor`.
        env: Environment variables of the serving container.
        name: Model name; default ``<image base name>-<timestamp>`` when created.
        vpc_config: ``VpcConfig`` (accepted and sent; not enforced here).
        sagemaker_session: Session; default ``Session()`` when first needed.
        enable_network_isolation: ``EnableNetworkIsolation``.
        entry_point: Inference script (with ``model_fn``, ``predict_fn``, ...); when set the model is repacked
            with it under ``code/`` and served in script mode.
        source_dir: Directory (or ``s3://`` ``sourcedir.tar.gz``) packed under ``code/`` with the entry point.
        dependencies: Extra paths packed under ``code/lib/``.
        container_log_level: ``SAGEMAKER_CONTAINER_LOG_LEVEL``.
        code_location: ``s3://bucket/prefix`` where the repacked model goes; default the default bucket.
        model_kms_key, image_config, git_config: Accepted for SageMaker compatibility.

    Raises:
        TypeError: An unknown keyword argument.
    """

    def __init__(
        self,
        image_uri: str | None = None,
        model_data: str | dict[str, Any] | None = None,
        role: str | None = None,
        predictor_cls: type[Predictor] | PredictorFactory | None = None,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
        vpc_config: Mapping[str, Any] | None = None,
        sagemaker_session: Session | None = None,
        enable_network_isolation: bool | None = False,
        model_kms_key: str | None = None,
        image_config: Mapping[str, Any] | None = None,
        source_dir: str | None = None,
        code_location: str | None = None,
        entry_point: str | None = None,
        container_log_level: int = logging.INFO,
        dependencies: Sequence[str] | None = None,
        git_config: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise TypeError(f"{type(self).__name__}() got unexpected keyword argument(s): {', '.join(sorted(kwargs))}")
        self.image_uri = image_uri
        self.model_data = model_data
        self.role = role
        self.predictor_cls = predictor_cls
        self.env: dict[str, str] = dict(env or {})
        self.name = name
        self._base_name: str | None = None
        self.vpc_config = dict(vpc_config) if vpc_config else None
        self.sagemaker_session = sagemaker_session
        self._enable_network_isolation = bool(enable_network_isolation)
        self.model_kms_key = model_kms_key
        self.image_config = image_config
        self.source_dir = source_dir
        self.code_location = code_location
        self.entry_point = entry_point
        self.container_log_level = container_log_level
        self.dependencies = list(dependencies or [])
        self.git_config = git_config
        self.endpoint_name: str | None = None
        self.repacked_model_data: str | None = None
        self._repacked_for: str | None = None
        # Set by Estimator.create_model: sent as the trainforge:training-job-name tag on CreateModel.
        self._training_job_name: str | None = None

    # -- what subclasses refine -----------------------------------------------------------------------------

    def serving_image_uri(self, region_name: str | None = None, instance_type: str | None = None) -> str:
        """The image to serve with on ``instance_type``.

        Raises:
            ValidationError: No ``image_uri`` was given (field ``image_uri``).
        """
        if not self.image_uri:
            raise ValidationError("image_uri: required (the image that serves the model)", field="image_uri")
        return self.image_uri

    def enable_network_isolation(self) -> bool:
        """Whether the serving container runs without network access."""
        return self._enable_network_isolation

    # -- CreateModel ----------------------------------------------------------------------------------------

    def _session(self) -> Session:
        if self.sagemaker_session is None:
            self.sagemaker_session = Session()
        return self.sagemaker_session

    def _set_name(self, image_uri: str) -> str:
        """The model's name, made from the image's base name the first time it is needed."""
        if self._base_name is None:
            self._base_name = base_from_name(self.name) if self.name else base_name_from_image(image_uri)
        if self.name is None:
            self.name = name_from_base(self._base_name)
        return self.name

    def _repack_target(self, model_name: str) -> str:
        """``s3://<bucket>/<prefix>/<model name>/model.tar.gz`` (bucket and prefix from ``code_location``)."""
        if self.code_location:
            parsed = parse_s3_uri(self.code_location, field="code_location")
            return s3_join(f"s3://{parsed.bucket}", parsed.key, model_name, "model.tar.gz")
        return f"s3://{self._session().default_bucket()}/{model_name}/model.tar.gz"

    def _script_name(self) -> str:
        assert self.entry_point
        return self.entry_point if self.source_dir else self.entry_point.replace("\\", "/").rsplit("/", 1)[-1]

    def prepare_container_def(
        self, instance_type: str | None = None, accelerator_type: str | None = None, **_: Any
    ) -> dict[str, Any]:
        """The ``PrimaryContainer`` of CreateModel: image, environment and model data.

        With an ``entry_point`` the model data is first repacked with the code (once per model name) and the
        script-mode variables are added to the environment (the user's ``env`` wins on a clash).

        Raises:
            ValidationError: No image, or (with an entry point) model data or code that cannot be packed.
        """
        session = self._session()
        image = self.serving_image_uri(session.boto_region_name, instance_type)
        name = self._set_name(image)
        model_data: Any = self.model_data
        env = dict(self.env)
        if self.entry_point:
            if self._repacked_for != name:
                self.repacked_model_data = repack_model(
                    session.object_store,
                    self.model_data,
                    self._repack_target(name),
                    entry_point=self.entry_point,
                    source_dir=self.source_dir,
                    dependencies=self.dependencies,
                )
                self._repacked_for = name
            model_data = self.repacked_model_data
            script_env = script_mode_environment(
                self._script_name(),
                submit_directory=MODEL_CODE_DIR,
                container_log_level=self.container_log_level,
                region=session.boto_region_name,
            )
            env = {**script_env, **env}
        return container_definition(image, model_data, env)

    def _create_sagemaker_model(
        self, instance_type: str | None = None, accelerator_type: str | None = None, tags: Tags = None, **kwargs: Any
    ) -> None:
        """CreateModel (repacking first when there is an entry point); a model of this name that exists is kept."""
        container = self.prepare_container_def(instance_type, accelerator_type)
        assert self.name is not None
        session = self._session()
        request = model_request(
            self.name,
            session.resolve_role(self.role),
            container,
            enable_network_isolation=self.enable_network_isolation(),
            vpc_config=self.vpc_config,
            tags=with_training_job_tag(normalize_tags(tags), self._training_job_name),
        )
        session.create_model_from_request(request)

    def create(
        self, instance_type: str | None = None, accelerator_type: str | None = None, tags: Tags = None, **kwargs: Any
    ) -> None:
        """Create the model on the server (CreateModel) without deploying it."""
        self._create_sagemaker_model(instance_type, accelerator_type, tags)

    # -- deploy / transform / delete -----------------------------------------------------------------------

    def deploy(
        self,
        initial_instance_count: int | None = None,
        instance_type: str | None = None,
        serializer: BaseSerializer | None = None,
        deserializer: BaseDeserializer | None = None,
        accelerator_type: str | None = None,
        endpoint_name: str | None = None,
        tags: Tags = None,
        kms_key: str | None = None,
        wait: bool = True,
        data_capture_config: Any = None,
        volume_size: int | None = None,
        model_data_download_timeout: int | None = None,
        container_startup_health_check_timeout: int | None = None,
        **kwargs: Any,
    ) -> Predictor:
        """Serve the model on an endpoint and return a predictor for it.

        Creates the model, an endpoint config named like the endpoint and the endpoint; with ``wait`` blocks
        until it is InService. The endpoint name defaults to ``<model base name>-<timestamp>``.

        Returns:
            ``predictor_cls(endpoint_name, session)`` (a :class:`Predictor` by default), with ``serializer``
            and ``deserializer`` set when given.

        Raises:
            ValidationError: ``instance_type`` or ``initial_instance_count`` missing, or a bad model (named).
            UnexpectedStatusError: ``wait`` and the endpoint went Failed (its FailureReason in the message).
        """
        if not instance_type:
            raise ValidationError(
                "instance_type: required to deploy (e.g. instance_type='ml.m5.large')", field="instance_type"
            )
        if initial_instance_count is None or isinstance(initial_instance_count, bool) or initial_instance_count < 1:
            raise ValidationError(
                f"initial_instance_count: required, a positive integer (got {initial_instance_count!r})",
                field="initial_instance_count",
            )
        normalized_tags = normalize_tags(tags)
        self._create_sagemaker_model(instance_type, accelerator_type, normalized_tags)
        assert self.name is not None
        variant = production_variant(
            self.name,
            instance_type,
            initial_instance_count,
            accelerator_type=accelerator_type,
            volume_size=volume_size,
            model_data_download_timeout=model_data_download_timeout,
            container_startup_health_check_timeout=container_startup_health_check_timeout,
        )
        self.endpoint_name = endpoint_name or name_from_base(self._base_name or base_from_name(self.name))
        session = self._session()
        session.endpoint_from_production_variants(
            self.endpoint_name,
            [variant],
            tags=normalized_tags,
            kms_key=kms_key,
            wait=wait,
            data_capture_config_dict=_as_request(data_capture_config) if data_capture_config else None,
        )
        factory = self.predictor_cls or Predictor
        predictor = factory(self.endpoint_name, session)
        if serializer is not None:
            predictor.serializer = serializer
        if deserializer is not None:
            predictor.deserializer = deserializer
        return predictor

    def transformer(
        self,
        instance_count: int,
        instance_type: str,
        strategy: str | None = None,
        assemble_with: str | None = None,
        output_path: str | None = None,
        output_kms_key: str | None = None,
        accept: str | None = None,
        env: Mapping[str, str] | None = None,
        max_concurrent_transforms: int | None = None,
        max_payload: int | None = None,
        tags: Tags = None,
        volume_kms_key: str | None = None,
    ) -> Transformer:
        """Create the model and return a :class:`~trainforge.transformer.Transformer` for batch transforms of it.

        Raises:
            ValidationError: A bad model (named).
        """
        normalized_tags = normalize_tags(tags)
        self._create_sagemaker_model(instance_type, tags=normalized_tags)
        assert self.name is not None
        return Transformer(
            self.name,
            instance_count,
            instance_type,
            strategy=strategy,
            assemble_with=assemble_with,
            output_path=output_path,
            output_kms_key=output_kms_key,
            accept=accept,
            max_concurrent_transforms=max_concurrent_transforms,
            max_payload=max_payload,
            env=None if self.enable_network_isolation() else env,
            tags=normalized_tags,
            base_transform_job_name=self._base_name or self.name,
            volume_kms_key=volume_kms_key,
            sagemaker_session=self._session(),
        )

    def delete_model(self) -> None:
        """Delete the model on the server.

        Raises:
            ValidationError: The model was never created (field ``name``).
            NotFoundError: It no longer exists.
        """
        if self.name is None:
            raise ValidationError(
                "name: the model must be created (deploy(), transformer() or create()) before it is deleted",
                field="name",
            )
        self._session().delete_model(self.name)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, image_uri={self.image_uri!r}, model_data={self.model_data!r})"
        )


class FrameworkModel(Model):
    """A model served by a framework image running an inference script (``sagemaker.model.FrameworkModel``).

    The ``model.tar.gz`` is always repacked with ``entry_point``/``source_dir`` under ``code/`` (SageMaker does
    this only for some frameworks), so the packed model is self-contained.

    Args:
        model_data: ``s3://`` URI of the ``model.tar.gz``.
        image_uri: The serving image.
        role: Role ARN or name; default the caller's default role.
        entry_point: Inference script (``model_fn``, ``input_fn``, ``predict_fn``, ``output_fn``).
        source_dir: Directory (or ``s3://`` ``sourcedir.tar.gz``) packed under ``code/``.
        **kwargs: The other parameters of :class:`Model`.

    Raises:
        ValidationError: No ``entry_point``.
    """

    def __init__(
        self,
        model_data: str | dict[str, Any] | None,
        image_uri: str | None,
        role: str | None = None,
        entry_point: str | None = None,
        source_dir: str | None = None,
        predictor_cls: type[Predictor] | PredictorFactory | None = None,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
        container_log_level: int = logging.INFO,
        code_location: str | None = None,
        sagemaker_session: Session | None = None,
        dependencies: Sequence[str] | None = None,
        git_config: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not entry_point:
            raise ValidationError(
                "entry_point: required (the inference script, e.g. entry_point='inference.py')", field="entry_point"
            )
        super().__init__(
            image_uri,
            model_data,
            role,
            predictor_cls=predictor_cls,
            env=env,
            name=name,
            sagemaker_session=sagemaker_session,
            source_dir=source_dir,
            code_location=code_location,
            entry_point=entry_point,
            container_log_level=container_log_level,
            dependencies=dependencies,
            git_config=git_config,
            **kwargs,
        )
        self.framework_version: str | None = None

    # Subclasses name their catalogue framework; the image then follows framework_version and the instance type.
    _framework_name: ClassVar[str] = ""

    def _init_framework(
        self, framework_version: str | None, py_version: str | None, model_server_workers: int | None
    ) -> None:
        """Check ``framework_version`` against the catalogue (unless ``image_uri``), keep the versions, and pass
        ``model_server_workers`` as ``SAGEMAKER_MODEL_SERVER_WORKERS``.

        Raises:
            ValidationError: ``framework_version`` missing or unknown (the known versions listed), or a
                ``py_version`` other than ``py3*``.
        """
        if py_version is not None and not str(py_version).startswith("py3"):
            raise ValidationError(
                f"py_version: {py_version!r} is not available; images run Python 3 (use 'py3')", field="py_version"
            )
        self.framework_version = framework_version
        self.py_version = py_version
        if not self.image_uri:
            known = list(images.FRAMEWORK_VERSIONS.get(self._framework_name, {}))
            if framework_version is None or framework_version not in known:
                what = "required" if framework_version is None else f"unknown version {framework_version!r}"
                raise ValidationError(
                    f"framework_version: {what}; known {self._framework_name} versions: {', '.join(known)} "
                    "(or pass image_uri)",
                    field="framework_version",
                    details={"known_versions": known},
                )
        if model_server_workers is not None:
            self.env["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(int(model_server_workers))

    def serving_image_uri(self, region_name: str | None = None, instance_type: str | None = None) -> str:
        """``image_uri`` if given, else the catalogue image of the framework and ``framework_version`` (its GPU
        flavour on GPU instance types, where there is one)."""
        if self.image_uri or not self._framework_name:
            return super().serving_image_uri(region_name, instance_type)
        accelerator = images.accelerator_for(instance_type)
        return images.image_for(
            self._framework_name, self.framework_version, accelerator=accelerator, field="framework_version"
        ).name


__all__ = ["FrameworkModel", "Model"]
