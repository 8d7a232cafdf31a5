"""Channel definitions for ``Estimator.fit`` (``sagemaker.inputs``, reference §5.4)."""

from __future__ import annotations

from typing import Any


class ShuffleConfig:
    """Seed of the shuffle applied to a channel's objects each epoch (``ShuffleConfig.Seed``)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed


class TrainingInput:
    """One training channel: where its data is and how the job receives it.

    ``config`` holds the channel exactly as it goes into ``InputDataConfig`` (without ``ChannelName``);
    only the keys that were set appear, except ``S3DataDistributionType``, which defaults to
    ``FullyReplicated`` unless ``target_attribute_name`` is given.

    Args:
        s3_data: ``s3://bucket/prefix`` (or ``file:///abs/path`` on the node) of the data.
        distribution: ``FullyReplicated`` or ``ShardedByS3Key``.
        compression: ``None`` or ``Gzip``.
        content_type: MIME type given to the algorithm (e.g. ``text/csv``).
        record_wrapping: ``None`` or ``RecordIO``.
        s3_data_type: ``S3Prefix``, ``ManifestFile`` or ``AugmentedManifestFile``.
        instance_groups: Names of the instance groups that receive this channel.
        input_mode: ``File``, ``FastFile`` or ``Pipe``; a single input's mode also becomes the job's mode.
        attribute_names: Attributes of an augmented manifest to use.
        target_attribute_name: Target attribute (SageMaker Autopilot).
        shuffle_config: A :class:`ShuffleConfig`.
        hub_access_config: Passed through as ``S3DataSource.HubAccessConfig``.
        model_access_config: Passed through as ``S3DataSource.ModelAccessConfig``.
    """

    def __init__(
        self,
        s3_data: str,
        distribution: str | None = None,
        compression: str | None = None,
        content_type: str | None = None,
        record_wrapping: str | None = None,
        s3_data_type: str = "S3Prefix",
        instance_groups: list[str] | None = None,
        input_mode: str | None = None,
        attribute_names: list[str] | None = None,
        target_attribute_name: str | None = None,
        shuffle_config: ShuffleConfig | None = None,
        hub_access_config: dict[str, Any] | None = None,
        model_access_config: dict[str, Any] | None = None,
    ) -> None:
        source: dict[str, Any] = {"S3DataType": s3_data_type, "S3Uri": s3_data}
        self.config: dict[str, Any] = {"DataSource": {"S3DataSource": source}}
        if not (target_attribute_name or distribution):
            distribution = "FullyReplicated"
        if distribution is not None:
            source["S3DataDistributionType"] = distribution
        if compression is not None:
            self.config["CompressionType"] = compression
        if content_type is not None:
            self.config["ContentType"] = content_type
        if record_wrapping is not None:
            self.config["RecordWrapperType"] = record_wrapping
        if input_mode is not None:
            self.config["InputMode"] = input_mode
        if attribute_names is not None:
            source["AttributeNames"] = attribute_names
        if instance_groups is not None:
            source["InstanceGroupNames"] = instance_groups
        if target_attribute_name is not None:
            self.config["TargetAttributeName"] = target_attribute_name
        if shuffle_config is not None:
            self.config["ShuffleConfig"] = {"Seed": shuffle_config.seed}
        if hub_access_config is not None:
            source["HubAccessConfig"] = hub_access_config
        if model_access_config is not None:
            source["ModelAccessConfig"] = model_access_config

    def __repr__(self) -> str:
        return f"TrainingInput({self.config['DataSource']['S3DataSource']['S3Uri']!r})"


__all__ = ["ShuffleConfig", "TrainingInput"]
