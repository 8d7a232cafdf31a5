"""Batch transform: run a model over the objects under an S3 prefix (``sagemaker.transformer.Transformer``).

Each input object ``<prefix>/<key>`` gets an output object ``<output_path>/<key>.out``. ``transform()`` builds the
CreateTransformJob request once (:func:`trainforge.inference_requests.transform_job_request`) and submits it;
the :class:`TransformJob` handle follows it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

from trainforge.errors import NotFoundError, TrainforgeError, ValidationError
from trainforge.inference_requests import TransformSettings, transform_job_request
from trainforge.job import JobHandle
from trainforge.session import Session
from trainforge.spec.names import base_name_from_image, name_from_base


class TransformJob(JobHandle):
    """A submitted transform job: ``transformer.latest_transform_job``.

    Args:
        sagemaker_session: The session the job lives in.
        job_name: The job's name.
    """

    def describe(self) -> dict[str, Any]:
        """DescribeTransformJob (timestamps as datetimes)."""
        return self.sagemaker_session.describe_transform_job(self.job_name)

    def wait(self, logs: bool = True) -> None:
        """Block until the job is Completed, Failed or Stopped, printing its log lines (``logs``) or dots.

        Raises:
            UnexpectedStatusError: The job ended Failed.
        """
        if logs:
            self.sagemaker_session.logs_for_transform_job(self.job_name, wait=True)
        else:
            self.sagemaker_session.wait_for_transform_job(self.job_name)

    def stop(self) -> None:
        """Ask the job to stop (Stopping, then Stopped)."""
        self.sagemaker_session.stop_transform_job(self.job_name)


class Transformer:
    """Batch transforms of one model.

    Args:
        model_name: The model (created with CreateModel, e.g. by ``model.transformer()``).
        instance_count: Number of instances.
        instance_type: ``ml.*`` instance type.
        strategy: ``SingleRecord`` or ``MultiRecord`` (``BatchStrategy``).
        assemble_with: ``Line`` or ``None``: how the answers of one object's records are joined.
        output_path: ``s3://`` prefix of the ``.out`` files; default ``s3://<default bucket>/<job name>``.
        output_kms_key: ``TransformOutput.KmsKeyId``.
        accept: ``TransformOutput.Accept`` (the ``Accept`` of each invocation).
        max_concurrent_transforms: ``MaxConcurrentTransforms``.
        max_payload: ``MaxPayloadInMB``.
        tags: ``Tags``.
        env: ``Environment`` of the serving container.
        base_transform_job_name: Prefix of generated job names; default the model image's base name.
        sagemaker_session: Session; default ``Session()``.
        volume_kms_key: ``TransformResources.VolumeKmsKeyId``.
    """

    def __init__(
        self,
        model_name: str,
        instance_count: int,
        instance_type: str,
        strategy: str | None = None,
        assemble_with: str | None = None,
        output_path: str | None = None,
        output_kms_key: str | None = None,
        accept: str | None = None,
        max_concurrent_transforms: int | None = None,
        max_payload: int | None = None,
        tags: Sequence[Mapping[str, str]] | None = None,
        env: Mapping[str, str] | None = None,
        base_transform_job_name: str | None = None,
        sagemaker_session: Session | None = None,
        volume_kms_key: str | None = None,
    ) -> None:
        self.model_name = model_name
        self.instance_count = instance_count
        self.instance_type = instance_type
        self.strategy = strategy
        self.assemble_with = assemble_with
        self.output_path = output_path
        self.output_kms_key = output_kms_key
        self.accept = accept
        self.max_concurrent_transforms = max_concurrent_transforms
        self.max_payload = max_payload
        self.tags = [dict(tag) for tag in tags] if tags else None
        self.env = dict(env) if env else None
        self.base_transform_job_name = base_transform_job_name
        self.sagemaker_session = sagemaker_session if sagemaker_session is not None else Session()
        self.volume_kms_key = volume_kms_key
        self._current_job_name: str | None = None
        self._reset_output_path = False
        self.latest_transform_job: TransformJob | None = None

    def _retrieve_base_name(self) -> str:
        """The model image's base name (``trainforge/xgboost:1.7-1`` -> ``xgboost``), else the model name."""
        try:
            described = self.sagemaker_session.describe_model(self.model_name)
        except (NotFoundError, TrainforgeError):
            return self.model_name
        image = (described.get("PrimaryContainer") or {}).get("Image")
        return base_name_from_image(str(image)) if image else self.model_name

    def _settings(self) -> TransformSettings:
        assert self.output_path is not None
        return TransformSettings(
            model_name=self.model_name,
            instance_count=self.instance_count,
            instance_type=self.instance_type,
            output_path=self.output_path,
            strategy=self.strategy,
            assemble_with=self.assemble_with,
            output_kms_key=self.output_kms_key,
            accept=self.accept,
            max_concurrent_transforms=self.max_concurrent_transforms,
            max_payload=self.max_payload,
            env=self.env,
            tags=self.tags,
            volume_kms_key=self.volume_kms_key,
        )

    def transform(
        self,
        data: str,
        data_type: str = "S3Prefix",
        content_type: str | None = None,
        compression_type: str | None = None,
        split_type: str | None = None,
        job_name: str | None = None,
        input_filter: str | None = None,
        output_filter: str | None = None,
        join_source: str | None = None,
        experiment_config: Mapping[str, Any] | None = None,
        model_client_config: Mapping[str, Any] | None = None,
        wait: bool = True,
        logs: bool = True,
        **kwargs: Any,
    ) -> None:
        """Start a transform job over ``data``; with ``wait`` follow it to its end.

        Args:
            data: ``s3://`` prefix (``S3Prefix``) or manifest (``ManifestFile``) of the input objects.
            data_type: ``S3Prefix`` or ``ManifestFile``.
            content_type: ``Content-Type`` of each invocation (e.g. ``text/csv``).
            compression_type: ``None`` or ``Gzip``.
            split_type: ``Line`` (one record per line), ``RecordIO``, ``TFRecord`` or ``None`` (whole object).
            job_name: Exact job name; default ``<base name>-<timestamp>``.
            input_filter, output_filter, join_source: ``DataProcessing``.
            experiment_config, model_client_config: Sent as given.
            wait: Block until the job ends.
            logs: With ``wait``, print the job's log lines.

        Raises:
            ValidationError: ``data`` is not an ``s3://`` URI, or a field the server rejects (named).
            UnexpectedStatusError: ``wait`` and the job Failed.
        """
        request = self._build_request(
            data,
            job_name,
            data_type=data_type,
            content_type=content_type,
            compression_type=compression_type,
            split_type=split_type,
            input_filter=input_filter,
            output_filter=output_filter,
            join_source=join_source,
            model_client_config=model_client_config,
            experiment_config=experiment_config,
        )
        self.sagemaker_session.create_transform_job(request)
        self.latest_transform_job = TransformJob(self.sagemaker_session, str(request["TransformJobName"]))
        if wait:
            self.latest_transform_job.wait(logs=logs)

    def _build_request(self, data: str, job_name: str | None, **options: Any) -> dict[str, Any]:
        """Name the job, default the output path, and build its CreateTransformJob request (``options`` are
        :func:`~trainforge.inference_requests.transform_job_request`'s keywords).

        Raises:
            ValidationError: ``data`` is not an ``s3://`` URI.
        """
        if not isinstance(data, str) or not data.startswith("s3://"):
            raise ValidationError(
                f"data: {data!r} must be an s3:// prefix (upload local files first, e.g. with "
                "S3Uploader.upload or Session.upload_data)",
                field="data",
            )
        self._current_job_name = job_name or name_from_base(self.base_transform_job_name or self._retrieve_base_name())
        if self.output_path is None or self._reset_output_path:
            self.output_path = f"s3://{self.sagemaker_session.default_bucket()}/{self._current_job_name}"
            self._reset_output_path = True
        return transform_job_request(self._settings(), self._current_job_name, data, **options)

    def _ensure_last_transform_job(self) -> TransformJob:
        if self.latest_transform_job is None:
            raise ValidationError("transform_job: no transform job was started; call transform() first", field="job")
        return self.latest_transform_job

    def wait(self, logs: bool = True) -> None:
        """Wait for the latest transform job to end (see :meth:`TransformJob.wait`)."""
        self._ensure_last_transform_job().wait(logs=logs)

    def stop_transform_job(self, wait: bool = True) -> None:
        """Stop the latest transform job; with ``wait`` until it is Stopped."""
        job = self._ensure_last_transform_job()
        job.stop()
        if wait:
            job.wait(logs=False)

    @classmethod
    def attach(cls, transform_job_name: str, sagemaker_session: Session | None = None) -> Self:
        """A transformer for an existing transform job (its settings from DescribeTransformJob).

        Raises:
            NotFoundError: No transform job has this name.
        """
        session = sagemaker_session if sagemaker_session is not None else Session()
        details = session.describe_transform_job(transform_job_name)
        output = details.get("TransformOutput") or {}
        resources = details.get("TransformResources") or {}
        transformer = cls(
            details["ModelName"],
            int(resources.get("InstanceCount", 1)),
            str(resources.get("InstanceType", "")),
            strategy=details.get("BatchStrategy"),
            assemble_with=output.get("AssembleWith"),
            output_path=output.get("S3OutputPath"),
            output_kms_key=output.get("KmsKeyId"),
            accept=output.get("Accept"),
            max_concurrent_transforms=details.get("MaxConcurrentTransforms"),
            max_payload=details.get("MaxPayloadInMB"),
            env=details.get("Environment"),
            tags=details.get("Tags"),
            sagemaker_session=session,
            volume_kms_key=resources.get("VolumeKmsKeyId"),
        )
        transformer._current_job_name = transform_job_name
        transformer.latest_transform_job = TransformJob(session, transform_job_name)
        return transformer


__all__ = ["TransformJob", "Transformer"]
